"""Which URLs belong to which participant: a peer's callbackAddress, and where a token for an
audience may be sent.

A URL belongs to a did:web participant when it is on the DID's own host (host and port, as
the did:web identifier names them) or under the DSP endpoint its DID document names. Anything
else (another host, another port, an internal service) is not the participant's, so a
callback there is refused and a token addressed to the participant is never sent there.
"""

from __future__ import annotations

from urllib.parse import SplitResult, unquote, urlsplit

from connector.errors import BadRequest, ConnectorError
from connector.identity.did import service_endpoint
from connector.runtime import Runtime

# Longest callbackAddress accepted; a DSP base URL is far shorter.
MAX_CALLBACK = 2048
_DEFAULT_PORTS = {"https": 443, "http": 80}


def _did_web_host(did: str) -> tuple[str, int | None] | None:
    """(host, port or None) of a did:web identifier; None for anything else."""
    if not did.startswith("did:web:"):
        return None
    hostport = unquote(did[len("did:web:") :].split(":", 1)[0])
    try:
        parts = urlsplit(f"//{hostport}")
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or parts.username or parts.path or parts.query or parts.fragment:
        return None
    return parts.hostname.lower(), port


def _port(parts: SplitResult) -> int | None:
    return parts.port or _DEFAULT_PORTS.get(parts.scheme)


def on_did_host(url: str, did: str) -> bool:
    """True when `url` is on the host (and port) the did:web identifier `did` names."""
    host = _did_web_host(did)
    if host is None:
        return False
    try:
        parts = urlsplit(url)
        url_port = _port(parts)
    except ValueError:
        return False
    did_port = host[1] or _DEFAULT_PORTS.get(parts.scheme)
    return (parts.hostname or "").lower() == host[0] and url_port == did_port


def _under(url: str, base: str) -> bool:
    base = base.rstrip("/")
    return url.rstrip("/") == base or url.startswith(base + "/")


async def belongs_to(rt: Runtime, url: str, did: str) -> bool:
    """True when `url` is on `did`'s host or under the DSP endpoint its DID document names.

    The DID document is resolved only when the host does not match (a DSP endpoint hosted
    elsewhere); an unresolvable DID owns no other URL."""
    if on_did_host(url, did):
        return True
    if not did.startswith("did:web:"):
        return False
    try:
        document = await rt.resolver.resolve(did)
    except ConnectorError:
        return False
    endpoint = service_endpoint(document, "DataService")
    if not endpoint:
        return False
    base = urlsplit(endpoint)
    if base.query or base.fragment or base.username or base.password:
        return False
    return _under(url, endpoint)


def callback_syntax(url: str, *, insecure_http: bool) -> SplitResult:
    """The parsed callbackAddress, or BadRequest: an absolute https URL (http only in
    development mode) without credentials, query or fragment."""
    if len(url) > MAX_CALLBACK:
        raise BadRequest(f"callbackAddress is longer than {MAX_CALLBACK} characters")
    if not url.isprintable() or any(c.isspace() for c in url):
        raise BadRequest("callbackAddress contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise BadRequest(f"callbackAddress is not a valid URL: {exc}") from exc
    allowed = ("https", "http") if insecure_http else ("https",)
    if parts.scheme not in allowed:
        needed = "https (or http in development mode)" if insecure_http else "https"
        raise BadRequest(f"callbackAddress must be an absolute {needed} URL")
    if not parts.hostname:
        raise BadRequest("callbackAddress must name a host")
    if "@" in parts.netloc:
        raise BadRequest("callbackAddress must not carry credentials")
    if "?" in url or "#" in url:
        raise BadRequest("callbackAddress must not have a query or a fragment")
    return parts


async def check_callback(rt: Runtime, caller: str, url: str) -> str:
    """The caller's callbackAddress if it may be used, else BadRequest (a DSP 400).

    It must be syntactically clean (callback_syntax) and belong to the caller: on its did:web
    host, or under the DSP endpoint its DID document names. TCK mode's fixed callers are no
    DIDs; only the syntax is checked for them."""
    callback_syntax(url, insecure_http=rt.settings.dev_insecure_http)
    if rt.settings.tck_mode and not caller.startswith("did:"):
        return url
    if not await belongs_to(rt, url, caller):
        raise BadRequest(
            f"callbackAddress must be on {caller}'s did:web host or under the DSP endpoint"
            " its DID document names"
        )
    return url
