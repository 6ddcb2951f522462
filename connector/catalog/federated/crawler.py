"""The crawler: reads every member's DSP catalog, concurrently, into the federated index.

A member that already gave us a catalog is asked with our IfChanged filter and its digest, so
an unchanged catalog costs the provider its decisions and a short answer, and costs us nothing
to index. The catalog is asked for in pages (a QuerySpec, as EDC understands it too), and the
DSP paging links (`Link: <...>; rel="next"`) are followed, bounded in pages and datasets, each
page through the same client (token audience check, egress guard). A member that refuses the
filters (an older implementation) is asked without them.
One member's failure is recorded on that member and never stops the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from pydantic import BaseModel, Field

from connector.catalog import filters, paging
from connector.catalog.federated import parse
from connector.catalog.federated.index import FederatedIndex
from connector.catalog.federated.members import Member, MemberSource, SourceError
from connector.egress import EgressRefused
from connector.errors import PeerError
from connector.model import messages as m
from connector.model.records import utcnow
from connector.peer.client import DspClient, NotTheAudience

log = logging.getLogger(__name__)

PAGE_SIZE = 500  # datasets asked for per catalog page
MAX_PAGES = 1000  # a member's catalog is followed through at most this many pages
MAX_DATASETS = 200_000  # and indexed only up to this many datasets


class MemberResult(BaseModel):
    id: str
    name: str
    result: str  # changed | unchanged | failed
    added: int = 0
    changed: int = 0
    removed: int = 0
    error: str | None = None
    durationMs: float


class CrawlSummary(BaseModel):
    startedAt: str
    durationMs: float
    members: int
    changed: int
    unchanged: int
    failed: int
    datasets: int
    removedMembers: list[str] = Field(default_factory=list)
    sourceErrors: list[str] = Field(default_factory=list)
    results: list[MemberResult] = Field(default_factory=list)


class TooLarge(Exception):
    """A member's catalog pages go on past our bounds (or in a circle): not indexed."""


def failure(dsp: str, exc: PeerError | parse.CatalogError | TooLarge) -> str:
    """Why a member's crawl failed, in our words only: a member names its endpoint, so what it
    (or whatever answers there) says is never shown in the member status."""
    if isinstance(exc, parse.CatalogError):
        why = "the answer is not a DSP catalog"
    elif isinstance(exc, TooLarge):
        why = f"not indexed: {exc}"
    elif isinstance(exc, NotTheAudience):
        why = "refused: the endpoint is not the member's (not on its did:web host, nor the DSP"
        why += " endpoint its DID document names), so no token was sent"
    elif isinstance(exc.__cause__, EgressRefused):
        why = f"refused by this connector's egress policy: {exc.__cause__.detail}"
    elif exc.http_status is not None:
        why = f"answered HTTP {exc.http_status}"
    else:
        why = "could not be reached"
    return f"catalog request to {dsp} failed: {why}"


class Crawler:
    def __init__(
        self,
        client: DspClient,
        sources: list[MemberSource],
        index: FederatedIndex,
        concurrency: int,
    ) -> None:
        self._client = client
        self._sources = sources
        self.index = index
        self._limit = asyncio.Semaphore(concurrency)
        self._known: dict[str, list[Member]] = {}  # last good list per source
        self._running: asyncio.Task[CrawlSummary] | None = None
        self._periodic: asyncio.Task[None] | None = None
        self.last: CrawlSummary | None = None

    # scheduling ------------------------------------------------------------------------------

    async def crawl(self) -> CrawlSummary:
        """Crawl now; a caller arriving during a crawl gets that crawl's summary."""
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._crawl())
        return await asyncio.shield(self._running)

    def start(self, every_seconds: float) -> None:
        if every_seconds > 0:
            self._periodic = asyncio.create_task(self._every(every_seconds))

    async def _every(self, seconds: float) -> None:
        while True:
            try:
                await self.crawl()
            except Exception:
                log.exception("federated crawl failed")
            await asyncio.sleep(seconds)

    async def stop(self) -> None:
        for task in (self._periodic, self._running):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    # one crawl -------------------------------------------------------------------------------

    async def _members(self) -> tuple[list[Member], list[str]]:
        errors: list[str] = []
        for source in self._sources:
            try:
                self._known[source.name] = await source.members()
            except SourceError as exc:
                errors.append(str(exc))
                log.warning("member source %s: %s (keeping its last list)", source.name, exc)
        chosen: dict[str, Member] = {}
        for source in self._sources:  # later sources (the registry) win over earlier ones
            for member in self._known.get(source.name, []):
                chosen[member.did] = member
        return list(chosen.values()), errors

    async def _crawl(self) -> CrawlSummary:
        started, t0 = utcnow(), time.perf_counter()
        members, errors = await self._members()
        # A source that failed counts with its last good list; one never read yet (a start
        # while the registry is down) must not empty the index, so nothing is dropped then.
        never_read = any(source.name not in self._known for source in self._sources)
        removed = [] if never_read else self.index.drop_members_except({b.did for b in members})
        for member in members:
            self.index.upsert_member(member)
        results = await asyncio.gather(*(self._one(mb) for mb in members))
        summary = CrawlSummary(
            startedAt=started,
            durationMs=round((time.perf_counter() - t0) * 1000, 1),
            members=len(members),
            changed=sum(r.result == "changed" for r in results),
            unchanged=sum(r.result == "unchanged" for r in results),
            failed=sum(r.result == "failed" for r in results),
            datasets=self.index.total(),
            removedMembers=removed,
            sourceErrors=errors,
            results=list(results),
        )
        self.last = summary
        return summary

    async def _fetch(self, member: Member, digest: str | None) -> parse.Catalog:
        url = member.dsp + "/catalog/request"
        # QuerySpec first: EDC reads the first element it can take as one
        asked = [filters.query_spec(PAGE_SIZE), filters.if_changed(digest or "")]
        try:
            return await self._walk(member, url, asked)
        except PeerError as exc:
            if exc.http_status != 400:
                raise
            # a provider that refuses these filters (an older one of ours): ask for everything
        return await self._walk(member, url, None)

    async def _walk(self, member: Member, url: str, asked: list[Any] | None) -> parse.Catalog:
        """The member's catalog, following its `Link: rel="next"` pages, bounded."""
        msg = m.CatalogRequestMessage(filter=asked).dump()
        _status, body, links = await self._client.call_with_links("POST", url, member.did, msg)
        catalog = parse.read(body)
        entries = {e.dataset_id: e for e in catalog.entries}
        seen, pages = {url}, 1
        link = paging.next_link(links, url)
        while link is not None and not catalog.unchanged:
            if link in seen:
                raise TooLarge("its catalog pages lead in a circle")
            if pages >= MAX_PAGES or len(entries) > MAX_DATASETS:
                raise TooLarge(
                    f"its catalog has more than {MAX_PAGES} pages or {MAX_DATASETS} datasets"
                )
            seen.add(link)
            _status, body, links = await self._client.call_with_links("POST", link, member.did, msg)
            for entry in parse.read(body).entries:
                entries[entry.dataset_id] = entry
            pages += 1
            link = paging.next_link(links, link)
        if len(entries) > MAX_DATASETS:
            raise TooLarge(f"its catalog has more than {MAX_DATASETS} datasets")
        if pages > 1:
            count = len(entries)
            log.info("federated catalog: %s: %d datasets, %d pages", member.did, count, pages)
        return catalog.model_copy(update={"entries": list(entries.values())})

    async def _one(self, member: Member) -> MemberResult:
        async with self._limit:
            t0 = time.perf_counter()
            result = MemberResult(id=member.did, name=member.name, result="failed", durationMs=0)
            try:
                catalog = await self._fetch(member, self.index.digest(member.did))
                elapsed = (time.perf_counter() - t0) * 1000
                if catalog.unchanged:
                    self.index.record_unchanged(member.did, elapsed)
                    result.result = "unchanged"
                else:
                    changes = self.index.apply(member.did, catalog, elapsed)
                    result = result.model_copy(update={"result": "changed", **changes.model_dump()})
            except (PeerError, parse.CatalogError, TooLarge) as exc:
                why = failure(member.dsp, exc)
                result.error = why
                self.index.record_failure(member.did, why, (time.perf_counter() - t0) * 1000)
                log.warning("federated catalog: %s (%s): %s", member.name, member.did, why)
                log.debug("federated catalog: %s (%s): %s", member.name, member.did, exc)
            result.durationMs = round((time.perf_counter() - t0) * 1000, 1)
            return result
