"""Access tokens for a holder's credential service (the DCP `token` claim).

The holder puts one into each self-issued token it sends; the verifier hands it back when it
asks the holder for a presentation. It is signed with the holder's own key, so any replica of
the holder can check it without shared state, and it names the one verifier it is for.
"""

from __future__ import annotations

import time
import uuid

import jwt

from connector.errors import Unauthorized
from connector.identity.keys import KeyPair

SCOPE = "presentation.query"


def issue(keys: KeyPair, holder: str, verifier: str, ttl_seconds: int) -> str:
    now = int(time.time())
    claims = {
        "iss": holder,
        "aud": holder,
        "sub": verifier,
        "scope": SCOPE,
        "jti": str(uuid.uuid4()),
        "iat": now,
        "exp": now + ttl_seconds,
    }
    return jwt.encode(claims, keys.private, algorithm="EdDSA", headers={"typ": "JWT"})


def check(token: str, keys: KeyPair, holder: str) -> str:
    """The verifier this token was issued to, or Unauthorized with the reason."""
    try:
        claims = jwt.decode(
            token,
            keys.public,
            algorithms=["EdDSA"],
            audience=holder,
            issuer=holder,
            leeway=30,
            options={"require": ["sub", "exp", "scope"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("access token expired") from exc
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"access token is not one this holder issued: {exc}") from exc
    if claims.get("scope") != SCOPE:
        raise Unauthorized(f"access token scope must be {SCOPE}")
    return str(claims["sub"])
