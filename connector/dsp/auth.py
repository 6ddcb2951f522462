"""Who is calling a DSP endpoint: a verified self-issued token, or (TCK mode) a fixed value."""

from __future__ import annotations

from aiohttp import web

from connector.errors import Unauthorized
from connector.identity.tokens import TokenVerifier


class Authenticator:
    def __init__(self, verifier: TokenVerifier, static: dict[str, str] | None = None) -> None:
        self._verifier = verifier
        self._static = static or {}

    async def caller(self, request: web.Request) -> str:
        header = request.headers.get("Authorization", "").strip()
        if not header:
            raise Unauthorized("an Authorization header with a self-issued token is required")
        if header in self._static:
            return self._static[header]
        token = header[7:].strip() if header.lower().startswith("bearer ") else header
        return await self._verifier.verify(token)
