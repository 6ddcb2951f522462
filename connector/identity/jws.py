"""Compact EdDSA (Ed25519) JWS and JWT: the one place tokens and signatures are made and
checked, so the algorithm is pinned once and a PyJWT failure reaches callers as a type.

Callers (identity tokens, agreement and metering signatures, credentials, transfer tokens) turn
these errors into their own (Unauthorized, BadRequest, CredentialError) with their own words.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypedDict, Unpack

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from jwt.types import Options

from connector.identity.did import verification_key
from connector.identity.keys import KeyPair

ALGORITHM = "EdDSA"


class JwsError(Exception):
    """A token that is malformed or does not verify; its text is PyJWT's reason."""


class Expired(JwsError):
    """The signature verified, but `exp` has passed."""


class NotYetValid(JwsError):
    """The signature verified, but `nbf` (or `iat`) lies in the future."""


class WrongAudience(JwsError):
    """The token is addressed to someone else."""


class BadSignature(JwsError):
    """The signature is not the key's over these bytes."""


def sign(claims: dict[str, Any], keys: KeyPair, kid: str | None = None, typ: str = "JWT") -> str:
    """A compact JWS of `claims` (a JWT) with the header {alg: EdDSA, typ, kid?}."""
    headers = {"typ": typ} if kid is None else {"kid": kid, "typ": typ}
    return jwt.encode(claims, keys.private, algorithm=ALGORITHM, headers=headers)


def header(token: str) -> dict[str, Any]:
    """The token's header, unchecked: which key (`kid`) to verify it with."""
    try:
        return jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise _typed(exc) from exc


def unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) as the token says, before anything is checked: whom to ask for the key."""
    head = header(token)
    try:
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise _typed(exc) from exc
    return head, claims


class Checks(TypedDict, total=False):
    """What `verify` judges beyond the signature."""

    audience: str  # the `aud` that must be named; without it `aud` is not judged
    issuer: str
    leeway: int  # seconds of clock difference allowed on `exp`/`nbf`/`iat`
    require: Sequence[str]  # claims that must be present
    times: bool  # False leaves `exp`/`nbf` to the caller


def verify(token: str, key: Ed25519PublicKey, **checks: Unpack[Checks]) -> dict[str, Any]:
    """The claims of a token `key` signed with EdDSA (no other algorithm is accepted)."""
    audience = checks.get("audience")
    options: Options = {"require": list(checks.get("require", ()))}
    if audience is None:
        options["verify_aud"] = False
    if not checks.get("times", True):
        options["verify_exp"] = options["verify_nbf"] = False
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=checks.get("issuer"),
            leeway=checks.get("leeway", 0),
            options=options,
        )
    except jwt.PyJWTError as exc:
        raise _typed(exc) from exc
    return claims


def verify_by(
    token: str, document: dict[str, Any], kid: str, **checks: Unpack[Checks]
) -> dict[str, Any]:
    """`verify` with the key `kid` names in a DID document (Unauthorized if it has none)."""
    return verify(token, verification_key(document, kid), **checks)


def _typed(exc: jwt.PyJWTError) -> JwsError:
    if isinstance(exc, jwt.ExpiredSignatureError):
        return Expired(str(exc))
    if isinstance(exc, jwt.ImmatureSignatureError):
        return NotYetValid(str(exc))
    if isinstance(exc, jwt.InvalidAudienceError):
        return WrongAudience(str(exc))
    if isinstance(exc, jwt.InvalidSignatureError):
        return BadSignature(str(exc))
    return JwsError(str(exc))
