"""The HTTP edge of both listeners: what every request must satisfy before a handler sees it.

Unauthenticated callers reach this code first, so nothing here may turn bad input into a 500,
a traceback in the log, or a connection held open for ever.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from connector.errors import BadRequest, RequestTimeout

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = logging.getLogger(__name__)


def request_guard(body_timeout: float) -> Any:
    """A middleware: 400 for header values that are not UTF-8 and for bodies that cannot be
    decoded; 408 for a body that stops arriving for `body_timeout` seconds.

    aiohttp hands undecodable header bytes on as lone surrogates, which fail as soon as code
    encodes them (a token, an API key); a body with a broken Content-Encoding fails when read.
    Both are the client's fault and are answered as such, before any handler runs. aiohttp has
    no body read timeout of its own, so a watchdog stands in while the handler runs."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        for name, value in request.headers.items():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise BadRequest(f"header {_printable(name)} is not valid UTF-8") from None
        watchdog = _BodyWatchdog(request.content, body_timeout)
        try:
            return await handler(request)
        except RequestPayloadError as exc:
            raise BadRequest("the request body cannot be read: " + _reason(exc)) from None
        finally:
            watchdog.stop()

    return guard


class _BodyWatchdog:
    """Fails the body stream with RequestTimeout when the client sends nothing for `seconds`
    while the handler waits for it (the stream's buffer is empty).

    Bytes buffered but not yet read mean the connector, not the client, is slow; that never
    counts against the client."""

    def __init__(self, content: Any, seconds: float) -> None:
        self._content = content
        self._seconds = seconds
        self._seen = -1
        self._handle: asyncio.TimerHandle | None = None
        if not content.is_eof():
            self._schedule()

    def _schedule(self) -> None:
        self._seen = self._content.total_bytes
        self._handle = asyncio.get_running_loop().call_later(self._seconds, self._check)

    def _check(self) -> None:
        self._handle = None
        content = self._content
        if content.is_eof() or content.exception() is not None:
            return
        waiting = not getattr(content, "_size", 0)  # nothing buffered: the handler waits
        if content.total_bytes == self._seen and waiting:
            content.set_exception(
                RequestTimeout(f"no request body received for {self._seconds:g} s")
            )
            return
        self._schedule()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


def _printable(name: str) -> str:
    return name.encode("ascii", "replace").decode("ascii")


def _reason(exc: BaseException) -> str:
    """aiohttp's own short text of a body error (e.g. 'Can not decode content-encoding')."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, HttpProcessingError) and cause.message:
        text = str(cause.message)
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())[:200]  # one short line, whatever bytes the client sent


class ClientErrorLogFilter(logging.Filter):
    """One warning line instead of a traceback when aiohttp itself trips over a client's body.

    After answering, aiohttp reads and discards a body the handler did not read (lingering
    close); a body that cannot be decoded there (a bad gzip stream) is a client error, not a
    server fault, so it must not fill the log with tracebacks an unauthenticated caller chose."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, RequestPayloadError | HttpProcessingError | RequestTimeout):
            record.msg = "client request refused: %s"
            record.args = (_reason(exc),)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = None
            record.exc_text = None
        return True


_FILTER = ClientErrorLogFilter()


def install_log_filter() -> None:
    """Attach the filter to aiohttp's server logger (once per process)."""
    logger = logging.getLogger("aiohttp.server")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)


# connections per client ----------------------------------------------------------------------

_REFUSAL = (
    b'{"type":"about:blank","title":"Service Unavailable","status":503,'
    b'"detail":"too many connections from this client"}'
)
REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/problem+json\r\n"
    b"Connection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_REFUSAL), _REFUSAL)
)


class ClientLimits:
    """Open connections per client address on one listener, capped (0: no cap)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.open: Counter[str] = Counter()

    def admit(self, host: str) -> bool:
        if self.cap and self.open[host] >= self.cap:
            return False
        self.open[host] += 1
        return True

    def release(self, host: str) -> None:
        self.open[host] -= 1
        if self.open[host] <= 0:
            del self.open[host]


class _ConnectionGuard(asyncio.Protocol):
    """Stands before aiohttp's protocol: a client over its cap gets a 503 and the connection is
    closed before aiohttp ever sees it, so a flood from one address cannot hold the listener."""

    def __init__(self, inner: asyncio.Protocol, limits: ClientLimits) -> None:
        self._inner = inner
        self._limits = limits
        self._host: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if not self._limits.admit(host):
            log.warning("connection refused: %s has %d open", host, self._limits.cap)
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(REFUSED)
            transport.close()
            return
        self._host = host
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._host is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._host is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._host is None:
            return
        self._limits.release(self._host)
        self._host = None
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class GuardedSite(web.TCPSite):
    """aiohttp's TCPSite with the per-client connection cap in front of every connection."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        max_connections_per_client: int = 0,
        handshake_timeout: float = 60.0,
        **kwargs: Any,
    ) -> None:
        self.limits = ClientLimits(max_connections_per_client)
        # a TLS handshake that does not finish is not yet a connection aiohttp sees: it gets
        # the header timeout too
        self.handshake_timeout = handshake_timeout
        super().__init__(runner, host, port, **kwargs)

    async def start(self) -> None:
        self._runner._reg_site(self)  # BaseSite.start
        server = self._runner.server
        assert server is not None
        limits = self.limits

        def protocol() -> asyncio.Protocol:
            return _ConnectionGuard(server(), limits)

        self._server = await asyncio.get_running_loop().create_server(
            protocol,
            self._host,
            self._port,
            ssl=self._ssl_context,
            ssl_handshake_timeout=self.handshake_timeout if self._ssl_context else None,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port
