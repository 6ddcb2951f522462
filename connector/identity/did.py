"""did:web identifiers: building our DID document and resolving peers' (with a cache).

A token's `iss` names the DID we resolve before any signature is checked, so resolution is
what an unauthenticated caller can make us do. Hence: strict did:web syntax (a host, an
optional port, path segments; nothing that changes the URL's meaning), the egress guard on a
pool of its own, a size limit, a bounded cache that also remembers failures for a while, a cap
on concurrent resolutions per DID host, and a 401 that says only "could not be resolved".
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from connector.egress import DID_DOCUMENT_MAX, Egress, EgressRefused, Pool, read_limited
from connector.errors import Unauthorized
from connector.identity.keys import KeyPair, public_key_from_jwk

log = logging.getLogger(__name__)

KEY_FRAGMENT = "key-1"
DID_MAX_LENGTH = 1024
RESOLVE_TIMEOUT = 10.0  # waiting for a slot, connecting and reading, all together
CACHE_MAX_BYTES = 16 * 1024 * 1024  # documents' sizes as read, summed over the cache

_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_IPV4 = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
_RAW_SEGMENT = re.compile(r"(?:[A-Za-z0-9._~!$&'()*+,;=-]|%[0-9A-Fa-f]{2})+")
_SEGMENT = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:-]+")  # once decoded: no / ? # @ % or space
_PORT = re.compile(r"%3[Aa]([0-9]{1,5})")


class UnresolvableDid(Unauthorized):
    """A DID that is not a valid did:web, or whose document could not be had. The detail says
    no more than that: why (a status, an error text) stays in the local log."""

    def __init__(self, did: str) -> None:
        shown = did if len(did) <= 200 else did[:200] + "..."
        super().__init__(f"the DID {shown} could not be resolved")


class UnsupportedDidMethod(UnresolvableDid):
    """A DID of another method than did:web."""

    def __init__(self, did: str) -> None:
        super().__init__(did)
        self.detail = "unsupported DID method: only did:web is resolved"
        self.reasons = [self.detail]
        self.args = (self.detail,)


@dataclass(frozen=True)
class DidWeb:
    """A parsed did:web: where its document is, nothing else."""

    host: str
    port: int | None
    path: tuple[str, ...]  # decoded segments, each free of / ? # @ % and whitespace

    @property
    def authority(self) -> str:
        """host[:port]: the key of the per-host resolution limit."""
        return self.host.lower() if self.port is None else f"{self.host.lower()}:{self.port}"

    @property
    def ip_literal(self) -> bool:
        return _IPV4.fullmatch(self.host) is not None

    def document_url(self, *, insecure_http: bool) -> str:
        scheme = "http" if insecure_http else "https"
        where = "/" + "/".join(self.path) + "/did.json" if self.path else "/.well-known/did.json"
        port = "" if self.port is None else f":{self.port}"
        return f"{scheme}://{self.host}{port}{where}"


def _host(text: str) -> str | None:
    """A DNS name or a dotted IPv4 address, or None."""
    if _IPV4.fullmatch(text):
        try:
            ipaddress.IPv4Address(text)
        except ValueError:
            return None
        return text
    name = text[:-1] if text.endswith(".") else text
    if not name or len(name) > 253:
        return None
    labels = name.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels) or labels[-1].isdigit():
        return None
    return name


def parse_did_web(did: str) -> DidWeb:
    """Strict did:web syntax (w3c-ccg did-method-web): `did:web:` host, an optional port as
    `%3A` digits, then `:`-separated path segments. Each segment, percent-decoded, must not
    contain '/', '?', '#', '@', '%' (double encoding), whitespace or anything outside RFC 3986's
    path characters, and must not be '.' or '..'. The host is a DNS name or an IPv4 address
    (the resolver admits an IP literal only inside the operator's `egress_allow` networks; the
    method itself forbids them). Raises UnresolvableDid."""
    if isinstance(did, str) and did.startswith("did:") and not did.startswith("did:web:"):
        raise UnsupportedDidMethod(did)
    if not isinstance(did, str) or len(did) > DID_MAX_LENGTH or not did.startswith("did:web:"):
        raise UnresolvableDid(str(did))
    authority, *raw_segments = did[len("did:web:") :].split(":")
    port: int | None = None
    host_text = authority
    if "%" in authority:
        host_text, _, rest = authority.partition("%")
        found = _PORT.fullmatch("%" + rest)
        if found is None or not 0 < int(found.group(1)) <= 65535:
            raise UnresolvableDid(did)
        port = int(found.group(1))
    host = _host(host_text)
    if host is None:
        raise UnresolvableDid(did)
    path: list[str] = []
    for raw in raw_segments:
        if not _RAW_SEGMENT.fullmatch(raw):
            raise UnresolvableDid(did)
        segment = unquote(raw, errors="replace")  # bad UTF-8 fails the check below
        if segment in (".", "..") or not _SEGMENT.fullmatch(segment):
            raise UnresolvableDid(did)
        path.append(segment)
    return DidWeb(host=host, port=port, path=tuple(path))


def port_written_with_colon(did: str) -> str | None:
    """The did:web meant when a port follows the host after ':' (which did:web reads as a
    path segment): `did:web:host:8181` is very likely `did:web:host%3A8181`."""
    if not did.startswith("did:web:"):
        return None
    authority, *segments = did[len("did:web:") :].split(":")
    if not segments or "%" in authority or not segments[0].isdigit():
        return None
    return f"did:web:{authority}%3A{segments[0]}" + "".join(":" + s for s in segments[1:])


def explain_did(did: str) -> str:
    """A DID the user gave, with a hint if its port is written with ':'."""
    meant = port_written_with_colon(did)
    return f"{did} (a port in did:web is written %3A: did you mean {meant}?)" if meant else did


def did_from_url(base_url: str) -> str:
    """did:web for a connector's base URL: host (with port) plus any path segments."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}%3A{parts.port}"
    segments = [quote(s, safe="") for s in parts.path.strip("/").split("/") if s]
    return ":".join(["did", "web", host, *segments])


def served_by(url: str, did: str) -> bool:
    """True when `url` is on the host and port of the did:web `did`: served by whoever serves
    its DID document, so trusted as far as that document is."""
    try:
        parsed = parse_did_web(did)
        parts = urlsplit(url)
        port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    except (UnresolvableDid, ValueError):
        return False
    expected = parsed.port or {"https": 443, "http": 80}.get(parts.scheme)
    return (parts.hostname or "").lower() == parsed.host.lower() and port == expected


def did_document_url(did: str, *, insecure_http: bool) -> str:
    """Where the document of `did` is; UnresolvableDid if it is not a strict did:web."""
    return parse_did_web(did).document_url(insecure_http=insecure_http)


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


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def verification_key(document: dict[str, Any], kid: str) -> Ed25519PublicKey:
    """The Ed25519 key of `kid`, which must be allowed for capability invocation. A document of
    the wrong shape is an Unauthorized caller, not a server error."""
    did = document.get("id")
    full = kid if kid.startswith("did:") else f"{did}{kid if kid.startswith('#') else '#' + kid}"
    allowed = {
        (m if isinstance(m, str) else m.get("id") if isinstance(m, dict) else None)
        for m in _list(document.get("capabilityInvocation"))
        + _list(document.get("assertionMethod"))
    }
    for method in _list(document.get("verificationMethod")):
        if isinstance(method, dict) and method.get("id") == full:
            if full not in allowed:
                raise Unauthorized(f"key {full} is not allowed for capability invocation")
            jwk = method.get("publicKeyJwk")
            try:
                return public_key_from_jwk(jwk if isinstance(jwk, dict) else {})
            except (ValueError, TypeError) as exc:
                raise Unauthorized(f"key {full} is not a usable Ed25519 key") from exc
    raise Unauthorized(f"key {full} not found in the DID document of {did}")


@dataclass
class _Entry:
    expires: float
    document: dict[str, Any] | None  # None: resolution failed, do not try again until expiry
    size: int  # bytes read (a failure counts its DID), for the cache's byte budget


class _HostSlots:
    """At most `limit` resolutions at a time per DID host, so one host (an attacker's that
    never answers) cannot take the whole DID pool. Idle hosts are forgotten."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._hosts: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}

    async def run(self, host: str, work: Callable[[], Any]) -> Any:
        semaphore, users = self._hosts.setdefault(host, (asyncio.Semaphore(self._limit), [0]))
        users[0] += 1
        try:
            async with semaphore:
                return await work()
        finally:
            users[0] -= 1
            if users[0] == 0:
                self._hosts.pop(host, None)


class DidResolver:
    """Fetches did:web documents through the egress guard's DID pool and keeps them for a while.

    The cache is an LRU of at most `max_entries` DIDs and `max_bytes` of documents (as read:
    parsed, a document takes several times that); a failure is kept `negative_seconds`
    so a caller repeating a bad issuer costs one fetch, and concurrent resolutions of one DID
    share one fetch. Resolution failures raise UnresolvableDid, whose text says nothing about
    the target (no status, no error): a resolver must not be a port scanner.
    """

    def __init__(
        self,
        egress: Egress,
        *,
        insecure_http: bool,
        ttl_seconds: float,
        max_entries: int = 1000,
        max_bytes: int = CACHE_MAX_BYTES,
        negative_seconds: float = 30.0,
        per_host: int = 4,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._egress = egress
        self._insecure = insecure_http
        self._ttl = ttl_seconds
        self._negative = negative_seconds
        self._max = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0
        self._clock = clock
        self._pinned: dict[str, dict[str, Any]] = {}
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._slots = _HostSlots(per_host)

    @property
    def insecure_http(self) -> bool:
        """Development mode: DID documents (and what is trusted as theirs) over plain http."""
        return self._insecure

    @property
    def cached(self) -> int:
        """How many DIDs (documents and failures) the cache holds now."""
        return len(self._cache)

    def remember(self, did: str, document: dict[str, Any]) -> None:
        """Pin a document (our own, so we never resolve ourselves over the network)."""
        self._pinned[did] = document

    async def resolve(self, did: str) -> dict[str, Any]:
        """The DID document of `did`, or UnresolvableDid."""
        pinned = self._pinned.get(did)
        if pinned is not None:
            return pinned
        hit = self._cache.get(did)
        if hit is not None and hit.expires > self._clock():
            self._cache.move_to_end(did)
            if hit.document is None:
                raise UnresolvableDid(did)
            return hit.document
        running = self._inflight.get(did)
        if running is None:
            running = asyncio.ensure_future(self._resolve(did))
            self._inflight[did] = running
            running.add_done_callback(lambda done: self._settled(did, done))
        return await asyncio.shield(running)

    def _settled(self, did: str, done: asyncio.Future[dict[str, Any]]) -> None:
        self._inflight.pop(did, None)
        if not done.cancelled():
            done.exception()  # retrieved: every caller may have gone away meanwhile

    def _keep(self, did: str, document: dict[str, Any] | None, size: int = 0) -> None:
        old = self._cache.pop(did, None)
        if old is not None:
            self._bytes -= old.size
        lifetime = self._ttl if document is not None else self._negative
        if lifetime <= 0 or self._max <= 0:
            return
        entry = _Entry(self._clock() + lifetime, document, max(size, len(did)))
        self._cache[did] = entry
        self._bytes += entry.size
        while self._cache and (len(self._cache) > self._max or self._bytes > self._max_bytes):
            _, dropped = self._cache.popitem(last=False)
            self._bytes -= dropped.size

    async def _resolve(self, did: str) -> dict[str, Any]:
        parsed = parse_did_web(did)  # a syntax error costs nothing: not cached
        try:
            if parsed.ip_literal and not self._allowed_literal(parsed):
                raise _Failed("an IP address where did:web requires a host name")
            url = parsed.document_url(insecure_http=self._insecure)
            async with asyncio.timeout(RESOLVE_TIMEOUT):
                raw = await self._slots.run(parsed.authority, lambda: self._fetch(url))
            document = json.loads(raw)
            if not isinstance(document, dict) or document.get("id") != did:
                raise _Failed("the document does not describe this DID")
        except (
            _Failed,
            EgressRefused,
            aiohttp.ClientError,
            TimeoutError,
            ValueError,
            RecursionError,
        ) as exc:
            why = exc.detail if isinstance(exc, (_Failed, EgressRefused)) else repr(exc)
            log.debug("cannot resolve %r: %s", did[:200], why)
            if not isinstance(exc, TimeoutError):
                # a time-out may be ours (every DID connection busy with a flood of hanging
                # hosts): remembering it would refuse an honest peer for the negative lifetime
                self._keep(did, None)
            raise UnresolvableDid(did) from None
        self._keep(did, document, len(raw))
        return document

    def _allowed_literal(self, parsed: DidWeb) -> bool:
        """An IP address as a did:web host: only one the operator allows by network or by
        address (with its port, as a compose data space mapped to loopback names them)."""
        policy = self._egress.policy
        port = parsed.port or (80 if self._insecure else 443)
        if policy.host_allowed(parsed.host, port):
            return True
        ip = ipaddress.ip_address(parsed.host)
        return any(ip in net for net in policy.networks if net.version == ip.version)

    async def _fetch(self, url: str) -> bytes:
        async with self._egress.request("GET", url, pool=Pool.DID) as resp:
            if resp.status != 200:
                raise _Failed(f"HTTP {resp.status}")
            return await read_limited(resp, DID_DOCUMENT_MAX)


class _Failed(Exception):
    """Why a resolution failed, for the local log only."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail
