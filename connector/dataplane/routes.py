"""Public data-plane endpoints: the provider serves pulls, the consumer receives pushes."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from connector.dataplane import sources, streams, tokens
from connector.errors import BadRequest, ConnectorError, NotFound, PayloadTooLarge, PeerError
from connector.metering.meter import Meter, MeteringUnavailable, end_kind, frontier
from connector.model.enums import Direction, Role
from connector.model.metering import MeteringKind
from connector.model.records import Transfer
from connector.model.states import TP
from connector.runtime import Runtime

log = logging.getLogger(__name__)

Terminate = Callable[[str, list[str], str | None], object]
Settle = Callable[[str], object]
Delivered = Callable[[Transfer], Awaitable[None]]
NOTE_ATTEMPTS = 40  # about 20 minutes of a store that takes no writes


class RangeNotSatisfiable(ConnectorError):
    """A Range header the data plane does not serve (416)."""

    status = 416


def _range_start(header: str | None, size: int | None) -> int:
    """The start of an open-ended `Range: bytes=N-` (the only form a resuming pull sends)."""
    if not header:
        return 0
    unit, _, spec = header.partition("=")
    start, dash, end = spec.strip().partition("-")
    if unit.strip() != "bytes" or not dash or end or not start.isdigit():
        raise RangeNotSatisfiable(f"only 'bytes=N-' ranges are served, got {header!r}")
    if size is not None and int(start) > size:
        raise RangeNotSatisfiable(f"range starts at {start}, the data has {size} bytes")
    return int(start)


class DataPlaneRoutes:
    def __init__(
        self,
        runtime: Runtime,
        terminate: Terminate,
        settle: Settle,
        delivered: Delivered | None = None,
    ) -> None:
        self.rt = runtime
        self._terminate = terminate
        self._settle = settle
        self._delivered = delivered  # usage control: a copy has arrived
        self._notes: set[asyncio.Task[None]] = set()

    def add_to(self, app: web.Application) -> None:
        app.router.add_get("/data/pull/{pid}", self.serve_pull)
        app.router.add_post("/data/push/{pid}", self.receive_push)

    async def serve_pull(self, request: web.Request) -> web.StreamResponse:
        pid = request.match_info["pid"]
        tp = self.rt.store.get_transfer(pid)
        if tp is None or tp.role != Role.PROVIDER:
            raise NotFound(f"no transfer {pid}")
        tokens.verify(self.rt.keys, self.rt.did, request.headers.get("Authorization"), pid)
        if tp.state != TP.STARTED:
            raise BadRequest(f"transfer is {tp.state}, not STARTED")
        tokens.require_current(request.headers.get("Authorization"), tp.data_address)
        dataset = self.rt.store.get_dataset(tp.dataset_id)
        if dataset is None:
            raise NotFound(f"dataset {tp.dataset_id} no longer exists")
        start = _range_start(request.headers.get("Range"), dataset.size)
        response = web.StreamResponse(headers={"Content-Type": dataset.media_type})
        if start:
            response.set_status(206)
            if dataset.size is not None:
                response.headers["Content-Range"] = (
                    f"bytes {start}-{dataset.size - 1}/{dataset.size}"
                )
        if dataset.size is not None:
            response.content_length = dataset.size - start
        # the agreed volume counts from the data's first byte, also when a pull resumes
        cap = streams.VolumeCap(None if tp.limit_bytes is None else tp.limit_bytes - start)
        # Metering before the first byte: the stream's start record is durable before anything
        # is sent, and bytes the consumer proves it holds beyond what the records cover (sent
        # before a crash) are metered now. A store that cannot write answers 503: the
        # consumer asks again later, and nothing goes out unmetered meanwhile.
        # The published digest stands for a whole file: hash again only what may differ from
        # it (an HTTP source, a stream a volume limit may cut). The meter hashes every window.
        digest = hashlib.sha256() if dataset.sha256 is None or tp.limit_bytes is not None else None
        meter = await self._open_meter(tp, dataset.source, start, digest)
        await response.prepare(request)
        size = 0
        watch = streams.StateWatch(self.rt, pid)
        chunks = sources.read(
            dataset.source, self.rt.egress, self.rt.settings.chunk_size, offset=start
        )
        try:
            async with contextlib.aclosing(chunks):
                async for chunk in cap.apply(chunks):
                    watch()
                    await response.write(chunk)
                    meter.feed(chunk)
                    if digest is not None:
                        digest.update(chunk)
                    size += len(chunk)
            if cap.cut:
                raise streams.Stopped(cap.reason(start + size))
            await response.write_eof()
            meter.close(MeteringKind.COMPLETE)
        except asyncio.CancelledError:
            meter.interrupt()  # shutting down: the consumer resumes from the rest
            try:
                streams.record_sent(self.rt, pid, start + size)
            except Exception:
                log.exception("cannot record the bytes transfer %s sent before stopping", pid)
            raise
        except MeteringUnavailable as exc:
            # no record can be written: stop at once; what went out since the last record is
            # metered when the consumer resumes and shows what it holds (docs/metering.md)
            if request.transport is not None:
                request.transport.close()
            self._note_later(pid, f"stopped serving after {start + size} bytes: {exc.detail}")
            return response
        except Exception as exc:
            # The answer is under way: no error response can follow. Cut the connection so
            # the consumer sees an incomplete body (never a short one that looks whole).
            stopped = isinstance(exc, streams.Stopped)
            why = str(exc) if isinstance(exc, ConnectorError | streams.Stopped) else repr(exc)
            self.rt.log(
                pid,
                Direction.NOTE if stopped else Direction.FAILED,
                "pull",
                detail=f"stopped serving after {size} bytes: {why}",
            )
            if request.transport is not None:
                request.transport.close()
            if cap.cut:
                meter.close(MeteringKind.TERMINATE)
                with self.rt.store.transaction():
                    self.rt.store.update_transfer(
                        pid, bytes=start + size, sha256=digest.hexdigest() if digest else None
                    )
                    self._terminate(pid, [cap.reason(start + size)], "VOLUME")
            elif isinstance(exc, PeerError) and not exc.retry:
                # the source failed for good (a redirect, a refused upstream): a consumer
                # asking again cannot help, so the transfer ends here, with the reason
                meter.close(MeteringKind.TERMINATE)
                with self.rt.store.transaction():
                    self._terminate(pid, [f"data transfer failed: {exc.detail}"], None)
                streams.record_sent(self.rt, pid, start + size)
            else:
                meter.close(_end_kind(self.rt, pid, stopped))
                streams.record_sent(self.rt, pid, start + size)
            return response
        whole = digest.hexdigest() if digest is not None else dataset.sha256
        with self.rt.store.transaction():
            served = self.rt.store.update_transfer(pid, bytes=start + size, sha256=whole)
            self.rt.log(
                pid,
                Direction.NOTE,
                "pull",
                detail=f"served bytes {start}-{start + size - 1}, sha256 {whole}",
            )
        if self._delivered is not None:
            await self._delivered(served)  # usage control: the provider's delivery record
        return response

    async def _open_meter(
        self, tp: Transfer, source: dict[str, Any], start: int, digest: Any
    ) -> Meter:
        """The meter of a pull from byte `start`, its start record written; bytes
        `[covered, start)` the consumer holds but no record covers yet are metered first, from
        the source (they went out before a crash or a failed record cut the stream). A resumed
        pull whose data has no published digest hashes `[0, start)` into `digest` on the way,
        so that the provider states the digest of the whole, as the consumer does.

        A gap larger than one window and one chunk was never sent by this connector: the
        meter closes a window at least that often and stops when it cannot (416)."""
        covered = frontier(self.rt, tp.id)
        if start > covered:
            most = self.rt.settings.metering_window_bytes + self.rt.settings.chunk_size
            if start - covered > most:
                raise RangeNotSatisfiable(
                    f"range starts at {start}, but the metering records of this transfer end at"
                    f" byte {covered} and at most {most} bytes beyond them were ever sent"
                )
        meter = Meter(self.rt, tp, offset=min(covered, start))
        first = 0 if digest is not None else covered
        if start <= first:
            return meter
        at = first
        chunks = sources.read(source, self.rt.egress, self.rt.settings.chunk_size, offset=first)
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                piece = chunk[: start - at]
                if digest is not None:
                    digest.update(piece)
                if at + len(piece) > covered:
                    meter.recovered(piece[max(0, covered - at) :])
                at += len(piece)
                if at == start:
                    break
        if at < start:
            raise RangeNotSatisfiable(f"range starts at {start}, past the end of the data")
        if start > covered:
            meter.cut()
            self.rt.log(
                tp.id,
                Direction.NOTE,
                "metering",
                detail=f"bytes {covered}-{start - 1} reached the consumer before the stream"
                " that carried them broke off; metered now from the source",
            )
        return meter

    def _note_later(self, pid: str, detail: str) -> None:
        """Put a failure on the transfer's timeline once the store takes writes again (it is
        why the failure happened): logged at once, written when possible."""
        log.warning("transfer %s: %s", pid, detail)

        async def write() -> None:
            delay = 0.5
            for _ in range(NOTE_ATTEMPTS):
                try:
                    self.rt.log(pid, Direction.FAILED, "pull", detail=detail)
                    return
                except Exception:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 30.0)
            log.error("transfer %s: could not record on its timeline: %s", pid, detail)

        task = asyncio.create_task(write())
        self._notes.add(task)
        task.add_done_callback(self._notes.discard)

    async def receive_push(self, request: web.Request) -> web.Response:
        pid = request.match_info["pid"]
        tp = self.rt.store.get_transfer(pid)
        if tp is None or tp.role != Role.CONSUMER:
            raise NotFound(f"no transfer {pid}")
        tokens.verify(self.rt.keys, self.rt.did, request.headers.get("Authorization"), pid)
        if tp.state not in (TP.STARTED, TP.REQUESTED):
            raise BadRequest(f"transfer is {tp.state}; data is not accepted")
        limit = streams.receive_limit(self.rt, tp)
        announced = request.content_length
        if announced is not None and announced > limit.bytes:
            self.rt.log(pid, Direction.REFUSED, "push", detail=str(limit.refuse(announced)))
            raise limit.refuse(announced)
        writer = streams.HashingWriter(
            streams.received_path(self.rt, pid), staged=True, limit=limit
        )
        whole = False
        try:
            activity = streams.Activity(self.rt, pid)
            async for chunk in request.content.iter_chunked(self.rt.settings.chunk_size):
                writer.write(chunk)
                activity()  # a push still arriving keeps the idle watchdog away
            whole = True
        except PayloadTooLarge as exc:
            # stop reading: the sender is cut off, the staged part removed (finally)
            self.rt.log(pid, Direction.REFUSED, "push", detail=exc.detail)
            raise
        except ConnectionError as exc:
            self.rt.log(
                pid,
                Direction.FAILED,
                "push",
                detail=f"interrupted after {writer.size} bytes: {exc!r}",
            )
            raise BadRequest(f"push interrupted after {writer.size} bytes") from exc
        finally:
            digest = writer.close()
            if not whole:
                writer.discard()
        writer.commit()
        with self.rt.store.transaction():
            tp = self.rt.store.update_transfer(
                pid, bytes=writer.size, sha256=digest, path=str(writer.path)
            )
            self.rt.log(
                pid, Direction.NOTE, "push", detail=f"received {writer.size} bytes, sha256 {digest}"
            )
            self._settle(pid)
        if self._delivered is not None:
            await self._delivered(tp)
        return web.json_response({"bytes": writer.size, "sha256": digest})


def _end_kind(rt: Runtime, pid: str, stopped: bool) -> MeteringKind:
    tp = rt.store.get_transfer(pid)
    return end_kind(tp.state if tp else "gone", stopped)
