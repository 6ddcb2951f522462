"""The holder side: get credentials from the authority, and present them when a peer asks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any, Protocol

from aiohttp import web

from connector.credentials.jwt_vc import (
    DCP_CONTEXT,
    Credential,
    CredentialError,
    check_signature,
    read_credential,
    scope_type,
    sign_presentation,
)
from connector.credentials.wallet import Wallet
from connector.errors import BadRequest, PeerError, Unauthorized
from connector.identity import access, jws
from connector.identity.did import did_from_url
from connector.identity.tokens import from_authorization
from connector.runtime import Runtime

log = logging.getLogger(__name__)

PRESENTATION_PATH = "/dcp/v1/presentations/query"
QUERY = "PresentationQueryMessage"
REFUSED = "the presentation query token is not accepted"
ISSUANCE_PATH = "/authority/v1/credentials"


class PeerCaller(Protocol):
    """Sends one signed message to a peer (connector.peer.client.DspClient): passed in, as
    the peer package sits above credentials (it verifies presentations with them)."""

    async def call(
        self, method: str, url: str, audience: str, message: dict[str, Any] | None = None
    ) -> tuple[int, Any]: ...


class Holder:
    def __init__(self, rt: Runtime, wallet: Wallet, client: PeerCaller) -> None:
        self.rt = rt
        self.wallet = wallet
        self.client = client  # signs with our self-issued token, classifies errors
        self._task: asyncio.Task[None] | None = None

    # presenting --------------------------------------------------------------------------------

    def add_to(self, app: web.Application) -> None:
        app.router.add_post(PRESENTATION_PATH, self.presentation_query)

    async def presentation_query(self, request: web.Request) -> web.Response:
        verifier = await self._verifier_of(request.headers.get("Authorization", ""))
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BadRequest(f"body is not JSON: {exc}") from exc
        except RecursionError as exc:
            raise BadRequest("body is not JSON: nested too deeply") from exc
        kind = body.get("type", body.get("@type")) if isinstance(body, dict) else None
        if not isinstance(body, dict) or QUERY not in (kind if isinstance(kind, list) else [kind]):
            raise BadRequest("expected a PresentationQueryMessage")
        scope = body.get("scope", [])
        if not isinstance(scope, list) or not all(isinstance(s, str) for s in scope):
            raise BadRequest("scope must be a list of strings")
        kinds = {k for k in (scope_type(s) for s in scope) if k}
        tokens = self.wallet.matching(kinds or None)
        presentation = sign_presentation(self.rt.keys, self.rt.did, verifier, tokens)
        return web.json_response(
            {
                "@context": [DCP_CONTEXT],
                "type": "PresentationResponseMessage",
                "presentation": [presentation],
            }
        )

    async def _verifier_of(self, header: str) -> str:
        """The verifier a presentation query is from, or one generic Unauthorized.

        DCP 1.0: `Bearer` the verifier's own self-issued token (iss = sub = its DID, aud = ours,
        checked against its DID document, its id remembered against replay) whose `token` claim
        is the access token we gave that verifier. Older peers of ours send that access token
        alone. Why a query was refused is logged, never answered: the caller learns nothing
        about our tokens or its own."""
        token = from_authorization(header)
        try:
            if not token:
                raise Unauthorized("no token")
            _, unverified = jws.unverified(token)
            if unverified.get("iss") == self.rt.did:
                return access.check(token, self.rt.keys, self.rt.did)  # our own access token
            claims = await self.rt.verifier.verify_claims(token)
            inner = claims.get("token")
            if not isinstance(inner, str):
                raise Unauthorized("the self-issued token carries no access token")
            issued_to = access.check(inner, self.rt.keys, self.rt.did)
            if issued_to != claims["iss"]:
                raise Unauthorized(f"access token was issued to {issued_to}, not {claims['iss']}")
            return issued_to
        except (Unauthorized, jws.JwsError) as exc:
            log.info("presentation query refused: %s", getattr(exc, "detail", str(exc)))
            raise Unauthorized(REFUSED) from None

    # obtaining ---------------------------------------------------------------------------------

    async def request_credentials(self) -> list[Credential]:
        """Ask the configured authority for our credentials; keep them if they verify."""
        issuer_url = self.rt.settings.issuer_url
        if not issuer_url:
            raise BadRequest("no issuer_url is configured: which authority should issue them?")
        issuer = did_from_url(issuer_url)
        url = issuer_url.rstrip("/") + ISSUANCE_PATH
        message = {
            "@context": [DCP_CONTEXT],
            "type": "CredentialRequestMessage",
            "holderPid": self.rt.did,
            "credentials": [{"credentialType": "MembershipCredential", "format": "vc1_0_jwt"}],
        }
        try:
            _, answer = await self.client.call("POST", url, issuer, message)
        except PeerError as exc:
            raise PeerError(
                f"authority {issuer} refused to issue credentials: {exc}",
                http_status=exc.http_status,
                body=exc.body,
                retry=exc.retry,
            ) from exc
        items = answer.get("credentials") if isinstance(answer, dict) else None
        if not isinstance(items, list):
            raise PeerError(f"authority {issuer} answered without credentials", retry=False)
        tokens = [i.get("payload") for i in items if isinstance(i, dict)]
        for token in tokens:
            if not isinstance(token, str):
                raise PeerError("authority sent a credential that is not a JWT", retry=False)
            credential = read_credential(token)
            if credential.issuer != issuer or credential.subject != self.rt.did:
                raise PeerError(
                    f"authority sent a credential issued by {credential.issuer} to"
                    f" {credential.subject}; expected {issuer} to {self.rt.did}",
                    retry=False,
                )
            try:
                await check_signature(credential, self.rt.resolver)
            except (CredentialError, Unauthorized) as exc:
                raise PeerError(
                    f"authority sent a credential that does not verify: {exc}", retry=False
                ) from exc
        fresh = self.wallet.replace_from(issuer, [t for t in tokens if isinstance(t, str)])
        log.info("holding %d credential(s) from %s", len(fresh), issuer)
        return fresh

    def start(self) -> None:
        if self.rt.settings.issuer_url:
            self._task = asyncio.create_task(self._keep_fresh())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _keep_fresh(self) -> None:
        """Request credentials at start and again when 80% of their validity has passed."""
        delay = 1.0
        while True:
            wait = self._renew_in()
            if wait > 0:
                await asyncio.sleep(min(wait, 3600))
                continue
            try:
                await self.request_credentials()
                delay = 1.0
            except (PeerError, CredentialError) as exc:
                log.warning("cannot get credentials: %s; trying again in %.0f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 300.0)

    def _renew_in(self) -> float:
        issuer = did_from_url(self.rt.settings.issuer_url or "")
        mine = [c for c in self.wallet.credentials() if c.issuer == issuer]
        if not mine:
            return 0.0
        now = time.time()
        due = [
            c.issued_at + 0.8 * (c.expires_at - c.issued_at)
            for c in mine
            if c.expires_at is not None
        ]
        return min(due) - now if due else 3600.0
