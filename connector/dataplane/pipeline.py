"""One provider stream, for pull and push alike: source -> volume cap -> state watch -> sink
-> meter (and digest).

A pull's sink is the HTTP response the consumer reads (connector/dataplane/routes.py); a
push's is the request body sent to the consumer's endpoint (connector/dataplane/jobs.py).
Both take the chunks from `Pipeline.flow()`: a chunk is counted, hashed and metered once the
sink took it (it went out), so the records never cover a byte that was not sent. The meter
is opened before the first byte (its `start` record durable) and reconciles a resumed pull's
Range with the records (bytes that reached the consumer before a crash are metered from the
source, never sent twice); see docs/metering.md.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import AsyncGenerator
from typing import Any, Protocol

from connector.dataplane import sources
from connector.dataplane.control import ControlPlane
from connector.dataplane.streams import StateWatch, VolumeCap, named_limit
from connector.errors import ConnectorError
from connector.metering.meter import Meter, frontier, state_kind
from connector.model.enums import Direction
from connector.model.records import Transfer
from connector.model.states import TP_TERMINAL
from connector.runtime import Runtime


class RangeNotSatisfiable(ConnectorError):
    """A Range the data plane does not serve (416)."""

    status = 416


class Digest(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def hexdigest(self) -> str: ...


class Pipeline:
    """The stream of one transfer's data from byte `start`, as it goes out."""

    def __init__(
        self,
        rt: Runtime,
        control: ControlPlane,
        tp: Transfer,
        source: AsyncGenerator[bytes, None],
        meter: Meter,
        *,
        start: int = 0,
        digest: Digest | None = None,
    ) -> None:
        self.rt = rt
        self.control = control
        self.tp = tp
        self.source = source
        self.meter = meter
        self.start = start
        self.digest = digest
        # the agreed volume counts from the data's first byte, also when a pull resumes
        self.cap = VolumeCap(None if tp.limit_bytes is None else tp.limit_bytes - start)
        self.watch = StateWatch(rt, tp.id, control.touch)
        self.sent = 0  # bytes the sink took, from `start`
        self._flow: AsyncGenerator[bytes, None] | None = None

    @classmethod
    async def open(
        cls,
        rt: Runtime,
        control: ControlPlane,
        tp: Transfer,
        source: dict[str, Any],
        *,
        start: int = 0,
        digest: Digest | None = None,
    ) -> Pipeline:
        """The pipeline of `source` from byte `start`, its meter's start record durable.

        A source that is gone (a file deleted after publishing) ends the transfer here, before
        a byte or a metering record: TERMINATED with "source missing", which the
        TransferTerminationMessage carries to the consumer, and SourceMissing (no retry)."""
        await _require_source(rt, control, tp, source)
        meter = await _open_meter(rt, tp, source, start, digest)
        chunks = sources.read(source, rt.egress, rt.settings.chunk_size, offset=start)
        pipe = cls(rt, control, tp, chunks, meter, start=start, digest=digest)
        if tp.limit_bytes is not None:  # a cut's reason names the agreed limit it reached
            agreement = await rt.db.read(lambda s: s.get_agreement(tp.agreement_id))
            pipe.cap.why = named_limit(agreement.body if agreement else {}, tp.limit_bytes)
        return pipe

    @property
    def reached(self) -> int:
        """The end of what went out, counted from the data's first byte."""
        return self.start + self.sent

    def flow(self) -> AsyncGenerator[bytes, None]:
        """The chunks for the sink; resuming it after a chunk means the sink took it."""
        self._flow = self._chunks()
        return self._flow

    async def _chunks(self) -> AsyncGenerator[bytes, None]:
        async for chunk in self.cap.apply(self.source):
            await self.watch()
            yield chunk
            self.sent += len(chunk)
            if self.digest is not None:
                self.digest.update(chunk)
            await self.meter.feed(chunk)

    async def close(self) -> None:
        """Close the source once the stream ended, unless it is still being read.

        aiohttp writes a request body (a push) in a task of its own, which a stop cancels
        without waiting for it: the source may then still be running under that task
        (waiting for the upstream). Closing it there raised RuntimeError ("aclose():
        asynchronous generator is already running") in place of the CancelledError, so a
        push cut by SIGTERM wrote no `interrupted` record and was retried by the stopping
        replica instead of handed over. The cancelled writer task ends the source itself."""
        for gen in (self._flow, self.source):
            if gen is None:
                continue
            if isinstance(gen, types.AsyncGeneratorType) and gen.ag_running:
                return
            await gen.aclose()

    async def interrupted(self) -> None:
        """Stopping (the task is cancelled): the chain says where this stream ended before
        another replica (or this one restarted) goes on from there."""
        await self.meter.interrupt()

    async def broke_off(self, stopped: bool = True) -> None:
        """The stream broke off (the transfer left STARTED, the sink went away): the last
        record says how (by the transfer's state then), and the bytes that went out count."""
        await self.meter.close(state_kind(self.tp.id, stopped))
        await self.rt.db.write(lambda s: self.control.count_sent(self.tp.id, self.reached))


async def _require_source(
    rt: Runtime, control: ControlPlane, tp: Transfer, source: dict[str, Any]
) -> None:
    try:
        sources.require(source, f"transfer {tp.id} (dataset {tp.dataset_id})")
    except sources.SourceMissing as exc:
        reason, code = exc.detail, exc.code

        def ended(store: Any) -> None:
            rt.log(tp.id, Direction.FAILED, "source", detail=reason)
            now = control.transfer(tp.id)
            if now is not None and now.state not in TP_TERMINAL:
                control.terminate(tp.id, [reason], code)

        await rt.db.write(ended)
        raise


async def _open_meter(
    rt: Runtime, tp: Transfer, source: dict[str, Any], start: int, digest: Digest | None
) -> Meter:
    """The meter of a stream from byte `start`, its start record written; bytes
    `[covered, start)` the consumer holds but no record covers yet are metered first, from
    the source (they went out before a crash or a failed record cut the stream). A resumed
    pull whose data has no published digest hashes `[0, start)` into `digest` on the way,
    so that the provider states the digest of the whole, as the consumer does.

    A gap larger than one window and one chunk was never sent by this connector: the
    meter closes a window at least that often and stops when it cannot (416)."""
    covered = await frontier(rt, tp.id) if start else 0
    if start > covered:
        most = rt.settings.metering_window_bytes + rt.settings.chunk_size
        if start - covered > most:
            raise RangeNotSatisfiable(
                f"range starts at {start}, but the metering records of this transfer end at"
                f" byte {covered} and at most {most} bytes beyond them were ever sent"
            )
    meter = await Meter.open(rt, tp, offset=min(covered, start))
    first = 0 if digest is not None else covered
    if start <= first:
        return meter
    at = first
    chunks = sources.read(source, rt.egress, rt.settings.chunk_size, offset=first)
    async with contextlib.aclosing(chunks):
        async for chunk in chunks:
            piece = chunk[: start - at]
            if digest is not None:
                digest.update(piece)
            if at + len(piece) > covered:
                await meter.recovered(piece[max(0, covered - at) :])
            at += len(piece)
            if at == start:
                break
    if at < start:
        raise RangeNotSatisfiable(f"range starts at {start}, past the end of the data")
    if start > covered:
        await meter.cut()
        await rt.note(
            tp.id,
            Direction.NOTE,
            "metering",
            detail=f"bytes {covered}-{start - 1} reached the consumer before the stream"
            " that carried them broke off; metered now from the source",
        )
    return meter
