"""Public data-plane endpoints: the provider serves pulls, the consumer receives pushes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from connector.dataplane import streams, tokens
from connector.dataplane.control import ControlPlane
from connector.dataplane.pipeline import Pipeline, RangeNotSatisfiable
from connector.errors import BadRequest, ConnectorError, NotFound, PayloadTooLarge, PeerError
from connector.metering.meter import MeteringUnavailable, StreamHash, state_kind
from connector.model.enums import Direction, Role
from connector.model.metering import MeteringKind
from connector.model.records import Dataset, Transfer
from connector.model.states import TP
from connector.runtime import Runtime
from connector.store.base import Store

log = logging.getLogger(__name__)

SettleLater = Callable[[str], object]  # inside a store unit: queue the consumer's check
Delivered = Callable[[Transfer], Awaitable[None]]
NOTE_ATTEMPTS = 40  # about 20 minutes of a store that takes no writes


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
        control: ControlPlane,
        settle_later: SettleLater,
        delivered: Delivered | None = None,
    ) -> None:
        self.rt = runtime
        self.control = control
        self._settle_later = settle_later
        self._delivered = delivered  # usage control: a copy has arrived
        self._notes: set[asyncio.Task[None]] = set()

    def add_to(self, app: web.Application) -> None:
        app.router.add_get("/data/pull/{pid}", self.serve_pull)
        app.router.add_post("/data/push/{pid}", self.receive_push)

    async def _lookup(self, pid: str) -> tuple[Transfer | None, Dataset | None]:
        def lookup(store: Store) -> tuple[Transfer | None, Dataset | None]:
            tp = store.get_transfer(pid)
            return tp, store.get_dataset(tp.dataset_id) if tp is not None else None

        return await self.rt.db.read(lookup)

    async def serve_pull(self, request: web.Request) -> web.StreamResponse:
        pid = request.match_info["pid"]
        tp, dataset = await self._lookup(pid)
        if tp is None or tp.role != Role.PROVIDER:
            raise NotFound(f"no transfer {pid}")
        tokens.verify(self.rt.keys, self.rt.did, request.headers.get("Authorization"), pid)
        if tp.state != TP.STARTED:
            raise BadRequest(f"transfer is {tp.state}, not STARTED")
        tokens.require_current(request.headers.get("Authorization"), tp.data_address)
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
        # Metering before the first byte: the stream's start record is durable before anything
        # is sent, and bytes the consumer proves it holds beyond what the records cover (sent
        # before a crash) are metered now. A store that cannot write answers 503: the
        # consumer asks again later, and nothing goes out unmetered meanwhile.
        # The published digest stands for a whole file: hash again only what may differ from
        # it (an HTTP source, a stream a volume limit may cut). The meter hashes every window.
        digest = StreamHash() if dataset.sha256 is None or tp.limit_bytes is not None else None
        pipe = await Pipeline.open(
            self.rt, self.control, tp, dataset.source, start=start, digest=digest
        )
        cap = pipe.cap
        await response.prepare(request)
        try:
            try:
                async with contextlib.aclosing(pipe.flow()) as flow:
                    async for chunk in flow:
                        await response.write(chunk)
            finally:
                await pipe.close()
            if cap.cut:
                raise streams.Stopped(cap.reason(pipe.reached))
            await response.write_eof()
            await pipe.meter.close(MeteringKind.COMPLETE)
        except asyncio.CancelledError:
            await pipe.interrupted()  # shutting down: the consumer resumes from the rest
            try:
                reached = pipe.reached
                await asyncio.shield(
                    self.rt.db.write(lambda s: self.control.count_sent(pid, reached))
                )
            except Exception:
                log.exception("cannot record the bytes transfer %s sent before stopping", pid)
            raise
        except MeteringUnavailable as exc:
            # no record can be written: stop at once; what went out since the last record is
            # metered when the consumer resumes and shows what it holds (docs/metering.md)
            if request.transport is not None:
                request.transport.close()
            self._note_later(pid, f"stopped serving after {pipe.reached} bytes: {exc.detail}")
            return response
        except Exception as exc:
            # The answer is under way: no error response can follow. Cut the connection so
            # the consumer sees an incomplete body (never a short one that looks whole).
            if request.transport is not None:
                request.transport.close()
            await self._broke_off(pipe, exc)
            return response
        whole = digest.hexdigest() if digest is not None else dataset.sha256
        size, reached = pipe.sent, pipe.reached

        def served(store: Store) -> Transfer:
            done = self.control.record_copy(pid, {"bytes": reached, "sha256": whole})
            self.rt.log(
                pid,
                Direction.NOTE,
                "pull",
                detail=f"served bytes {start}-{start + size - 1}, sha256 {whole}",
            )
            return done

        done = await self.rt.db.write(served)
        if self._delivered is not None:
            await self._delivered(done)  # usage control: the provider's delivery record
        return response

    async def _broke_off(self, pipe: Pipeline, exc: Exception) -> None:
        """A pull that broke off after its answer began: its last record, the bytes that went
        out, and (a volume cut, a source failed for good) the transfer's end, with the line
        on its timeline saying why."""
        pid, reached, cap = pipe.tp.id, pipe.reached, pipe.cap
        stopped = isinstance(exc, streams.Stopped)
        why = str(exc) if isinstance(exc, ConnectorError | streams.Stopped) else repr(exc)
        direction = Direction.NOTE if stopped else Direction.FAILED
        detail = f"stopped serving after {pipe.sent} bytes: {why}"
        digest = pipe.digest.hexdigest() if pipe.digest is not None else None
        if cap.cut:
            await pipe.meter.close(MeteringKind.TERMINATE)

            def cut(store: Store) -> None:
                self.rt.log(pid, direction, "pull", detail=detail)
                self.control.record_copy(pid, {"bytes": reached, "sha256": digest})
                self.control.terminate(pid, [cap.reason(reached)], "VOLUME")

            await self.rt.db.write(cut)
        elif isinstance(exc, PeerError) and not exc.retry:
            # the source failed for good (a redirect, a refused upstream): a consumer
            # asking again cannot help, so the transfer ends here, with the reason
            await pipe.meter.close(MeteringKind.TERMINATE)
            failed = f"data transfer failed: {exc.detail}"

            def ended(store: Store) -> None:
                self.rt.log(pid, direction, "pull", detail=detail)
                self.control.terminate(pid, [failed], None)
                self.control.count_sent(pid, reached)

            await self.rt.db.write(ended)
        else:
            await pipe.meter.close(state_kind(pid, stopped))

            def counted(store: Store) -> None:
                self.rt.log(pid, direction, "pull", detail=detail)
                self.control.count_sent(pid, reached)

            await self.rt.db.write(counted)

    def _note_later(self, pid: str, detail: str) -> None:
        """Put a failure on the transfer's timeline once the store takes writes again (it is
        why the failure happened): logged at once, written when possible."""
        log.warning("transfer %s: %s", pid, detail)

        async def write() -> None:
            delay = 0.5
            for _ in range(NOTE_ATTEMPTS):
                try:
                    await self.rt.note(pid, Direction.FAILED, "pull", detail=detail)
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
        tp = await self.rt.db.read(lambda s: s.get_transfer(pid))
        if tp is None or tp.role != Role.CONSUMER:
            raise NotFound(f"no transfer {pid}")
        tokens.verify(self.rt.keys, self.rt.did, request.headers.get("Authorization"), pid)
        if tp.state not in (TP.STARTED, TP.REQUESTED):
            raise BadRequest(f"transfer is {tp.state}; data is not accepted")
        limit = await streams.receive_limit(self.rt, tp)
        announced = request.content_length
        if announced is not None and announced > limit.bytes:
            refused = limit.refuse(announced)
            await self.rt.note(pid, Direction.REFUSED, "push", detail=str(refused))
            raise refused
        writer = streams.HashingWriter(
            streams.received_path(self.rt, pid), staged=True, limit=limit
        )
        whole = False
        try:
            activity = streams.Activity(self.rt, pid, self.control.touch)
            async for chunk in request.content.iter_chunked(self.rt.settings.chunk_size):
                writer.write(chunk)
                activity()  # a push still arriving keeps the idle watchdog away
            whole = True
        except PayloadTooLarge as exc:
            # stop reading: the sender is cut off, the staged part removed (finally)
            await self.rt.note(pid, Direction.REFUSED, "push", detail=exc.detail)
            raise
        except ConnectionError as exc:
            await self.rt.note(
                pid,
                Direction.FAILED,
                "push",
                detail=f"interrupted after {writer.size} bytes: {exc!r}",
            )
            raise BadRequest(f"push interrupted after {writer.size} bytes") from exc
        finally:
            # the fsyncs of the file and its directory take a while: not on the loop
            digest = await asyncio.to_thread(writer.close)
            if not whole:
                writer.discard()
        await asyncio.to_thread(writer.commit)
        size, path = writer.size, str(writer.path)

        def received(store: Store) -> Transfer:
            done = self.control.record_copy(pid, {"bytes": size, "sha256": digest, "path": path})
            self.rt.log(
                pid, Direction.NOTE, "push", detail=f"received {size} bytes, sha256 {digest}"
            )
            self._settle_later(pid)
            return done

        tp = await self.rt.db.write(received)
        if self._delivered is not None:
            await self._delivered(tp)
        return web.json_response({"bytes": size, "sha256": digest})
