"""The data plane's jobs in the outbox: pull (consumer), push (provider), settle (consumer).

They move the bytes through the one pipeline (connector/dataplane/pipeline.py) and end the
transfer through the control plane's narrow interface (connector/dataplane/control.py),
never by writing its records. Every store access is a unit on the store's threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from connector.dataplane import streams
from connector.dataplane.control import ControlPlane
from connector.dataplane.pipeline import Pipeline
from connector.errors import ConnectorError, DiskFull, NotFound, PeerError
from connector.metering.meter import StreamHash
from connector.metering.receipts import wait_for_answers
from connector.metering.settle import EarlyChecks, receipted_prefix, settle, stream_ended
from connector.model.enums import Direction, JobKind
from connector.model.jobs import Pull, Push, Settle
from connector.model.metering import MeteringEntry, MeteringKind
from connector.model.records import Job, Transfer
from connector.model.states import TP, TP_TERMINAL
from connector.outbox import Outbox
from connector.peer.client import DspClient
from connector.runtime import Runtime
from connector.store.base import Store

Delivered = Callable[[Transfer], Awaitable[None]]

# How long a consumer waits, after the last byte of a pull, for the record that ends the stream.
STREAM_END_SECONDS = 5.0
UNMETERED_TAIL = (
    "the provider's records do not reach the end of the data; asking for the empty rest, so"
    " that it meters what we hold"
)


class DataJobs:
    """The jobs that move a transfer's data, registered with the outbox by `register`."""

    def __init__(
        self,
        runtime: Runtime,
        outbox: Outbox,
        client: DspClient,
        control: ControlPlane,
        delivered: Delivered | None = None,
    ) -> None:
        self.rt = runtime
        self.outbox = outbox
        self.client = client
        self.control = control
        self._delivered = delivered  # usage control: a copy was delivered

    def register(self) -> DataJobs:
        self.outbox.register(Pull.KIND, self._pull_job, self._data_failed)
        self.outbox.register(Push.KIND, self._push_job, self._data_failed)
        self.outbox.register(Settle.KIND, self._settle_job, self._settle_failed)
        return self

    async def _get(self, pid: str) -> Transfer:
        tp = await self.rt.db.read(lambda s: s.get_transfer(pid))
        if tp is None:
            raise NotFound(f"no transfer process {pid}")
        return tp

    def _ended(self, pid: str, refused: list[str], *, cut: str | None = None) -> Transfer | None:
        """Inside a unit: a STARTED transfer whose data moved ends, by the state it has now:
        TERMINATED when cut at the agreed volume or a record was refused, else COMPLETED."""
        tp = self.control.transfer(pid)
        if tp is None or tp.state != TP.STARTED:
            return tp
        if cut is not None:
            return self.control.terminate(pid, [cut], "VOLUME")
        if refused:
            return self.control.terminate(pid, refused, "METERING")
        return self.control.complete(pid)

    # pull (consumer) -------------------------------------------------------------------------

    async def _pull_job(self, job: Job) -> None:
        tp = await self._get(job.process_id)
        if tp.state in TP_TERMINAL and not tp.path:
            # ended (e.g. cut at the volume limit) while this pull waited to retry: what
            # arrived before is a copy like any other, recorded and tracked, never left
            if streams.received_path(self.rt, tp.id).exists():
                await self._settle_quietly(tp.id)
            return
        if tp.state != TP.STARTED or not tp.data_address:
            return
        address = tp.data_address
        await self.rt.note(
            tp.id, Direction.NOTE, "pull", detail=f"pulling from {address.get('endpoint')}"
        )
        early = EarlyChecks(self.rt, self.client, tp, streams.received_path(self.rt, tp.id))
        checking = asyncio.create_task(early.run())
        try:
            size, digest, path = await streams.pull(self.rt, tp.id, address)
        except PeerError as exc:
            if await self._left_started(tp.id, "pull", exc):
                await self._settle_quietly(tp.id)
                return
            raise
        except DiskFull as exc:
            # space may come back: the outbox retries with backoff (its timeline entry says
            # why at once), until receive_retry_attempts are used up; then _data_failed
            # terminates the transfer with this reason, on both sides
            attempts = job.attempts + 1
            if attempts >= self.rt.settings.receive_retry_attempts:
                await self._settle_kept(tp.id)
                # the reason goes to the provider too: without the local path
                why = f"gave up after {attempts} attempts: {exc.reasons[0]}"
                raise DiskFull(why, retry=False) from exc
            raise
        finally:
            early.stop()
            await checking
        if not await stream_ended(self.client, tp, size, STREAM_END_SECONDS):
            # the provider's stream ended without its last metering record (it crashed, or
            # its store refused the write): asking for the empty rest shows what we hold,
            # and the provider meters the gap before it answers (docs/metering.md)
            await self.rt.note(tp.id, Direction.NOTE, "metering", detail=UNMETERED_TAIL)
            size, digest, path = await streams.pull(self.rt, tp.id, address)

        def received(store: Store) -> Transfer:
            done = self.control.record_copy(
                tp.id, {"bytes": size, "sha256": digest, "path": str(path)}
            )
            self.rt.log(
                tp.id, Direction.NOTE, "pull", detail=f"received {size} bytes, sha256 {digest}"
            )
            return done

        tp = await self.rt.db.write(received)
        if self._delivered is not None:
            await self._delivered(tp)
        refused = await settle(self.rt, self.client, tp, checked=early.checked)
        pid = tp.id
        await self.rt.db.write(lambda s: self._ended(pid, refused))

    async def _settle_kept(self, pid: str) -> None:
        """A pull given up: what the file holds was delivered (a prefix of the data), so it
        is recorded and its windows are receipted before the transfer ends."""
        path = streams.received_path(self.rt, pid)
        kept = path.stat().st_size if path.exists() else 0

        def kept_copy(store: Store) -> None:
            self.control.record_copy(pid, {"bytes": kept, "path": str(path)})
            self.rt.log(
                pid, Direction.NOTE, "pull", detail=f"{kept} bytes received before giving up"
            )

        await self.rt.db.write(kept_copy)
        await self._settle_quietly(pid)

    # push (provider) -------------------------------------------------------------------------

    async def _push_job(self, job: Job) -> None:
        tp = await self._get(job.process_id)
        if tp.state != TP.STARTED or not tp.data_address:
            return
        cut = False
        last = await self._pushed_whole(tp)
        if last is None:
            pushed = await self._push_stream(job, tp, tp.data_address)
            if pushed is None:
                return  # the stream stopped with the transfer (suspended, terminated)
            tp, last, cut = pushed
        if self._delivered is not None:
            await self._delivered(tp)  # the provider's delivery record
        refused = await wait_for_answers(
            self.rt, tp, last.seq if last else None, self.rt.settings.metering_receipt_seconds
        )
        pid = tp.id
        reason = await streams.cut_reason(self.rt, tp, tp.bytes) if cut else None
        await self.rt.db.write(lambda s: self._ended(pid, refused, cut=reason))

    async def _push_stream(
        self, job: Job, tp: Transfer, address: dict[str, Any]
    ) -> tuple[Transfer, MeteringEntry | None, bool] | None:
        """Push the source to the consumer, metered: (the transfer, the stream's last record,
        whether the volume cap cut it), or None when the stream stopped because the transfer
        left STARTED."""
        dataset = await self.rt.db.read(lambda s: s.get_dataset(tp.dataset_id))
        if dataset is None:
            raise PeerError(f"dataset {tp.dataset_id} no longer exists", retry=False)
        pipe = await Pipeline.open(self.rt, self.control, tp, dataset.source, digest=StreamHash())
        try:
            await streams.push(self.rt, address, pipe.flow())
            await pipe.close()  # (a stop while the source closes is a cut like any other)
        except asyncio.CancelledError:
            # stopping: the chain says where this stream ended before another replica (or
            # this one after a restart) pushes again; a run whose lease was lost writes
            # nothing more, as the run that holds the job is already appending
            if self.outbox.holds(job.id):
                await pipe.interrupted()
            raise
        except (PeerError, streams.Stopped) as exc:
            await pipe.broke_off()
            if isinstance(exc, streams.Stopped) or await self._left_started(tp.id, "push", exc):
                return None
            raise
        finally:
            await pipe.close()  # when the push broke off
        assert pipe.digest is not None
        size, digest, pid = pipe.sent, pipe.digest.hexdigest(), tp.id
        done: list[Transfer] = []

        def pushed(store: Store) -> None:
            done.append(self.control.record_copy(pid, {"bytes": size, "sha256": digest}))
            self.rt.log(pid, Direction.NOTE, "push", detail=f"pushed {size} bytes, sha256 {digest}")

        # the `complete` record and the size and hash that `_pushed_whole` reads commit
        # together: a stop never falls between them
        kind = MeteringKind.TERMINATE if pipe.cap.cut else MeteringKind.COMPLETE
        last = await pipe.meter.close(kind, then=pushed)
        if not done:
            await self.rt.db.write(pushed)
        return done[0], last, pipe.cap.cut

    async def _pushed_whole(self, tp: Transfer) -> MeteringEntry | None:
        """The `complete` record of this transfer's push if its stream already went out whole
        (the consumer answered it and the transfer holds its size and hash), else None.

        A job is run again after its stream went out when it is handed over at a stop (no
        grace: SIGTERM reaching the outbox while the job waits for the consumer's receipts,
        which on a loaded machine is often), taken over after a lease ran out, or retried: it
        then waits for the answers and completes, and never pushes the whole stream a second
        time (the consumer would receive and the chain meter every byte twice)."""
        if tp.sha256 is None:
            return None
        chain = await self.rt.db.read(lambda s: s.metering_chain(tp.agreement_id, tp.id))
        return chain[-1] if chain and chain[-1].kind == MeteringKind.COMPLETE else None

    # metering (consumer) -----------------------------------------------------------------------

    def settle_later(self, pid: str) -> None:
        """Consumer, push: check the provider's records against what arrived, soon. Inside
        a store unit (the one that records the arrival)."""
        self.outbox.enqueue(pid, Settle())

    async def _settle_job(self, job: Job) -> None:
        tp = await self._get(job.process_id)
        refused = await settle(self.rt, self.client, tp)
        if not refused:
            return

        def refuse(store: Store) -> None:
            now = self.control.transfer(tp.id)
            if now is not None and now.state not in TP_TERMINAL:
                self.control.terminate(tp.id, refused, "METERING")

        await self.rt.db.write(refuse)

    async def _settle_failed(self, job: Job, why: str) -> None:
        await self.rt.note(
            job.process_id, Direction.FAILED, "metering", detail=f"no receipts sent: {why}"
        )

    async def _settle_quietly(self, pid: str) -> None:
        """After a pull was cut for good (volume, termination, given up): record what the file
        holds, receipt what did arrive, and cut the copy back to the bytes receipted records
        cover. Bytes past them (the start of a window that did not arrive whole) no record can
        meter any more, so they are not kept: nothing is held that is not billed."""
        path = streams.received_path(self.rt, pid)
        if path.exists():
            size = path.stat().st_size
            tp = await self.rt.db.write(
                lambda s: self.control.record_copy(pid, {"bytes": size, "path": str(path)})
            )
        else:
            tp = await self._get(pid)
        try:
            await settle(self.rt, self.client, tp, timeout=2.0)
        except ConnectorError as exc:
            await self.rt.note(pid, Direction.FAILED, "metering", detail=f"no receipts sent: {exc}")
            await self._track_kept(pid)
            return
        held = path.stat().st_size if path.exists() else 0
        chain = await self.rt.db.read(lambda s: s.metering_chain(tp.agreement_id))
        metered = receipted_prefix(chain, tp.provider_pid)
        if held > metered:
            await asyncio.to_thread(streams.cut_back, path, metered)

            def cut_back(store: Store) -> None:
                self.control.record_copy(pid, {"bytes": metered, "sha256": None})
                self.rt.log(
                    pid,
                    Direction.NOTE,
                    "metering",
                    detail=f"kept the first {metered} of {held} bytes received: the rest lies"
                    " in a window that did not arrive whole, which no record can meter",
                )

            await self.rt.db.write(cut_back)
        await self._track_kept(pid)

    async def _track_kept(self, pid: str) -> None:
        """A copy kept from a pull cut short is held like any other: usage control tracks it
        (its deletion duty, if the agreement has one)."""
        tp = await self._get(pid)
        if self._delivered is not None and tp.path and Path(tp.path).exists():
            await self._delivered(tp)

    async def _left_started(self, pid: str, what: str, exc: Exception) -> bool:
        """After a data move broke off: True (and noted) if the transfer left STARTED, as a
        suspension or termination cuts the stream; the move then ends instead of retrying."""
        state = (await self._get(pid)).state
        if state == TP.STARTED:
            return False
        await self.rt.note(
            pid, Direction.NOTE, what, detail=f"{what} stopped, the transfer is {state}: {exc}"
        )
        return True

    async def _data_failed(self, job: Job, why: str) -> None:
        """The data move gave up: the transfer ends TERMINATED with the reason, and the
        TransferTerminationMessage carries it to the counterparty."""
        pid = job.process_id
        what = "pull" if job.kind == JobKind.DP_PULL else "push"

        def failed(store: Store) -> None:
            tp = self.control.transfer(pid)
            if tp is None:
                raise NotFound(f"no transfer process {pid}")
            self.rt.log(pid, Direction.FAILED, what, detail=f"{what} ended: {why}")
            if tp.state not in TP_TERMINAL:
                self.control.terminate(pid, [f"data transfer failed: {why}"])

        await self.rt.db.write(failed)
