"""The HTTP edge both listeners share: route declarations, typed JSON bodies, and errors as
types mapped to answers (RFC 9457 problem documents, DSP error bodies on DSP paths)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from connector.config import DSP_PATH
from connector.errors import BadRequest, ConnectorError
from connector.model import messages as m
from connector.store.base import STORE_FAILURES

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Route:
    """One management API operation: served under the prefix and described in the OpenAPI."""

    method: str
    path: str
    handler: str
    summary: str
    body: type[BaseModel] | None = None
    status: int = 200


# request bodies ----------------------------------------------------------------------------


async def read_json(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise BadRequest(f"body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise BadRequest("body is not valid JSON: nested too deeply") from exc


async def body(request: web.Request, model: type[M]) -> M:
    """The JSON object body as `model` (a ValidationError is answered by the middleware)."""
    data = await read_json(request)
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    return model.model_validate(data)


async def optional_body(request: web.Request, model: type[M]) -> M:
    """`body`, or the model's defaults when the request has none."""
    if not request.can_read_body:
        return model()
    return await body(request, model)


# problem documents (management API, data plane) --------------------------------------------

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
    document: dict[str, object] = {
        "type": "about:blank",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    if errors:
        document["errors"] = errors
    if code:
        document["code"] = code  # an extension member: e.g. CLOCK_SKEW, which the sender retries
    return web.json_response(document, status=status, content_type="application/problem+json")


@web.middleware
async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The management listener's errors: every failure a problem document, never a traceback."""
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


# the public listener: DSP error bodies on DSP paths ----------------------------------------


def dsp_error_type(path: str) -> str:
    """The DSP error `@type` for a path: which process (or the catalog) refused."""
    if "/negotiations" in path:
        return "ContractNegotiationError"
    if "/transfers" in path:
        return "TransferError"
    return "CatalogError"


@web.middleware
async def public_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Errors as types, mapped to answers: a store that cannot serve the call is a 503."""
    try:
        return await handler(request)
    except STORE_FAILURES as exc:
        log.warning("%s %s: the store failed: %s", request.method, request.path, exc)
        return _public_error(request, 503, ["the connector's store is unavailable; retry later"])
    except (ConnectorError, web.HTTPException) as exc:
        if isinstance(exc, web.HTTPException):
            if exc.status < 400:
                raise
            return _public_error(request, exc.status, [exc.reason])
        status = exc.status if exc.status < 500 or exc.status == 503 else 502
        # CLOCK_SKEW tells the sender a retry may pass (docs/security.md)
        return _public_error(request, status, exc.reasons, exc.code)


def _public_error(
    request: web.Request, status: int, reasons: list[str], code: str | None = None
) -> web.StreamResponse:
    """DSP paths answer with DSP error bodies; the data plane with problem documents."""
    if not request.path.startswith(DSP_PATH):
        return problem(status, "; ".join(reasons), request.path, code=code)
    error: dict[str, Any] = {
        "@context": list(m.CONTEXT),
        "@type": dsp_error_type(request.path),
        "code": code or str(status),
        "reason": reasons,
    }
    pid = request.match_info.get("pid") if request.match_info else None
    role = request.get("role")
    if pid and role and error["@type"] != "CatalogError":
        error["providerPid" if role == "provider" else "consumerPid"] = pid
    return web.json_response(error, status=status)
