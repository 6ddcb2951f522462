"""Short-lived bearer tokens bound to one transfer, signed and checked by the same connector."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from typing import Any

from connector.clock import CLOCK_SKEW
from connector.errors import Unauthorized
from connector.identity import jws
from connector.identity.keys import KeyPair
from connector.identity.tokens import refused_for_time


def issue(keys: KeyPair, did: str, transfer_id: str, subject: str, ttl_seconds: int) -> str:
    now = int(time.time())
    claims = {
        "iss": did,
        "aud": f"{did}#dataplane",
        "sub": subject,
        "tid": transfer_id,
        "jti": uuid.uuid4().hex,  # two tokens issued within a second still differ
        "iat": now,
        "exp": now + ttl_seconds,
    }
    return jws.sign(claims, keys)


def presented(header: str | None) -> str:
    """The token in an `Authorization` header: after `Bearer ` (ours), or the whole value
    (EDC's clients send the EDR's `authorization` as it is)."""
    value = (header or "").strip()
    if value[:7].lower() == "bearer ":
        value = value[7:].strip()
    return value


def verify(keys: KeyPair, did: str, header: str | None, transfer_id: str) -> str:
    """Return the token's subject if it is ours, unexpired and for this transfer."""
    token = presented(header)
    if not token:
        raise Unauthorized("a bearer token for this transfer is required")
    try:
        claims = jws.verify(
            token,
            keys.public,
            audience=f"{did}#dataplane",
            # our own token, but our clock may have been set since we issued it
            leeway=CLOCK_SKEW,
            require=("tid", "exp", "sub"),
        )
    except (jws.Expired, jws.NotYetValid) as exc:
        # the signature verified (PyJWT checks it before the times): refused for its time
        # alone, which the consumer retries (a clock set right again lets it pass)
        _, unverified = jws.unverified(token)
        claim = "exp" if isinstance(exc, jws.Expired) else "iat"
        raise refused_for_time("transfer token", unverified, claim, CLOCK_SKEW) from exc
    except jws.JwsError as exc:
        raise Unauthorized(f"invalid transfer token: {exc}") from exc
    if claims.get("tid") != transfer_id:
        raise Unauthorized("transfer token belongs to another transfer")
    return str(claims["sub"])


def digest(token: str) -> str:
    """What the provider keeps of a pull token it issued: enough to recognise it, not to use."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def require_current(header: str | None, kept: dict[str, Any] | None) -> None:
    """A pull token is honoured only while it is the transfer's current one: suspension and
    termination drop it (`kept` becomes None), a resume issues another. Call after `verify`."""
    current = None
    for prop in (kept or {}).get("endpointProperties") or []:
        if prop.get("name") == "authorization":
            current = prop.get("value")
    given = digest(presented(header))
    if not isinstance(current, str) or not hmac.compare_digest(given, current):
        raise Unauthorized(
            "transfer token revoked: the transfer was suspended or has ended since it was"
            " issued (a resumed transfer has a new token)"
        )
