"""JSON log lines, each naming the negotiation or transfer it is about.

Log collectors (Loki, Elasticsearch, Cloud Logging) index JSON fields; with the process id on
every line an operator finds everything one negotiation did across both listeners and the
outbox worker with one query.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from datetime import UTC, datetime

from aiohttp import web

# The DSP or management process the current request or outbox job works on.
process_id: ContextVar[str | None] = ContextVar("process_id", default=None)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_PROCESS_PATHS = ("/negotiations/", "/transfers/", "/data/")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, process_id, error."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, str] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        pid = getattr(record, "process_id", None) or process_id.get()
        if pid:
            line["process_id"] = str(pid)
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure_logging(log_format: str) -> None:
    """Switch the root handlers to JSON lines; text stays as the CLI set it up."""
    if log_format != "json":
        return
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    for handler in root.handlers:
        handler.setFormatter(JsonFormatter())


@web.middleware
async def log_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Name the process a request is about (DSP, data plane or management path) in its logs."""
    pid = request.match_info.get("pid") or request.match_info.get("id")
    if not pid or not any(p in request.path for p in _PROCESS_PATHS):
        return await handler(request)
    token = process_id.set(pid)
    try:
        return await handler(request)
    finally:
        process_id.reset(token)
