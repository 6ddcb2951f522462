"""Who is calling a DSP endpoint: a verified self-issued token, or (TCK mode) a fixed value;
and, where the data space asks for it, which verified credentials the caller holds."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from connector.credentials.verifier import CredentialVerifier
from connector.errors import Forbidden, Unauthorized
from connector.identity.tokens import TokenVerifier, from_authorization


class Authenticator:
    def __init__(
        self,
        verifier: TokenVerifier,
        static: dict[str, str] | None = None,
        credentials: CredentialVerifier | None = None,
        require_membership: bool = False,
    ) -> None:
        self._verifier = verifier
        self._static = static or {}
        self._credentials = credentials
        self._require = require_membership

    async def caller(self, request: web.Request) -> str:
        header = request.headers.get("Authorization", "").strip()
        if not header:
            raise Unauthorized("an Authorization header with a self-issued token is required")
        if header in self._static:
            return self._static[header]
        claims = await self._verifier.verify_claims(from_authorization(header))
        access = claims.get("token")
        request["access_token"] = access if isinstance(access, str) else None
        return str(claims["iss"])

    async def member(self, request: web.Request) -> tuple[str, dict[str, Any]]:
        """The caller and its verified claims (policy input `consumer.credentials`).

        With require_membership, a caller without a valid membership credential is refused
        here, with the reasons its credentials failed.
        """
        caller, claims, problems = await self.membership(request)
        if problems:
            raise not_a_member(problems)
        return caller, claims

    async def membership(self, request: web.Request) -> tuple[str, dict[str, Any], list[str]]:
        """The caller, its verified claims, and (with require_membership) why it is not a
        verified member: empty when it is, or when membership is not required."""
        caller = await self.caller(request)
        if self._credentials is None or not self._credentials.enabled:
            return caller, {}, []
        claims = await self._credentials.claims(caller, request.get("access_token"))
        if self._require and claims.get("membership") is not True:
            return (
                caller,
                claims,
                claims.get("problems") or [f"{caller} holds no membership credential"],
            )
        return caller, claims, []


def not_a_member(problems: list[str]) -> Forbidden:
    return Forbidden(
        "a verified membership credential is required: " + "; ".join(problems),
        reasons=["a verified membership credential of a trusted issuer is required", *problems],
    )
