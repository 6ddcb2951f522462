"""A small client of the management API, shared by the CLI and the demo."""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
from typing import IO, Any


class ApiError(Exception):
    """The management API answered with a problem document (or could not be reached)."""

    def __init__(self, status: int, detail: str, errors: list[str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors or []

    def __str__(self) -> str:
        extra = "".join(f"\n  - {e}" for e in self.errors)
        return f"HTTP {self.status}: {self.detail}{extra}" if self.status else self.detail + extra


def _problem(exc: urllib.error.HTTPError) -> ApiError:
    raw = exc.read()
    try:
        doc = json.loads(raw)
    except ValueError:
        return ApiError(exc.code, raw.decode(errors="replace")[:500])
    if not isinstance(doc, dict):
        return ApiError(exc.code, str(doc)[:500])
    return ApiError(exc.code, str(doc.get("detail", doc)), doc.get("errors"))


class ManagementClient:
    def __init__(self, base_url: str, api_key: str, timeout: float = 30.0) -> None:
        self.base = base_url.rstrip("/")
        self.key = api_key
        self.timeout = timeout

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("X-Api-Key", self.key)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise _problem(exc) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise ApiError(0, f"cannot reach the management API at {self.base}: {exc}") from exc
        return json.loads(raw) if raw else None

    def download(self, path: str, out: IO[bytes]) -> dict[str, str]:
        """GET a body that is data, not JSON, into `out`; returns the response headers."""
        req = urllib.request.Request(self.base + path, method="GET")
        req.add_header("X-Api-Key", self.key)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                shutil.copyfileobj(resp, out, 1 << 20)
                return dict(resp.headers.items())
        except urllib.error.HTTPError as exc:
            raise _problem(exc) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise ApiError(0, f"cannot reach the management API at {self.base}: {exc}") from exc

    def get(self, path: str) -> Any:
        return self.call("GET", path)

    def post(self, path: str, body: Any = None) -> Any:
        return self.call("POST", path, body if body is not None else {})

    def wait_state(
        self, kind: str, pid: str, states: set[str], timeout: float = 60.0
    ) -> dict[str, Any]:
        """Poll a negotiation or transfer until it reaches one of `states`."""
        deadline = time.monotonic() + timeout
        while True:
            record: dict[str, Any] = self.get(f"/api/v1/{kind}/{pid}")
            if record["state"] in states:
                return record
            wanted = "/".join(sorted(states))
            if record["state"] == "TERMINATED":
                why = "; ".join(record.get("reason") or []) or "no reason recorded"
                raise ApiError(
                    0, f"{kind[:-1]} {pid} is {record['state']} (wanted {wanted}): {why}"
                )
            if time.monotonic() > deadline:
                raise ApiError(
                    0,
                    f"timed out after {timeout:g} s: {kind[:-1]} {pid} is still"
                    f" {record['state']} (wanted {wanted})",
                )
            time.sleep(0.05)
