"""Access tokens for a holder's credential service (the DCP `token` claim).

The holder puts one into each self-issued token it sends; the verifier hands it back when it
asks the holder for a presentation. It is signed with the holder's own key, so any replica of
the holder can check it without shared state, and it names the one verifier it is for.
"""

from __future__ import annotations

import time
import uuid

from connector.errors import Unauthorized
from connector.identity import jws
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
    return jws.sign(claims, keys)


def check(token: str, keys: KeyPair, holder: str) -> str:
    """The verifier this token was issued to, or Unauthorized with the reason."""
    try:
        claims = jws.verify(
            token,
            keys.public,
            audience=holder,
            issuer=holder,
            leeway=30,
            require=("sub", "exp", "scope"),
        )
    except jws.Expired as exc:
        raise Unauthorized("access token expired") from exc
    except jws.JwsError as exc:
        raise Unauthorized(f"access token is not one this holder issued: {exc}") from exc
    if claims.get("scope") != SCOPE:
        raise Unauthorized(f"access token scope must be {SCOPE}")
    return str(claims["sub"])
