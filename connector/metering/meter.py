"""The provider's meter: cuts a transfer's bytes into windows, one signed record each."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

from connector.errors import Unavailable
from connector.identity.signatures import GENESIS, seal
from connector.model.metering import MeteringEntry, MeteringKind
from connector.model.records import Transfer, utcnow
from connector.model.states import TP
from connector.runtime import Runtime
from connector.store.base import Store


def end_kind(state: str, stopped: bool = True) -> MeteringKind:
    """How a stream that broke off ends its metering: by the transfer's state, or cut."""
    if stopped and state == TP.SUSPENDED:
        return MeteringKind.SUSPEND
    if stopped and state == TP.TERMINATED:
        return MeteringKind.TERMINATE
    return MeteringKind.INTERRUPTED


log = logging.getLogger(__name__)


class StreamHash:
    """A SHA-256 of a stream, with `lines`, also counting the newlines it was fed.

    Hashed where the bytes are, on the event loop: handing each chunk to a hashing thread
    measured slower (bench/streaming.py: 62% of raw against 80% inline), the hand-over and
    the wait for it costing more than the hashing it moved."""

    def __init__(self, *, lines: bool = False) -> None:
        self._hash = hashlib.sha256()
        self._count_lines = lines
        self._lines = 0

    def update(self, data: bytes, /) -> None:
        self._hash.update(data)
        if self._count_lines:
            self._lines += data.count(b"\n")

    @property
    def lines(self) -> int:
        return self._lines

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class MeteringUnavailable(Unavailable):
    """A metering record could not be written (the store is locked, full or gone): the
    stream stops at once, as no byte may go out that no durable record can be made for."""


async def frontier(rt: Runtime, transfer_id: str) -> int:
    """The end of the bytes this transfer's records cover: the furthest `offset + length` of
    any of its records (0 before the first)."""
    chain = await rt.db.read(lambda s: s.metering_chain(transfer_id=transfer_id))
    return max(
        (int(e.record.get("offset", 0)) + int(e.record.get("length", 0)) for e in chain),
        default=0,
    )


class Meter:
    """Fed every chunk that reached the socket; appends a record to the agreement's chain at
    the start, at each full window (bytes or seconds) and at the end of the stream.

    Window boundaries fall exactly every `metering_window_bytes` bytes from the stream's
    first byte, so a window's hash can be checked against the consumer's copy of that range.
    Hashing runs where the bytes are; each record is one unit on the store's writer thread
    (awaited: no byte of the next window goes out before the record of the last is durable).
    """

    def __init__(self, rt: Runtime, tp: Transfer, offset: int = 0) -> None:
        self._rt = rt
        self._tp = tp
        self._window_bytes = rt.settings.metering_window_bytes
        self._window_seconds = rt.settings.metering_window_seconds
        self.offset = offset
        self.delivered = 0
        self.closed = False
        self.broken = False
        self._open_window()

    @classmethod
    async def open(cls, rt: Runtime, tp: Transfer, offset: int = 0) -> Meter:
        """A meter whose stream's `start` record is durable."""
        meter = cls(rt, tp, offset)
        await meter._append(MeteringKind.START)
        return meter

    def _open_window(self) -> None:
        self._hash = StreamHash(lines=True)
        self._length = 0
        self._from = utcnow()
        self._opened = time.monotonic()

    async def feed(self, chunk: bytes) -> None:
        size = len(chunk)
        if self._length + size < self._window_bytes:  # the usual chunk: inside one window
            self._hash.update(chunk)
            self._length += size
            self.delivered += size
        else:
            start = 0
            while start < size:
                end = min(size, start + self._window_bytes - self._length)
                self._hash.update(chunk[start:end] if start or end < size else chunk)
                self._length += end - start
                self.delivered += end - start
                start = end
                if self._length >= self._window_bytes:
                    await self._append(MeteringKind.WINDOW)
        if self._length and time.monotonic() - self._opened >= self._window_seconds:
            await self._append(MeteringKind.WINDOW)

    async def recovered(self, chunk: bytes) -> None:
        """Bytes the consumer proved it holds (its Range request) that no record covers yet:
        they were sent before a crash cut the stream that carried them. Metered from the
        source, not sent again; `cut` then closes their window."""
        await self.feed(chunk)
        self.delivered -= len(chunk)

    async def cut(self) -> None:
        """Close the open window now, if it holds bytes (the recovered range ends here)."""
        if self._length:
            await self._append(MeteringKind.WINDOW)

    async def close(
        self,
        kind: MeteringKind | Callable[[Store], MeteringKind],
        then: Callable[[Store], object] | None = None,
    ) -> MeteringEntry | None:
        """The last record of this stream (its final window, possibly empty). `kind` may be
        decided in the record's own unit (from the transfer's state as it is then); `then`
        runs in that unit too (what must never be stored without the record, or it
        without them). None, and `then` not run, if the meter was closed or broken."""
        if self.closed or self.broken:
            return None
        self.closed = True
        return await self._append(kind, then)

    async def interrupt(self) -> None:
        """Close as `interrupted` while stopping: a record that cannot be written is logged,
        never raised, so the stop goes on (the next run meters from its own start). The
        record is written also when the task is cancelled again meanwhile."""
        try:
            await asyncio.shield(self.close(MeteringKind.INTERRUPTED))
        except Exception:
            log.exception("metering: cannot close transfer %s as interrupted", self._tp.id)

    async def _append(
        self,
        kind: MeteringKind | Callable[[Store], MeteringKind],
        then: Callable[[Store], object] | None = None,
    ) -> MeteringEntry:
        rt, tp = self._rt, self._tp
        fields: dict[str, Any] = {
            "agreement": tp.agreement_id,
            "transfer": tp.id,
            "provider": rt.did,
            "consumer": tp.counterparty_id,
            "offset": self.offset,
            "length": self._length,
            "records": self._hash.lines,
            "sha256": self._hash.hexdigest(),
            "from": self._from,
            "to": utcnow(),
        }

        def append(store: Store) -> MeteringEntry:
            chosen = kind if isinstance(kind, MeteringKind) else kind(store)

            def make(seq: int, prev: str | None) -> MeteringEntry:
                record = {**fields, "kind": chosen.value, "seq": seq, "prev": prev or GENESIS}
                digest, signature = seal(record, rt.did, rt.keys)
                return MeteringEntry(
                    agreement_id=tp.agreement_id,
                    seq=seq,
                    transfer_id=tp.id,
                    kind=chosen,
                    hash=digest,
                    record=record,
                    signature=signature,
                )

            entry = store.append_metering(tp.agreement_id, make)
            if then is not None:
                then(store)
            return entry

        # a stop cancelling the stream while the record is being written: the record is
        # still written (the unit is queued), and the meter must know it, so that the
        # `interrupted` record that follows continues from it
        writing = asyncio.ensure_future(rt.db.write(append))
        cancelled = False
        while True:
            try:
                entry = await asyncio.shield(writing)
                break
            except asyncio.CancelledError:
                if writing.cancelled():
                    raise
                cancelled = True
            except Exception as exc:
                self.broken = True
                raise MeteringUnavailable(
                    f"a metering record of transfer {tp.id} could not be written: {exc}"
                ) from exc
        self.offset += self._length
        self._open_window()
        if cancelled:
            raise asyncio.CancelledError
        return entry


def state_kind(transfer_id: str, stopped: bool = True) -> Callable[[Store], MeteringKind]:
    """`end_kind` decided in the record's unit, from the transfer's state as it is then."""

    def decide(store: Store) -> MeteringKind:
        tp = store.get_transfer(transfer_id)
        return end_kind(tp.state if tp is not None else "gone", stopped)

    return decide
