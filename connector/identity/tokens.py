"""Self-issued identity tokens (DCP style): EdDSA JWTs with iss = sub = own DID."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from connector.clock import CLOCK_SKEW
from connector.errors import ClockSkew, Unauthorized
from connector.identity import access, jws
from connector.identity.did import KEY_FRAGMENT, DidResolver
from connector.identity.keys import KeyPair

MAX_LIFETIME = 300
BEARER = "Bearer "


def bearer(token: str) -> str:
    """The Authorization value for a token: DCP 1.0 and EDC send and expect `Bearer <jwt>`."""
    return BEARER + token


def from_authorization(header: str) -> str:
    """The token of an Authorization value, sent as `Bearer <jwt>` or (older peers) bare."""
    header = header.strip()
    return header[len(BEARER) :].strip() if header[:7].lower() == "bearer " else header


class TokenIssuer:
    def __init__(self, did: str, keys: KeyPair, ttl_seconds: int) -> None:
        self.did = did
        self._keys = keys
        self._ttl = min(ttl_seconds, MAX_LIFETIME)

    def issue(self, audience: str, access_token: str | None = None) -> str:
        """A token for `audience`. Its `token` claim is a fresh access token to our credential
        service, or (as a verifier asking the audience's credential service, DCP 1.0
        presentation query) `access_token`, the one the audience gave us."""
        now = int(time.time())
        inner = access_token or access.issue(self._keys, self.did, audience, self._ttl)
        claims = {
            "iss": self.did,
            "sub": self.did,
            "aud": audience,
            "jti": str(uuid.uuid4()),
            "iat": now,
            "exp": now + self._ttl,
            # DCP: lets the audience ask our credential service for a presentation
            "token": inner,
        }
        return jws.sign(claims, self._keys, kid=f"{self.did}#{KEY_FRAGMENT}")


class TokenVerifier:
    """Checks a peer's token; `remember_jti` records its id and refuses one seen before
    (raising Unauthorized, at once or with the request's state change: connector/runtime.py)."""

    def __init__(
        self,
        own_did: str,
        resolver: DidResolver,
        remember_jti: Callable[[str, int], Awaitable[None]],
    ) -> None:
        self._did = own_did
        self._resolver = resolver
        self._remember = remember_jti

    async def verify(self, token: str) -> str:
        """Return the caller's DID, or raise Unauthorized with the reason."""
        return str((await self.verify_claims(token))["iss"])

    async def verify_claims(self, token: str) -> dict[str, Any]:
        """The checked claims of a caller's token (`iss` is its DID)."""
        try:
            header, unverified = jws.unverified(token)
        except jws.JwsError as exc:
            raise Unauthorized(f"malformed token: {exc}") from exc
        if header.get("alg") != jws.ALGORITHM:
            raise Unauthorized("token must be signed with EdDSA")
        issuer = unverified.get("iss")
        if not isinstance(issuer, str) or issuer != unverified.get("sub"):
            raise Unauthorized("token iss and sub must both be the caller's DID")
        document = await self._resolver.resolve(issuer)
        try:
            claims = jws.verify_by(
                token,
                document,
                str(header.get("kid") or f"#{KEY_FRAGMENT}"),
                audience=self._did,
                leeway=CLOCK_SKEW,
                require=("iss", "sub", "aud", "jti", "iat", "exp"),
            )
        except jws.Expired as exc:
            raise refused_for_time("token", unverified, "exp", CLOCK_SKEW) from exc
        except jws.NotYetValid as exc:
            raise refused_for_time("token", unverified, "iat", CLOCK_SKEW) from exc
        except jws.WrongAudience as exc:
            raise Unauthorized(
                f"token is addressed to another participant, not {self._did}"
            ) from exc
        except jws.BadSignature as exc:
            raise Unauthorized("token signature does not verify against the caller's DID") from exc
        except jws.JwsError as exc:
            raise Unauthorized(f"invalid token: {exc}") from exc
        audience = claims["aud"]
        if isinstance(audience, list) and audience != [self._did]:
            # a token for several participants could be replayed by any of them at the others
            raise Unauthorized(f"token must be addressed to {self._did} alone")
        if int(claims["exp"]) - int(claims["iat"]) > MAX_LIFETIME:
            raise Unauthorized(f"token lifetime exceeds {MAX_LIFETIME} s")
        await self._remember(str(claims["jti"]), int(claims["exp"]) + CLOCK_SKEW)
        return claims


def refused_for_time(what: str, claims: dict[str, Any], claim: str, leeway: int) -> Unauthorized:
    """A token whose signature verified but whose time did not: ClockSkew naming the token's
    time (`exp`, or `nbf`/`iat` for one from our future) and our clock. Only integers are
    taken from the token, so the answer repeats none of its text."""
    now = int(time.time())
    if claim == "exp":
        stamp = claims.get("exp")
        said = f"the {what} expired (exp) at"
    else:
        nbf, iat = claims.get("nbf"), claims.get("iat")
        ahead = nbf if isinstance(nbf, int | float) and nbf > now + leeway else iat
        stamp = ahead
        said = f"the {what} is not yet valid: issued (iat/nbf) at"
    if isinstance(stamp, bool) or not isinstance(stamp, int | float):
        return Unauthorized(f"invalid {what}: its time claims are not numbers")
    return ClockSkew(said, token_time=int(stamp), own_time=now, leeway=leeway)
