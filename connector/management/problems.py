"""RFC 9457 problem documents: how the management API and data plane report errors."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from pydantic import ValidationError

from connector.errors import ConnectorError
from connector.store.base import STORE_FAILURES

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    410: "Gone",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    500: "Internal Server Error",
    502: "Bad Gateway",
}


def problem(
    status: int,
    detail: str,
    instance: str,
    errors: list[str] | None = None,
    code: str | None = None,
) -> web.Response:
    body: dict[str, object] = {
        "type": "about:blank",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    if errors:
        body["errors"] = errors
    if code:
        body["code"] = code  # an extension member: e.g. CLOCK_SKEW, which the sender retries
    return web.json_response(body, status=status, content_type="application/problem+json")


@web.middleware
async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ConnectorError as exc:
        errors = exc.reasons if exc.reasons != [exc.detail] else None
        return problem(exc.status, exc.detail, request.path, errors, exc.code)
    except ValidationError as exc:
        errors = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return problem(400, "request body does not match the schema", request.path, errors)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return problem(exc.status, exc.reason, request.path)
    except STORE_FAILURES as exc:
        log.warning("%s %s: the store failed: %s", request.method, request.path, exc)
        return problem(503, "the connector's store is unavailable; retry later", request.path)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem(500, "internal error; see the connector log", request.path)
