"""Public data-plane endpoints: the provider serves pulls, the consumer receives pushes."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable

from aiohttp import web

from connector.dataplane import sources, streams, tokens
from connector.dsp.states import TP
from connector.errors import BadRequest, ConnectorError, NotFound
from connector.runtime import Runtime

Terminate = Callable[[str, list[str], str | None], object]


class DataPlaneRoutes:
    def __init__(self, runtime: Runtime, terminate: Terminate) -> None:
        self.rt = runtime
        self._terminate = terminate

    def add_to(self, app: web.Application) -> None:
        app.router.add_get("/data/pull/{pid}", self.serve_pull)
        app.router.add_post("/data/push/{pid}", self.receive_push)

    async def serve_pull(self, request: web.Request) -> web.StreamResponse:
        pid = request.match_info["pid"]
        tp = self.rt.store.get_transfer(pid)
        if tp is None or tp.role != "provider":
            raise NotFound(f"no transfer {pid}")
        tokens.verify(self.rt.keys, self.rt.did, request.headers.get("Authorization"), pid)
        if tp.state != TP.STARTED:
            raise BadRequest(f"transfer is {tp.state}, not STARTED")
        dataset = self.rt.store.get_dataset(tp.dataset_id)
        if dataset is None:
            raise NotFound(f"dataset {tp.dataset_id} no longer exists")
        response = web.StreamResponse(headers={"Content-Type": dataset.media_type})
        if dataset.size is not None:
            response.content_length = dataset.size
        cap = streams.VolumeCap(tp.limit_bytes)
        await response.prepare(request)
        digest = hashlib.sha256()
        size = 0
        watch = streams.StateWatch(self.rt, pid)
        chunks = sources.read(dataset.source, self.rt.session, self.rt.settings.chunk_size)
        try:
            async with contextlib.aclosing(chunks):
                async for chunk in cap.apply(chunks):
                    watch()
                    digest.update(chunk)
                    size += len(chunk)
                    await response.write(chunk)
            if cap.cut:
                raise streams.Stopped(cap.reason(size))
            await response.write_eof()
        except Exception as exc:
            # The answer is under way: no error response can follow. Cut the connection so
            # the consumer sees an incomplete body (never a short one that looks whole).
            stopped = isinstance(exc, streams.Stopped)
            why = str(exc) if isinstance(exc, ConnectorError | streams.Stopped) else repr(exc)
            self.rt.log(
                pid,
                "note" if stopped else "failed",
                "pull",
                detail=f"stopped serving after {size} bytes: {why}",
            )
            if request.transport is not None:
                request.transport.close()
            if cap.cut:
                with self.rt.store.transaction():
                    self.rt.store.update_transfer(pid, bytes=size, sha256=digest.hexdigest())
                    self._terminate(pid, [cap.reason(size)], "VOLUME")
            return response
        with self.rt.store.transaction():
            self.rt.store.update_transfer(pid, bytes=size, sha256=digest.hexdigest())
            self.rt.log(
                pid, "note", "pull", detail=f"served {size} bytes, sha256 {digest.hexdigest()}"
            )
        return response

    async def receive_push(self, request: web.Request) -> web.Response:
        pid = request.match_info["pid"]
        tp = self.rt.store.get_transfer(pid)
        if tp is None or tp.role != "consumer":
            raise NotFound(f"no transfer {pid}")
        tokens.verify(self.rt.keys, self.rt.did, request.headers.get("Authorization"), pid)
        if tp.state not in (TP.STARTED, TP.REQUESTED):
            raise BadRequest(f"transfer is {tp.state}; data is not accepted")
        writer = streams.HashingWriter(streams.received_path(self.rt, pid))
        try:
            async for chunk in request.content.iter_chunked(self.rt.settings.chunk_size):
                writer.write(chunk)
        except ConnectionError as exc:
            self.rt.log(
                pid, "failed", "push", detail=f"interrupted after {writer.size} bytes: {exc!r}"
            )
            raise BadRequest(f"push interrupted after {writer.size} bytes") from exc
        finally:
            digest = writer.close()
        with self.rt.store.transaction():
            self.rt.store.update_transfer(
                pid, bytes=writer.size, sha256=digest, path=str(writer.path)
            )
            self.rt.log(
                pid, "note", "push", detail=f"received {writer.size} bytes, sha256 {digest}"
            )
        return web.json_response({"bytes": writer.size, "sha256": digest})
