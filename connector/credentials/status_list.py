"""Bitstring status lists (W3C Bitstring Status List v1.0): one bit per issued credential.

A verifier learns that a credential was revoked without telling the issuer which credential
it checks: it downloads the whole list (16 KiB of bits, a few hundred bytes compressed).
"""

from __future__ import annotations

import base64
import gzip
from typing import Any

from connector.errors import BadRequest
from connector.identity import jws

# the specification's minimum size, so one holder's index says little about the others
SIZE = 131072


def encode(bits: bytes) -> str:
    """Multibase base64url (prefix 'u') of the GZIP-compressed bitstring."""
    packed = base64.urlsafe_b64encode(gzip.compress(bits, mtime=0)).rstrip(b"=")
    return "u" + packed.decode("ascii")


def decode(encoded: str) -> bytes:
    if not encoded.startswith("u"):
        raise BadRequest("status list is not multibase base64url (no 'u' prefix)")
    body = encoded[1:]
    try:
        return gzip.decompress(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, OSError) as exc:
        raise BadRequest(f"status list cannot be decoded: {exc}") from exc


def is_set(bits: bytes, index: int) -> bool:
    """Bit `index`, counting from the left-most bit of the first byte."""
    if not 0 <= index < len(bits) * 8:
        raise BadRequest(f"status index {index} is outside the list ({len(bits) * 8} entries)")
    return bool(bits[index // 8] & (0x80 >> (index % 8)))


def with_bits(indexes: set[int], size: int = SIZE) -> bytes:
    """A list of `size` entries with exactly `indexes` set."""
    out = bytearray(size // 8)
    for i in indexes:
        out[i // 8] |= 0x80 >> (i % 8)
    return bytes(out)


# How a status list credential is served (W3C VC JOSE/COSE media types).
JWT_MEDIA = "application/vc+jwt"
JSON_MEDIA = "application/json"
_JSON_MEDIA = {
    "application/json",
    "application/ld+json",
    "application/vc+ld+json",
    "application/vc",
}
_JWT_MEDIA = {"application/vc+jwt", "application/jwt"}


def wants_json(accept: str) -> bool:
    """Whether an Accept header asks for the JSON credential rather than its JWT.

    As EDC's own issuer service answers: JSON only when a JSON type is named (EDC verifiers
    send `edc.iam.credential.revocation.mimetype`, `application/json` in its deployments) and
    no JWT type is preferred over it; `*/*`, nothing, or a JWT type get the signed JWT, which
    is what our verifiers and older ones read."""
    best_json = best_jwt = 0.0
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        media = media.lower()
        if media in _JSON_MEDIA:
            best_json = max(best_json, q)
        elif media in _JWT_MEDIA:
            best_jwt = max(best_jwt, q)
    return best_json > 0 and best_json >= best_jwt


def json_form(token: str) -> dict[str, Any]:
    """The credential a status list JWT (ours, just signed) secures, as a JSON document."""
    _, claims = jws.unverified(token)
    vc: dict[str, Any] = claims["vc"]
    return vc
