"""A provider's whole catalog for our consumer, page by page (`POST /api/v1/catalog/request`).

An Eclipse EDC provider pages its catalog as its QuerySpec says (50 datasets unless asked
otherwise) and sends no DSP `Link` headers; our provider sends them. So we ask in pages of
`PAGE_SIZE` by QuerySpec, follow `rel="next"` when the provider gives one, and otherwise ask for
the next offset while a page comes back full. Bounded in pages and datasets; a page that adds
no dataset we have not seen ends the walk (a provider that ignores the QuerySpec answers the
same page again). A caller that gives its own QuerySpec gets that one page, as asked.
"""

from __future__ import annotations

import logging
from typing import Any

from connector.catalog import filters, paging
from connector.errors import PeerError
from connector.model import messages as m
from connector.peer.client import DspClient

log = logging.getLogger(__name__)

PAGE_SIZE = 500
MAX_PAGES = 200
MAX_DATASETS = 100_000


class CatalogTooLarge(PeerError):
    """The provider's catalog is larger than one management answer should carry."""


def _datasets(body: Any) -> list[Any]:
    if not isinstance(body, dict):
        return []
    found = body.get("dataset", body.get("dcat:dataset", []))
    return found if isinstance(found, list) else [found]


def _dataset_id(dataset: Any) -> str | None:
    if isinstance(dataset, dict):
        ident = dataset.get("@id", dataset.get("id"))
        return ident if isinstance(ident, str) else None
    return None


def _spec(offset: int, limit: int) -> dict[str, Any]:
    spec = filters.query_spec(limit)
    spec[filters.EDC_NS + "offset"] = offset
    return spec


async def whole_catalog(
    client: DspClient,
    url: str,
    audience: str,
    query_spec: dict[str, Any] | None = None,
    who: str = "peer",
) -> Any:
    """The provider's catalog answer; with every page's datasets when no QuerySpec is given."""
    if query_spec is not None:
        msg = m.CatalogRequestMessage(filter=[query_spec]).dump()
        _status, body = await client.call("POST", url, audience, msg, who)
        return body
    try:
        return await _walk(client, url, audience, who)
    except PeerError as exc:
        if exc.http_status != 400:
            raise
    # a provider that refuses filters (an older one of ours): ask for everything at once
    everything = m.CatalogRequestMessage().dump()
    _status, body = await client.call("POST", url, audience, everything, who)
    return body


async def _walk(client: DspClient, url: str, audience: str, who: str) -> Any:
    offset, pages, target = 0, 0, url
    first: Any = None
    gathered: dict[str, Any] = {}
    while True:
        msg = m.CatalogRequestMessage(filter=[_spec(offset, PAGE_SIZE)]).dump()
        _status, body, links = await client.call_with_links("POST", target, audience, msg, who)
        pages += 1
        page = _datasets(body)
        if first is None:
            first = body
        new = 0
        for dataset in page:
            ident = _dataset_id(dataset)
            key = ident if ident is not None else f"#{len(gathered)}"
            if key not in gathered:
                gathered[key] = dataset
                new += 1
        link = paging.next_link(links, target)
        if link is not None:
            target, offset = link, 0  # the provider's own continuation carries the position
        elif len(page) >= PAGE_SIZE and new:
            target, offset = url, offset + len(page)
        else:
            break
        if not new:
            break
        if pages >= MAX_PAGES or len(gathered) > MAX_DATASETS:
            raise CatalogTooLarge(
                f"the catalog at {url} has more than {MAX_PAGES} pages or {MAX_DATASETS}"
                " datasets; ask for a page with querySpec (offset, limit)",
                http_status=None,
                retry=False,
            )
    if pages > 1:
        log.info("catalog %s: %d datasets in %d pages", url, len(gathered), pages)
    if isinstance(first, dict):
        return first | {"dataset": list(gathered.values())}
    return first
