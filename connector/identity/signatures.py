"""Detached-style JWS signatures over canonical JSON: how agreements are signed.

The canonical form is RFC 8785 (JSON Canonicalization Scheme), so a verifier in another
language reproduces the bytes with any JCS library (docs/profile.md, "Canonical JSON")."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import rfc8785

from connector.errors import BadRequest
from connector.identity import jws
from connector.identity.did import KEY_FRAGMENT
from connector.identity.keys import KeyPair

# I-JSON's exact integers: JCS writes numbers as IEEE 754 doubles, as a JavaScript verifier
# parses them; a larger integer is written as the double it becomes there.
SAFE_INTEGER = 2**53 - 1


def _as_numbers(value: Any) -> Any:
    """`value` with integers past the exact range as the doubles JCS verifiers read."""
    if isinstance(value, dict):
        return {k: _as_numbers(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_as_numbers(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > SAFE_INTEGER:
        try:
            return float(value)
        except OverflowError as exc:
            raise BadRequest(f"a number too large for JSON canonicalization: {value}") from exc
    return value


def canonical(document: Any) -> bytes:
    """RFC 8785 (JCS): keys sorted by UTF-16 code units, ECMAScript number form, UTF-8, no
    spaces. Both sides, and a verifier in any language, hash the same bytes."""
    try:
        return rfc8785.dumps(_as_numbers(document))
    except rfc8785.CanonicalizationError as exc:
        raise BadRequest(f"the document has no canonical JSON form: {exc}") from exc


def legacy_canonical(document: Any) -> bytes:
    """The form used before RFC 8785 (Python's sorted-key JSON): read only, to verify what
    was signed with it. It equals JCS unless the document holds a non-integral or large
    number, or keys that sort differently by code point than by UTF-16 unit."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest(document: Any) -> str:
    return hashlib.sha256(canonical(document)).hexdigest()


def digests(document: Any) -> tuple[str, ...]:
    """The digests a signature over `document` may carry: JCS's, then (if it differs) the
    legacy form's, so records and agreements signed before RFC 8785 still verify."""
    current = digest(document)
    legacy = hashlib.sha256(legacy_canonical(document)).hexdigest()
    return (current,) if legacy == current else (current, legacy)


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
    if claims.get("sha256") not in digests(document):
        raise BadRequest("signature covers a different document (digest mismatch)")
