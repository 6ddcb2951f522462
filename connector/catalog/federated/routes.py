"""Management API of the federated catalog: search, member crawl status, crawl now."""

from __future__ import annotations

from aiohttp import web

from connector.catalog.federated.crawler import Crawler
from connector.catalog.federated.index import Query, fts_query
from connector.catalog.federated.parse import CLASSES
from connector.errors import BadRequest, NotFound
from connector.http import Handler, Route

BASE = "/federated-catalog"
ROUTES = [
    Route(
        "GET",
        f"{BASE}/datasets",
        "search",
        "Search the members' datasets: ?q=&theme=&publisher=&classification=&limit=&offset=",
    ),
    Route("GET", f"{BASE}/members", "members", "The members and the status of their last crawl"),
    Route("POST", f"{BASE}/crawl", "crawl", "Crawl every member now; answers with a summary"),
]
PARAMS = {"q", "theme", "publisher", "classification", "limit", "offset"}
OFF = "the federated catalog is off: set federated_catalog = true"


def parse_query(request: web.Request) -> Query:
    """The search parameters, or BadRequest naming every wrong one."""
    args = request.query
    problems = [f"unknown parameter {k!r}" for k in args if k not in PARAMS]
    problems += [f"{k} is given more than once" for k in PARAMS if len(args.getall(k, [])) > 1]
    values: dict[str, str | int | None] = {}
    for key in ("q", "theme", "publisher", "classification"):
        value = args.get(key)
        if value is not None and not value.strip():
            problems.append(f"{key} must not be empty")
        values[key] = value.strip() if value else None
    if values["q"] and fts_query(str(values["q"])) is None:
        problems.append("q has no word to search for")
    if values["classification"] and values["classification"] not in CLASSES:
        problems.append("classification must be one of " + ", ".join(CLASSES))
    for key, default, low, high in (("limit", 20, 1, 200), ("offset", 0, 0, 1_000_000)):
        raw = args.get(key)
        try:
            number = default if raw is None else int(raw)
        except ValueError:
            problems.append(f"{key} must be an integer")
            continue
        if not low <= number <= high:
            problems.append(f"{key} must be {low}..{high}")
        values[key] = number
    if problems:
        raise BadRequest("invalid search parameters: " + "; ".join(problems), reasons=problems)
    return Query.model_validate(values)


class FederatedCatalogApi:
    def __init__(self, crawler: Crawler | None) -> None:
        self._crawler = crawler

    def routes(self) -> list[tuple[Route, Handler]]:
        return [(route, getattr(self, route.handler)) for route in ROUTES]

    def _on(self) -> Crawler:
        if self._crawler is None:
            raise NotFound(OFF)
        return self._crawler

    async def search(self, request: web.Request) -> web.Response:
        crawler = self._on()
        query = parse_query(request)
        found = crawler.index.search(query)
        return web.json_response(
            {
                "total": found.total,
                "limit": query.limit,
                "offset": query.offset,
                "order": found.order,
                "hits": found.hits,
            }
        )

    async def members(self, request: web.Request) -> web.Response:
        crawler = self._on()
        last = crawler.last.model_dump() if crawler.last else None
        return web.json_response({"members": crawler.index.members(), "lastCrawl": last})

    async def crawl(self, request: web.Request) -> web.Response:
        summary = await self._on().crawl()
        return web.json_response(summary.model_dump())
