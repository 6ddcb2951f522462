"""The provider's meter: cuts a transfer's bytes into windows, one signed record each."""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

from connector.errors import Unavailable
from connector.identity.signatures import GENESIS, seal
from connector.model.metering import MeteringEntry, MeteringKind
from connector.model.records import Transfer, utcnow
from connector.model.states import TP
from connector.runtime import Runtime


def end_kind(state: str, stopped: bool = True) -> MeteringKind:
    """How a stream that broke off ends its metering: by the transfer's state, or cut."""
    if stopped and state == TP.SUSPENDED:
        return MeteringKind.SUSPEND
    if stopped and state == TP.TERMINATED:
        return MeteringKind.TERMINATE
    return MeteringKind.INTERRUPTED


log = logging.getLogger(__name__)


class MeteringUnavailable(Unavailable):
    """A metering record could not be written (the store is locked, full or gone): the
    stream stops at once, as no byte may go out that no durable record can be made for."""


def frontier(rt: Runtime, transfer_id: str) -> int:
    """The end of the bytes this transfer's records cover: the furthest `offset + length` of
    any of its records (0 before the first)."""
    return max(
        (
            int(e.record.get("offset", 0)) + int(e.record.get("length", 0))
            for e in rt.store.metering_chain(transfer_id=transfer_id)
        ),
        default=0,
    )


class Meter:
    """Fed every chunk that reached the socket; appends a record to the agreement's chain at
    the start, at each full window (bytes or seconds) and at the end of the stream.

    Window boundaries fall exactly every `metering_window_bytes` bytes from the stream's
    first byte, so a window's hash can be checked against the consumer's copy of that range.
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
        self._append(MeteringKind.START)

    def _open_window(self) -> None:
        self._hash = hashlib.sha256()
        self._length = 0
        self._records = 0
        self._from = utcnow()
        self._opened = time.monotonic()

    def feed(self, chunk: bytes) -> None:
        start = 0
        while start < len(chunk):
            end = min(len(chunk), start + self._window_bytes - self._length)
            whole = start == 0 and end == len(chunk)
            self._hash.update(chunk if whole else memoryview(chunk)[start:end])
            self._records += chunk.count(b"\n", start, end)
            self._length += end - start
            self.delivered += end - start
            start = end
            if self._length >= self._window_bytes:
                self._append(MeteringKind.WINDOW)
        if self._length and time.monotonic() - self._opened >= self._window_seconds:
            self._append(MeteringKind.WINDOW)

    def recovered(self, chunk: bytes) -> None:
        """Bytes the consumer proved it holds (its Range request) that no record covers yet:
        they were sent before a crash cut the stream that carried them. Metered from the
        source, not sent again; `cut` then closes their window."""
        self.feed(chunk)
        self.delivered -= len(chunk)

    def cut(self) -> None:
        """Close the open window now, if it holds bytes (the recovered range ends here)."""
        if self._length:
            self._append(MeteringKind.WINDOW)

    def close(self, kind: MeteringKind) -> MeteringEntry | None:
        """The last record of this stream (its final window, possibly empty)."""
        if self.closed or self.broken:
            return None
        self.closed = True
        return self._append(kind)

    def interrupt(self) -> None:
        """Close as `interrupted` while stopping: a record that cannot be written is logged,
        never raised, so the stop goes on (the next run meters from its own start)."""
        try:
            self.close(MeteringKind.INTERRUPTED)
        except Exception:
            log.exception("metering: cannot close transfer %s as interrupted", self._tp.id)

    def _append(self, kind: MeteringKind) -> MeteringEntry:
        rt, tp = self._rt, self._tp
        fields: dict[str, Any] = {
            "agreement": tp.agreement_id,
            "kind": kind.value,
            "transfer": tp.id,
            "provider": rt.did,
            "consumer": tp.counterparty_id,
            "offset": self.offset,
            "length": self._length,
            "records": self._records,
            "sha256": self._hash.hexdigest(),
            "from": self._from,
            "to": utcnow(),
        }

        def make(seq: int, prev: str | None) -> MeteringEntry:
            record = {**fields, "seq": seq, "prev": prev or GENESIS}
            digest, signature = seal(record, rt.did, rt.keys)
            return MeteringEntry(
                agreement_id=tp.agreement_id,
                seq=seq,
                transfer_id=tp.id,
                kind=kind,
                hash=digest,
                record=record,
                signature=signature,
            )

        try:
            entry = rt.store.append_metering(tp.agreement_id, make)
        except Exception as exc:
            self.broken = True
            raise MeteringUnavailable(
                f"a metering record of transfer {tp.id} could not be written: {exc}"
            ) from exc
        self.offset += self._length
        self._open_window()
        return entry
