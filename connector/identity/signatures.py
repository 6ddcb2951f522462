"""Detached-style JWS signatures over canonical JSON: how agreements are signed."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from connector.errors import BadRequest
from connector.identity import jws
from connector.identity.did import KEY_FRAGMENT
from connector.identity.keys import KeyPair


def canonical(document: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8: both sides hash the same bytes."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest(document: Any) -> str:
    return hashlib.sha256(canonical(document)).hexdigest()


def sign(document: Any, signer_did: str, keys: KeyPair) -> str:
    """Compact JWS whose payload names the signer and the document's SHA-256."""
    claims = {"iss": signer_did, "sha256": digest(document)}
    return jws.sign(claims, keys, kid=f"{signer_did}#{KEY_FRAGMENT}")


def seal(document: Any, signer_did: str, keys: KeyPair) -> tuple[str, str]:
    """(hash, JWS) of a chained document: the hash links the next one, the JWS is the signer's
    (and a countersignature is the same call by the other party)."""
    return digest(document), sign(document, signer_did, keys)


# the `prev` of the first document of a hash chain
GENESIS = "0" * 64


def verify(document: Any, signature: str, signer_did: str, did_document: dict[str, Any]) -> None:
    """Raise BadRequest unless `signature` is `signer_did`'s over exactly this document."""
    try:
        kid = str(jws.header(signature).get("kid") or f"#{KEY_FRAGMENT}")
        claims = jws.verify_by(signature, did_document, kid)
    except Exception as exc:
        raise BadRequest(f"signature by {signer_did} does not verify: {exc}") from exc
    if claims.get("iss") != signer_did:
        raise BadRequest(f"signature was made by {claims.get('iss')}, expected {signer_did}")
    if claims.get("sha256") != digest(document):
        raise BadRequest("signature covers a different document (digest mismatch)")
