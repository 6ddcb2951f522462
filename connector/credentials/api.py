"""Management API of the holder: the credentials it holds, and asking the authority now."""

from __future__ import annotations

import time

from aiohttp import web

from connector.credentials.holder import Holder
from connector.credentials.verifier import CredentialVerifier
from connector.http import Handler, Route

ROUTES = [
    Route(
        "GET", "/credentials", "list_credentials", "The verifiable credentials this connector holds"
    ),
    Route(
        "POST",
        "/credentials/request",
        "request_credentials",
        "Ask the authority (issuer_url) for this connector's credentials now",
    ),
]


class CredentialsApi:
    def __init__(self, holder: Holder, verifier: CredentialVerifier) -> None:
        self.holder = holder
        self.verifier = verifier  # asks the issuer's status list whether ours are revoked

    def routes(self) -> list[tuple[Route, Handler]]:
        return [(route, getattr(self, route.handler)) for route in ROUTES]

    async def list_credentials(self, request: web.Request) -> web.Response:
        now = time.time()
        return web.json_response(
            [
                {
                    **c.summary(),
                    "expired": c.expires_at is not None and c.expires_at <= now,
                    "status": await self.verifier.status(c),
                }
                for c in self.holder.wallet.credentials()
            ]
        )

    async def request_credentials(self, request: web.Request) -> web.Response:
        fresh = await self.holder.request_credentials()
        return web.json_response([c.summary() for c in fresh])
