"""did:web identifiers: building our DID document and resolving peers' (with a cache)."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from connector.egress import DID_DOCUMENT_MAX, Egress, Pool, json_limited
from connector.errors import Unauthorized
from connector.identity.keys import KeyPair, public_key_from_jwk

KEY_FRAGMENT = "key-1"


def did_from_url(base_url: str) -> str:
    """did:web for a connector's base URL: host (with port) plus any path segments."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}%3A{parts.port}"
    segments = [quote(s, safe="") for s in parts.path.strip("/").split("/") if s]
    return ":".join(["did", "web", host, *segments])


def did_document_url(did: str, *, insecure_http: bool) -> str:
    if not did.startswith("did:web:"):
        raise Unauthorized(f"unsupported DID method: {did}")
    host, *segments = did[len("did:web:") :].split(":")
    scheme = "http" if insecure_http else "https"
    path = "/".join(unquote(s) for s in segments)
    where = f"/{path}/did.json" if path else "/.well-known/did.json"
    return f"{scheme}://{unquote(host)}{where}"


def build_document(did: str, keys: KeyPair, dsp_url: str, credential_url: str) -> dict[str, Any]:
    vm_id = f"{did}#{KEY_FRAGMENT}"
    return {
        "@context": [
            "https://www.w3.org/ns/did/v1",
            "https://w3id.org/security/suites/jws-2020/v1",
        ],
        "id": did,
        "verificationMethod": [
            {
                "id": vm_id,
                "type": "JsonWebKey2020",
                "controller": did,
                "publicKeyJwk": keys.public_jwk(),
            }
        ],
        "authentication": [vm_id],
        "assertionMethod": [vm_id],
        "capabilityInvocation": [vm_id],
        "service": [
            {"id": f"{did}#dsp", "type": "DataService", "serviceEndpoint": dsp_url},
            {
                "id": f"{did}#credential-service",
                "type": "CredentialService",
                "serviceEndpoint": credential_url,
            },
        ],
    }


def service_endpoint(document: dict[str, Any], kind: str) -> str | None:
    """The endpoint of the document's first service of type `kind` (DataService, ...)."""
    for service in document.get("service", []):
        if isinstance(service, dict) and service.get("type") == kind:
            endpoint = service.get("serviceEndpoint")
            return endpoint if isinstance(endpoint, str) else None
    return None


def verification_key(document: dict[str, Any], kid: str) -> Ed25519PublicKey:
    """The Ed25519 key of `kid`, which must be allowed for capability invocation."""
    did = document.get("id")
    full = kid if kid.startswith("did:") else f"{did}{kid if kid.startswith('#') else '#' + kid}"
    allowed = {
        (m if isinstance(m, str) else m.get("id"))
        for m in document.get("capabilityInvocation", []) + document.get("assertionMethod", [])
    }
    for method in document.get("verificationMethod", []):
        if method.get("id") == full:
            if full not in allowed:
                raise Unauthorized(f"key {full} is not allowed for capability invocation")
            return public_key_from_jwk(method.get("publicKeyJwk") or {})
    raise Unauthorized(f"key {full} not found in the DID document of {did}")


class DidResolver:
    """Fetches did:web documents over HTTP(S) and keeps them for a while."""

    def __init__(self, egress: Egress, *, insecure_http: bool, ttl_seconds: int) -> None:
        self._egress = egress
        self._insecure = insecure_http
        self._ttl = ttl_seconds
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}

    def remember(self, did: str, document: dict[str, Any]) -> None:
        """Seed the cache (our own document, so we never resolve ourselves over the network)."""
        self._cache[did] = (float("inf"), document)

    async def resolve(self, did: str) -> dict[str, Any]:
        hit = self._cache.get(did)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        url = did_document_url(did, insecure_http=self._insecure)
        try:
            async with self._egress.request(
                "GET", url, pool=Pool.DID, timeout=aiohttp.ClientTimeout(total=10, connect=5)
            ) as resp:
                if resp.status != 200:
                    raise Unauthorized(f"DID document of {did} not available (HTTP {resp.status})")
                document = await json_limited(resp, DID_DOCUMENT_MAX)
        except aiohttp.ClientError as exc:
            raise Unauthorized(f"cannot resolve {did}: {exc}") from exc
        except TimeoutError as exc:
            raise Unauthorized(f"cannot resolve {did}: timed out") from exc
        if not isinstance(document, dict) or document.get("id") != did:
            raise Unauthorized(f"DID document at {url} does not describe {did}")
        self._cache[did] = (time.monotonic() + self._ttl, document)
        return document
