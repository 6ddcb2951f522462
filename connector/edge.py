"""The HTTP edge of both listeners: what every request must satisfy before a handler sees it.

Unauthenticated callers reach this code first, so nothing here may turn bad input into a 500,
a traceback in the log, or a connection held open for ever.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from connector.errors import BadRequest

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def request_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """400 for header values that are not UTF-8 and for bodies that cannot be decoded.

    aiohttp hands undecodable header bytes on as lone surrogates, which fail as soon as code
    encodes them (a token, an API key); a body with a broken Content-Encoding fails when read.
    Both are the client's fault and are answered as such, before any handler runs."""
    for name, value in request.headers.items():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest(f"header {_printable(name)} is not valid UTF-8") from None
    try:
        return await handler(request)
    except RequestPayloadError as exc:
        raise BadRequest("the request body cannot be read: " + _reason(exc)) from None


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
        if isinstance(exc, RequestPayloadError | HttpProcessingError):
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
