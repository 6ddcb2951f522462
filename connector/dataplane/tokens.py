"""Short-lived bearer tokens bound to one transfer, signed and checked by the same connector."""

from __future__ import annotations

import time

import jwt

from connector.errors import Unauthorized
from connector.identity.keys import KeyPair


def issue(keys: KeyPair, did: str, transfer_id: str, subject: str, ttl_seconds: int) -> str:
    now = int(time.time())
    claims = {
        "iss": did,
        "aud": f"{did}#dataplane",
        "sub": subject,
        "tid": transfer_id,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    return jwt.encode(claims, keys.private, algorithm="EdDSA")


def verify(keys: KeyPair, did: str, header: str | None, transfer_id: str) -> str:
    """Return the token's subject if it is ours, unexpired and for this transfer."""
    if not header or not header.lower().startswith("bearer "):
        raise Unauthorized("a bearer token for this transfer is required")
    try:
        claims = jwt.decode(
            header[7:].strip(),
            keys.public,
            algorithms=["EdDSA"],
            audience=f"{did}#dataplane",
            options={"require": ["tid", "exp", "sub"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("transfer token expired") from exc
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"invalid transfer token: {exc}") from exc
    if claims.get("tid") != transfer_id:
        raise Unauthorized("transfer token belongs to another transfer")
    return str(claims["sub"])
