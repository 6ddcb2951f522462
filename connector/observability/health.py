"""Liveness and readiness probes on the public listener.

Orchestrators probe without credentials, so the bodies carry check names and "ok"/"failing"
only: never error texts, which could hold a database URL or a path.
"""

from __future__ import annotations

import logging
import shutil
from typing import TYPE_CHECKING, Protocol

from aiohttp import web

if TYPE_CHECKING:
    from connector.policy.point import RegoDecisionPoint
    from connector.runtime import Runtime

log = logging.getLogger(__name__)


class Probed(Protocol):
    """What readiness looks at; `connector.app.Connector` is one."""

    runtime: Runtime | None
    policy: RegoDecisionPoint | None

    @property
    def outbox_running(self) -> bool: ...


class Health:
    def __init__(self, node: Probed) -> None:
        self._node = node

    def add_to(self, app: web.Application) -> None:
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)

    async def healthz(self, request: web.Request) -> web.Response:
        """Alive: the event loop answers. A restart is the cure only when this fails."""
        return web.json_response({"status": "alive"})

    async def readyz(self, request: web.Request) -> web.Response:
        """Ready: store answers, policies loaded, outbox worker running, disk space for
        received data; else 503."""
        checks = {
            "store": await self._store_ok(),
            "policies": await self._policies_ok(),
            "outbox": self._node.outbox_running,
            "disk": self._disk_ok(),
        }
        ready = all(checks.values())
        body = {
            "status": "ready" if ready else "not ready",
            "checks": {name: "ok" if ok else "failing" for name, ok in checks.items()},
        }
        return web.json_response(body, status=200 if ready else 503)

    async def _store_ok(self) -> bool:
        rt = self._node.runtime
        if rt is None:
            return False
        try:
            # a primary-key read: cheap, but a real round trip
            await rt.db.read(lambda s: s.get_dataset(""))
        except Exception:
            log.exception("readiness: the store does not answer")
            return False
        return True

    async def _policies_ok(self) -> bool:
        """A Rego library with a version is loaded, and the engine still holds it (an OPA
        sidecar may have restarted and forgotten it); other decision points need no loading."""
        point = self._node.policy
        if point is not None:
            return bool(point.version) and await point.engine.ready()
        return self._node.runtime is not None

    def _disk_ok(self) -> bool:
        """The disk that received data lands on (data_dir/received) has at least the space
        kept free (`receive_free_disk_bytes`): below it, pulls and pushes to this connector
        are cut or retried, so it should not be sent more work."""
        rt = self._node.runtime
        if rt is None:
            return False
        where = rt.settings.data_dir / "received"
        try:
            free = shutil.disk_usage(where if where.is_dir() else rt.settings.data_dir).free
        except OSError:
            log.exception("readiness: the free space of the data directory cannot be read")
            return False
        if free < rt.settings.receive_free_disk_bytes:
            log.warning(
                "readiness: low disk, %d bytes free for received data, below the %d kept free"
                " (receive_free_disk_bytes)",
                free,
                rt.settings.receive_free_disk_bytes,
            )
            return False
        return True
