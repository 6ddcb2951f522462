"""The one way out: every outbound HTTP request the connector makes goes through `Egress`.

A peer names URLs (DID hosts, callback addresses, data addresses, credential services, DSP
endpoints in DID documents); unchecked, each is a request forgery into the operator's network.
The guard enforces, for every request:

- HTTPS only, unless `dev_insecure_http`; no userinfo in a URL; no redirects followed;
- the destination address decided *after* DNS resolution, on the address actually connected
  to (loopback, private, link-local, metadata, shared and reserved ranges are refused unless
  the operator allows them in `egress_allow`; development mode allows loopback);
- connect and read timeouts, and a cap on the bytes read from an answer;
- a separate small connection pool for DID resolution, so unauthenticated callers that make us
  resolve DIDs cannot take the connections transfers and DSP messages need.

Errors carry only what the guard decided ("refused: private address"), never a remote body.
See docs/security.md.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import socket
import ssl
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from urllib.parse import SplitResult, urlsplit

import aiohttp
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from connector.errors import ConnectorError

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

LOOPBACK: tuple[str, ...] = ("127.0.0.0/8", "::1/128")

# Read limits per kind of answer (bytes). A data stream is limited by its caller instead.
DID_DOCUMENT_MAX = 64 * 1024
SMALL_ANSWER_MAX = 1024 * 1024  # credentials, presentations, status lists, DSP acks
CATALOG_MAX = 32 * 1024 * 1024  # a provider's catalog page

CONNECT_TIMEOUT = 10.0


class Pool(Enum):
    """Which connection pool a request uses."""

    GENERAL = "general"  # DSP messages, transfers, credentials, crawls
    DID = "did"  # did:web resolution, which unauthenticated callers can cause


class EgressRefused(ConnectorError):
    """The guard refused the destination before any byte was sent (or read too much back)."""

    status = 400


def _network(text: str) -> IpNetwork | None:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return None


# IPv6 prefixes that carry an IPv4 address in their last 32 bits (NAT64 well-known and local
# use, IPv4-translated, IPv4-compatible): judged as that IPv4 address, since a translator on
# the path would deliver them there.
_EMBEDDING = tuple(
    ipaddress.IPv6Network(n) for n in ("64:ff9b::/96", "64:ff9b:1::/48", "::ffff:0:0:0/96", "::/96")
)


def _address(host: str) -> IpAddress | None:
    """The address a host names, with an IPv4 address embedded in IPv6 unpacked."""
    try:
        ip = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv4Address):
        return ip
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if any(ip in net for net in _EMBEDDING) and int(ip) > 1:  # not :: or ::1
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def connect_host(url: str) -> str:
    """The host as the HTTP client will connect to it: yarl's normalised form (IDNA, Unicode
    digits and dots folded), not the text of the URL, so full-width or ideographic digits and
    dots are judged as the address they become."""
    try:
        host = yarl.URL(url).raw_host
    except (ValueError, UnicodeError, TypeError) as exc:
        raise EgressRefused(f"not a valid URL: {exc}") from exc
    if not host:
        raise EgressRefused("the URL has no host")
    return host.rstrip(".").lower()


@dataclass(frozen=True)
class EgressPolicy:
    """What may be reached: public addresses, plus the networks and hosts the operator allows."""

    allow_http: bool = False
    networks: tuple[IpNetwork, ...] = ()
    hosts: frozenset[str] = field(default_factory=frozenset)  # "host" or "host:port", lowercase

    @classmethod
    def from_settings(cls, allow: Iterable[str] | None, *, dev_insecure_http: bool) -> EgressPolicy:
        """`allow` entries are CIDR networks, addresses, host names or host:port."""
        entries = list(LOOPBACK) if allow is None and dev_insecure_http else list(allow or ())
        networks: list[IpNetwork] = []
        hosts: set[str] = set()
        for entry in entries:
            net = _network(entry)
            if net is not None:
                networks.append(net)
            else:
                hosts.add(entry.strip().lower())
        return cls(allow_http=dev_insecure_http, networks=tuple(networks), hosts=frozenset(hosts))

    def host_allowed(self, host: str, port: int) -> bool:
        """An operator-named host (or host:port) is reachable whatever it resolves to."""
        host = host.lower().strip("[]")
        return host in self.hosts or f"{host}:{port}" in self.hosts

    def address_refusal(self, ip: IpAddress) -> str | None:
        """Why `ip` may not be reached, or None if it may."""
        if any(ip in net for net in self.networks if net.version == ip.version):
            return None
        if ip.is_multicast or ip.is_unspecified:
            return "not a unicast address"
        if ip.is_loopback:
            return "loopback address"
        if ip.is_link_local:
            return "link-local or metadata address"
        if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
            return "private or reserved address"
        if ip.is_private or not ip.is_global:
            return "private or reserved address"
        return None

    def check_url(self, url: str) -> SplitResult:
        """Refuse a URL the guard would never fetch; return it parsed."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise EgressRefused(f"not a valid URL: {exc}") from exc
        if parts.scheme not in ("http", "https"):
            raise EgressRefused("only https URLs are fetched")
        if parts.scheme == "http" and not self.allow_http:
            raise EgressRefused("plain http is refused (https only outside development mode)")
        if parts.username is not None or parts.password is not None or "@" in parts.netloc:
            raise EgressRefused("URLs with credentials (user@host) are refused")
        if not parts.hostname:
            raise EgressRefused("the URL has no host")
        host = connect_host(url)
        port = port or (443 if parts.scheme == "https" else 80)
        if self.host_allowed(host, port):
            return parts
        ip = _address(host)
        if ip is not None:
            why = self.address_refusal(ip)
            if why is not None:
                raise EgressRefused(f"destination {host} refused: {why}")
        return parts

    async def check_destination(self, url: str) -> SplitResult:
        """`check_url`, plus the addresses the host resolves to now, for a URL kept to be
        fetched later (a push data address, a dataset's source, a member's DSP endpoint):
        refused when every one of them is refused. A name that does not resolve now is not
        refused here (a peer's data address may name a host only it can resolve yet); the
        guard decides again at every request, on the addresses it then connects to."""
        parts = self.check_url(url)
        host = connect_host(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if self.host_allowed(host, port) or _address(host) is not None:
            return parts  # an allowed name, or an address check_url has decided on
        try:
            found = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError:
            return parts
        reasons: set[str] = set()
        for *_, sockaddr in found:
            ip = _address(str(sockaddr[0]))
            why = "unparseable address" if ip is None else self.address_refusal(ip)
            if why is None:
                return parts
            reasons.add(why)
        if reasons:
            raise EgressRefused(f"destination {host} refused: {', '.join(sorted(reasons))}")
        return parts


class _Refused(OSError):
    """Raised by the resolver; aiohttp wraps it in a ClientConnectorError."""


class GuardedResolver(AbstractResolver):
    """DNS resolution that drops every address the policy refuses (checked after lookup, so a
    name that resolves to an internal address is refused however it is spelled)."""

    def __init__(self, policy: EgressPolicy) -> None:
        self._policy = policy
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        if self._policy.host_allowed(host, port):
            return found
        kept = []
        reasons = set()
        for entry in found:
            ip = _address(entry["host"])
            why = "unparseable address" if ip is None else self._policy.address_refusal(ip)
            if why is None:
                kept.append(entry)
            else:
                reasons.add(why)
        if not kept:
            raise _Refused(f"destination {host} refused: {', '.join(sorted(reasons))}")
        return kept

    async def close(self) -> None:
        await self._inner.close()


class Egress:
    """The connector's outbound HTTP client: two pools behind one policy."""

    def __init__(
        self,
        policy: EgressPolicy,
        ssl_context: ssl.SSLContext | None = None,
        *,
        general_limit: int = 200,
        did_limit: int = 16,
    ) -> None:
        self.policy = policy
        self._ssl = ssl_context
        self._limits = {Pool.GENERAL: general_limit, Pool.DID: did_limit}
        self._sessions: dict[Pool, aiohttp.ClientSession] = {}

    def _session(self, pool: Pool) -> aiohttp.ClientSession:
        session = self._sessions.get(pool)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                ssl=self._ssl if self._ssl is not None else True,
                limit=self._limits[pool],
                resolver=GuardedResolver(self.policy),
                use_dns_cache=False,  # every connection decided on a fresh lookup
            )
            session = aiohttp.ClientSession(connector=connector, trust_env=False)
            self._sessions[pool] = session
        return session

    @asynccontextmanager
    async def request(
        self,
        method: str,
        url: str,
        *,
        pool: Pool = Pool.GENERAL,
        timeout: aiohttp.ClientTimeout | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """One request through the guard: URL checked, redirects not followed (a 3xx is
        returned as it is), a refused address raised as EgressRefused."""
        self.policy.check_url(url)
        limits = timeout or aiohttp.ClientTimeout(total=60, connect=CONNECT_TIMEOUT)
        if limits.connect is None and limits.sock_connect is None:
            limits = aiohttp.ClientTimeout(
                total=limits.total, connect=CONNECT_TIMEOUT, sock_read=limits.sock_read
            )
        session = self._session(pool)
        try:
            async with session.request(
                method, url, allow_redirects=False, timeout=limits, **kwargs
            ) as resp:
                yield resp
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, _Refused):
                raise EgressRefused(str(exc.os_error)) from exc
            raise

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()


def describe(exc: BaseException) -> str:
    """A network failure in words an operator acts on ("connection refused"), not a repr."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"its TLS certificate is not accepted ({exc.certificate_error})"
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_error = exc.os_error
        if isinstance(os_error, socket.gaierror):
            return "its host name does not resolve"
        if os_error.errno:  # asyncio's strerror is "Connect call failed (addr)": the errno's
            return os.strerror(os_error.errno).lower()
        return str(os_error) or "cannot connect"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "it closed the connection without answering"
    if isinstance(exc, aiohttp.ServerTimeoutError | TimeoutError):
        return "no answer in time"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return f"the answer broke off ({exc})"
    if isinstance(exc, aiohttp.InvalidURL):
        return f"not a valid URL ({exc})"
    return str(exc) or type(exc).__name__


def unreachable(who: str, url: str, exc: BaseException) -> str:
    """ "provider at URL unreachable (connection refused)": for a failure before any answer."""
    origin = urlsplit(url)
    return f"{who} at {origin.scheme}://{origin.netloc} unreachable ({describe(exc)})"


async def read_limited(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The answer's body, refused (EgressRefused) once it passes `limit` bytes."""
    if resp.content_length is not None and resp.content_length > limit:
        raise EgressRefused(f"answer larger than {limit} bytes")
    body = bytearray()
    async for chunk in resp.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            raise EgressRefused(f"answer larger than {limit} bytes")
    return bytes(body)


async def json_limited(resp: aiohttp.ClientResponse, limit: int) -> Any:
    """The answer as JSON (ValueError if it is not), refused past `limit` bytes."""
    raw = await read_limited(resp, limit)
    return await asyncio.to_thread(json.loads, raw) if len(raw) > 256 * 1024 else json.loads(raw)
