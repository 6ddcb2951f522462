"""Assembles the federated catalog from the settings: member sources, index, crawler, API."""

from __future__ import annotations

from connector.catalog.federated.crawler import Crawler
from connector.catalog.federated.index import FederatedIndex
from connector.catalog.federated.members import MemberSource, RegistryMembers, StaticMembers
from connector.catalog.federated.routes import FederatedCatalogApi
from connector.http import Handler, Route
from connector.peer.client import DspClient
from connector.runtime import Runtime


class FederatedCatalog:
    """Off unless `federated_catalog = true`; its API then answers 404 saying so."""

    def __init__(self, rt: Runtime, client: DspClient) -> None:
        s = rt.settings
        self.crawler: Crawler | None = None
        if s.federated_catalog:
            sources: list[MemberSource] = [StaticMembers(s.federated_members)]
            if s.registry_url:
                sources.append(
                    RegistryMembers(rt.egress, rt.issuer, s.registry_url, s.registry_did)
                )
            index = FederatedIndex(s.federated_db_path)
            self.crawler = Crawler(client, sources, index, s.federated_crawl_concurrency)
        self._every = s.federated_crawl_seconds

    def routes(self) -> list[tuple[Route, Handler]]:
        return FederatedCatalogApi(self.crawler).routes()

    def start(self) -> None:
        if self.crawler is not None:
            self.crawler.start(self._every)

    async def stop(self) -> None:
        if self.crawler is not None:
            await self.crawler.stop()
            self.crawler.index.close()
