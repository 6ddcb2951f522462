"""The authority's endpoints: issuance and registry for members (public listener, self-issued
tokens), the status list for anyone, onboarding and revocation for the operator (management)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from connector.authority.issuer import STATUS_PATH, Issuer
from connector.authority.registry import Participant, Registry
from connector.credentials import status_list
from connector.egress import EgressRefused
from connector.errors import BadRequest, Forbidden, Unauthorized
from connector.http import Handler, Route, body, optional_body
from connector.identity.did import UnresolvableDid, parse_did_web, service_endpoint
from connector.peer.auth import Authenticator
from connector.runtime import Runtime

ISSUE_PATH = "/authority/v1/credentials"
REGISTRY_PATH = "/authority/v1/participants"


class OnboardIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    id: str = Field(description="The participant's did:web")
    name: str = Field(min_length=1)
    organisation: str = Field(min_length=1)
    roles: list[str] = Field(default_factory=list)
    region: str | None = None
    dspEndpoint: str | None = Field(
        None, description="Default: the DataService endpoint of the participant's DID document"
    )
    validSeconds: float | None = Field(
        None, gt=0, description="Credential validity; default authority_credential_days"
    )

    @field_validator("id")
    @classmethod
    def _did(cls, value: str) -> str:
        try:
            parse_did_web(value)
        except UnresolvableDid as exc:
            raise ValueError(
                "must be a did:web identifier (host, optional %3A port, path segments)"
            ) from exc
        return value


class RevokeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = "revoked by the data space authority"


ROUTES = [
    Route(
        "POST",
        "/authority/participants",
        "onboard",
        "Authority: onboard a participant (DID and attributes); it may then request credentials",
        OnboardIn,
        201,
    ),
    Route("GET", "/authority/participants", "list_participants", "Authority: the registry"),
    Route("GET", "/authority/participants/{did}", "get_participant", "Authority: one participant"),
    Route(
        "POST",
        "/authority/participants/{did}/revoke",
        "revoke",
        "Authority: revoke a participant's credentials (its status list bit is set)",
        RevokeIn,
    ),
    Route(
        "POST",
        "/authority/participants/{did}/reinstate",
        "reinstate",
        "Authority: clear a revocation",
    ),
]


def _did(request: web.Request) -> str:
    # aiohttp has decoded the path segment once: a did:web's own %3A is kept
    return request.match_info["did"]


class Authority:
    def __init__(self, rt: Runtime, auth: Authenticator, registry: Registry) -> None:
        self.rt = rt
        self.auth = auth
        self.registry = registry
        valid = rt.settings.authority_credential_days * 86400
        self.issuer = Issuer(rt.did, rt.keys, rt.settings.base_url, registry, valid)

    # public ------------------------------------------------------------------------------------

    def add_public(self, app: web.Application) -> None:
        app.router.add_post(ISSUE_PATH, self.issue)
        app.router.add_get(REGISTRY_PATH, self.public_registry)
        app.router.add_get(STATUS_PATH, self.status_list)

    async def issue(self, request: web.Request) -> web.Response:
        """DCP-style issuance, answered at once: the member's current credentials."""
        caller = await self.auth.caller(request)
        participant = await asyncio.to_thread(self.registry.find, caller)
        if participant is None:
            raise Forbidden(f"{caller} is not a participant of this data space (not onboarded)")
        if participant.status != "active":
            raise Forbidden(
                f"the membership of {caller} was revoked: {participant.revocation_reason}"
            )
        return web.json_response(
            {
                "type": "CredentialMessage",
                "status": "ISSUED",
                "holderPid": caller,
                "credentials": self.issuer.credentials_for(participant),
            }
        )

    async def public_registry(self, request: web.Request) -> web.Response:
        caller = await self.auth.caller(request)
        member = await asyncio.to_thread(self.registry.find, caller)
        if caller != self.rt.did and (member is None or member.status != "active"):
            raise Forbidden(f"only active participants may read the registry; {caller} is not one")
        members = await asyncio.to_thread(self.registry.all)
        return web.json_response({"participants": [p.public() for p in members]})

    async def status_list(self, request: web.Request) -> web.Response:
        """The signed JWT; its `vc` as a JSON credential to whoever asks for JSON (EDC's
        revocation check reads only that)."""
        token = await asyncio.to_thread(self.issuer.status_list_credential)
        headers = {"Cache-Control": "max-age=0, must-revalidate", "Vary": "Accept"}
        if status_list.wants_json(request.headers.get("Accept", "")):
            return web.json_response(
                status_list.json_form(token), content_type=status_list.JSON_MEDIA, headers=headers
            )
        return web.Response(text=token, content_type=status_list.JWT_MEDIA, headers=headers)

    # management --------------------------------------------------------------------------------

    def routes(self) -> list[tuple[Route, Handler]]:
        return [(route, getattr(self, route.handler)) for route in ROUTES]

    async def onboard(self, request: web.Request) -> web.Response:
        data = await body(request, OnboardIn)
        endpoint = data.dspEndpoint or await self._dsp_endpoint(data.id)
        try:
            # every member crawls this endpoint with its token: never one of our internal ones
            await self.rt.egress.policy.check_destination(endpoint)
        except EgressRefused as exc:
            raise BadRequest(
                f"the DSP endpoint {endpoint} is refused by the egress policy: {exc.detail}"
            ) from exc
        record = await asyncio.to_thread(
            self.registry.onboard,
            {
                "id": data.id,
                "name": data.name,
                "organisation": data.organisation,
                "roles": data.roles,
                "region": data.region,
                "dsp_endpoint": endpoint,
                "valid_seconds": data.validSeconds,
            },
        )
        return web.json_response(_show(record), status=201)

    async def _dsp_endpoint(self, did: str) -> str:
        try:
            document = await self.rt.resolver.resolve(did)
        except Unauthorized as exc:
            raise BadRequest(f"give dspEndpoint, or make {did} resolvable: {exc.detail}") from exc
        endpoint = service_endpoint(document, "DataService")
        if endpoint is not None:
            return endpoint
        raise BadRequest(f"the DID document of {did} names no DataService; give dspEndpoint")

    async def list_participants(self, request: web.Request) -> web.Response:
        return web.json_response([_show(p) for p in await asyncio.to_thread(self.registry.all)])

    async def get_participant(self, request: web.Request) -> web.Response:
        return web.json_response(_show(await asyncio.to_thread(self.registry.get, _did(request))))

    async def revoke(self, request: web.Request) -> web.Response:
        data = await optional_body(request, RevokeIn)
        record = await asyncio.to_thread(
            self.registry.set_status, _did(request), "revoked", data.reason
        )
        return web.json_response(_show(record))

    async def reinstate(self, request: web.Request) -> web.Response:
        record = await asyncio.to_thread(self.registry.set_status, _did(request), "active", None)
        return web.json_response(_show(record))


def _show(p: Participant) -> dict[str, Any]:
    return p.model_dump()
