"""Bitstring status lists (W3C Bitstring Status List v1.0): one bit per issued credential.

A verifier learns that a credential was revoked without telling the issuer which credential
it checks: it downloads the whole list (16 KiB of bits, a few hundred bytes compressed).
"""

from __future__ import annotations

import base64
import gzip

from connector.errors import BadRequest

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
