"""JWT-secured verifiable credentials and presentations (VC Data Model 1.1 `vc`/`vp` claims).

DCP 1.0 lets credentials travel as JWTs; a verifier checks them with the issuer's did:web
key, so no JSON-LD processing is needed on either side.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from connector.errors import BadRequest
from connector.identity import jws
from connector.identity.did import KEY_FRAGMENT, DidResolver
from connector.identity.keys import KeyPair

VC_CONTEXT = "https://www.w3.org/2018/credentials/v1"
DCP_CONTEXT = "https://w3id.org/dspace-dcp/v1.0/dcp.jsonld"
MEMBERSHIP = "MembershipCredential"
ROLE = "RoleCredential"
STATUS_LIST = "BitstringStatusListCredential"
SCOPE_PREFIX = "org.eclipse.dspace.dcp.vc.type:"
# EDC's (IdentityHub's EdcScopeToCriterionTransformer): `org.eclipse.edc.vc.type:<Type>:read`
EDC_SCOPE_PREFIX = "org.eclipse.edc.vc.type:"
SCOPE_PREFIXES = (SCOPE_PREFIX, EDC_SCOPE_PREFIX)


def scope_type(scope: str) -> str | None:
    """The credential type a scope asks for (`<alias>:<Type>:<read|*|all>`, alias ours or
    EDC's); None for any other scope."""
    for prefix in SCOPE_PREFIXES:
        if scope.startswith(prefix):
            kind, _, operation = scope[len(prefix) :].partition(":")
            return kind if kind and operation in ("read", "*", "all", "") else None
    return None


class CredentialError(BadRequest):
    """A credential or presentation that is malformed or does not verify."""


@dataclass(frozen=True)
class Credential:
    """One JWT VC as read from its token (signature not yet checked)."""

    token: str
    id: str
    issuer: str
    subject: str
    types: tuple[str, ...]
    claims: dict[str, Any]
    issued_at: int
    expires_at: int | None
    status: dict[str, Any] | None
    kid: str

    @property
    def kind(self) -> str:
        """The most specific type: what a reason names."""
        return next((t for t in self.types if t != "VerifiableCredential"), "VerifiableCredential")

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.kind,
            "issuer": self.issuer,
            "subject": self.subject,
            "claims": self.claims,
            "issuedAt": _iso(self.issued_at),
            "expiresAt": _iso(self.expires_at) if self.expires_at else None,
        }


def _iso(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def sign_credential(
    keys: KeyPair,
    issuer: str,
    subject: str,
    kind: str,
    claims: dict[str, Any],
    *,
    valid_seconds: float,
    status: dict[str, Any] | None = None,
    credential_id: str | None = None,
) -> str:
    now = int(time.time())
    cid = credential_id or f"urn:uuid:{uuid.uuid4()}"
    vc: dict[str, Any] = {
        "@context": [VC_CONTEXT],
        "id": cid,
        "type": ["VerifiableCredential", kind],
        "issuer": issuer,
        "issuanceDate": _iso(now),
        "expirationDate": _iso(now + int(valid_seconds)),
        "credentialSubject": {"id": subject, **claims},
    }
    if status is not None:
        vc["credentialStatus"] = status
    payload = {
        "iss": issuer,
        "sub": subject,
        "jti": cid,
        "iat": now,
        "nbf": now,
        "exp": now + int(valid_seconds),
        "vc": vc,
    }
    return jws.sign(payload, keys, kid=f"{issuer}#{KEY_FRAGMENT}")


def read_credential(token: str) -> Credential:
    """Parse a JWT VC without checking its signature (the verifier does that next)."""
    try:
        header, payload = jws.unverified(token)
    except jws.JwsError as exc:
        raise CredentialError(f"malformed credential: {exc}") from exc
    vc = payload.get("vc")
    if not isinstance(vc, dict):
        raise CredentialError("credential JWT has no 'vc' claim")
    subject = vc.get("credentialSubject")
    types = vc.get("type")
    issuer = payload.get("iss")
    if not isinstance(subject, dict) or not isinstance(types, list) or not isinstance(issuer, str):
        raise CredentialError("credential lacks credentialSubject, type or iss")
    claims = {k: v for k, v in subject.items() if k != "id"}
    exp = payload.get("exp")
    status = vc.get("credentialStatus")
    return Credential(
        token=token,
        id=str(payload.get("jti") or vc.get("id") or ""),
        issuer=issuer,
        subject=str(payload.get("sub") or subject.get("id") or ""),
        types=tuple(str(t) for t in types),
        claims=claims,
        issued_at=int(payload.get("iat") or payload.get("nbf") or 0),
        expires_at=int(exp) if isinstance(exp, int | float) else None,
        status=status if isinstance(status, dict) else None,
        kid=str(header.get("kid") or f"{issuer}#{KEY_FRAGMENT}"),
    )


async def check_signature(credential: Credential, resolver: DidResolver) -> None:
    """The issuer's did:web key signed this token (expiry is judged by the caller)."""
    document = await resolver.resolve(credential.issuer)
    if not credential.kid.startswith(credential.issuer + "#") and credential.kid.startswith("did:"):
        raise CredentialError(f"{credential.kind} is signed with a key of another DID")
    try:
        jws.verify_by(credential.token, document, credential.kid, times=False)
    except jws.JwsError as exc:
        raise CredentialError(
            f"{credential.kind} from {credential.issuer}: signature does not verify ({exc})"
        ) from exc


def sign_presentation(
    keys: KeyPair, holder: str, audience: str, credentials: list[str], ttl_seconds: int = 120
) -> str:
    now = int(time.time())
    payload = {
        "iss": holder,
        "sub": holder,
        "aud": audience,
        "jti": str(uuid.uuid4()),
        "iat": now,
        "exp": now + ttl_seconds,
        "vp": {
            "@context": [VC_CONTEXT],
            "type": ["VerifiablePresentation"],
            "holder": holder,
            "verifiableCredential": credentials,
        },
    }
    return jws.sign(payload, keys, kid=f"{holder}#{KEY_FRAGMENT}")


async def read_presentation(
    token: str, holder: str, audience: str, resolver: DidResolver
) -> list[str]:
    """The credential tokens of a presentation the holder signed for this audience."""
    try:
        header, unverified = jws.unverified(token)
    except jws.JwsError as exc:
        raise CredentialError(f"malformed presentation: {exc}") from exc
    if unverified.get("iss") != holder:
        raise CredentialError(
            f"presentation was signed by {unverified.get('iss')}, not the caller {holder}"
        )
    document = await resolver.resolve(holder)
    try:
        payload = jws.verify_by(
            token, document, str(header.get("kid") or ""), audience=audience, leeway=30
        )
    except jws.Expired as exc:
        raise CredentialError("presentation expired") from exc
    except jws.WrongAudience as exc:
        raise CredentialError(
            f"presentation is addressed to another verifier, not {audience}"
        ) from exc
    except jws.JwsError as exc:
        raise CredentialError(f"presentation does not verify: {exc}") from exc
    vp = payload.get("vp")
    tokens = vp.get("verifiableCredential") if isinstance(vp, dict) else None
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise CredentialError("presentation carries no list of JWT credentials")
    return list(tokens)
