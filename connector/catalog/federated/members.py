"""Where the member list comes from: the settings, or the data space authority's registry."""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connector.config import FederatedMember
from connector.egress import CATALOG_MAX, Egress, json_limited
from connector.identity.did import did_from_url
from connector.identity.tokens import TokenIssuer, bearer

TIMEOUT = aiohttp.ClientTimeout(total=15, connect=5)


class Member(BaseModel):
    """A participant whose catalog is crawled."""

    did: str
    name: str = ""
    dsp: str
    attributes: dict[str, Any] = Field(default_factory=dict)
    source: str


class SourceError(Exception):
    """A member source could not be read; the crawler keeps its previous list."""


class MemberSource(Protocol):
    name: str

    async def members(self) -> list[Member]:
        """The active members now; raises SourceError when the list cannot be read."""
        ...


def did_of(url: str) -> str:
    parts = urlsplit(url)
    return did_from_url(f"{parts.scheme}://{parts.netloc}")


class StaticMembers:
    """The `federated_members` setting."""

    name = "settings"

    def __init__(self, entries: list[FederatedMember]) -> None:
        self._members = [
            Member(did=e.did or did_of(e.dsp), name=e.name, dsp=e.dsp, source=self.name)
            for e in entries
        ]

    async def members(self) -> list[Member]:
        return list(self._members)


class Participant(BaseModel):
    """One entry of the authority's registry document (fields we use; others ignored)."""

    model_config = ConfigDict(extra="ignore")
    id: str = Field(min_length=1)
    name: str = ""
    dspEndpoint: str | None = None
    status: str = Field(description='only "active" participants are crawled')
    attributes: dict[str, Any] = Field(default_factory=dict)


class RegistryDocument(BaseModel):
    model_config = ConfigDict(extra="ignore")
    participants: list[Participant]


class RegistryMembers:
    """`GET registry_url` with our self-issued token; only `active` participants are members."""

    name = "registry"

    def __init__(
        self,
        egress: Egress,
        issuer: TokenIssuer,
        url: str,
        audience: str | None = None,
    ) -> None:
        self._egress = egress
        self._issuer = issuer
        self.url = url
        self.audience = audience or did_of(url)

    async def members(self) -> list[Member]:
        headers = {"Authorization": bearer(self._issuer.issue(self.audience))}
        try:
            async with self._egress.request(
                "GET", self.url, headers=headers, timeout=TIMEOUT
            ) as resp:
                if resp.status != 200:
                    raise SourceError(f"registry {self.url} answered {resp.status}")
                body = await json_limited(resp, CATALOG_MAX)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise SourceError(f"registry {self.url} failed: {exc!r}") from exc
        try:
            doc = RegistryDocument.model_validate(body)
        except ValidationError as exc:
            raise SourceError(f"registry {self.url}: unexpected document: {exc}") from exc
        return [
            Member(
                did=p.id,
                name=p.name,
                dsp=p.dspEndpoint.rstrip("/"),
                attributes=p.attributes,
                source=self.name,
            )
            for p in doc.participants
            if p.status == "active" and p.dspEndpoint
        ]
