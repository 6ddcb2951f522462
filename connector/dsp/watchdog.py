"""The idle-transfer watchdog: no transfer stays open without a reason and a next step.

A transfer that is not COMPLETED or TERMINATED, that nothing has touched for
`transfer_idle_seconds` (no state change, no timeline entry, no data moving: a stream bumps
the record while it flows, see streams.StateWatch) and that has no job in the outbox is
ended TERMINATED with the reason "no activity for N s". The TransferTerminationMessage goes
through the outbox as for an operator's termination, so the peer ends it too once it can be
reached. One replica sweeps at a time (a store lease); the change itself is made under the
transfer's row lock and only if the record is still the one found idle, so two sweeps never
end one transfer twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime

from connector.dsp.states import TP, TP_TERMINAL
from connector.dsp.transfer import TransferService
from connector.runtime import Runtime
from connector.store.records import Transfer

log = logging.getLogger(__name__)

LEASE = "transfer-idle-watchdog"
BATCH = 500  # idle candidates looked at per sweep, oldest first
IDLE_CODE = "IDLE"


def _iso(seconds: float) -> str:
    stamp = datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def sweep_period(idle_seconds: float) -> float:
    """How often to look: a fraction of the idle time, at least every minute."""
    return min(60.0, max(0.2, idle_seconds / 4))


class Watchdog:
    def __init__(self, rt: Runtime, transfers: TransferService) -> None:
        self.rt = rt
        self.transfers = transfers
        self._task: asyncio.Task[None] | None = None

    @property
    def idle_seconds(self) -> float:
        return float(self.rt.settings.transfer_idle_seconds)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        period = sweep_period(self.idle_seconds)
        while True:
            await asyncio.sleep(period)
            try:
                now = time.time()
                store = self.rt.store
                until = now + 3 * period
                if not store.shared or store.try_lease(LEASE, self.rt.replica, until, now):
                    self.sweep(now)
            except Exception:
                log.exception("idle-transfer watchdog failed; trying again")

    def sweep(self, now: float | None = None) -> list[str]:
        """End the transfers idle longer than transfer_idle_seconds; returns their ids."""
        now = time.time() if now is None else now
        cutoff = _iso(now - self.idle_seconds)
        closed = [s.value for s in TP_TERMINAL]
        ended: list[str] = []
        for tp in self.rt.store.untouched_transfers(closed, cutoff, BATCH):
            if self._end_if_idle(tp, cutoff):
                ended.append(tp.id)
        return ended

    def _end_if_idle(self, found: Transfer, cutoff: str) -> bool:
        store = self.rt.store
        if store.pending_jobs(found.id):
            return False  # a message or data move is queued or running: it has a next step
        events = store.timeline(found.id)
        last = max([found.updated_at, *(e.at for e in events[-1:])])
        if last >= cutoff:
            return False
        reason = f"no activity for {self.idle_seconds:g} s"
        with store.transaction():
            tp = store.lock_transfer(found.id)
            # still the record found idle (another replica or a message did not move it)?
            if tp is None or tp.state in TP_TERMINAL or tp.updated_at != found.updated_at:
                return False
            if store.pending_jobs(tp.id):
                return False
            self.rt.log(
                tp.id,
                "note",
                TP.TERMINATED.value,
                state=tp.state,
                detail=f"{reason} (last at {last}, state {tp.state}): terminating",
            )
            self.transfers.terminate(tp.id, [reason], code=IDLE_CODE)
        log.warning("transfer %s ended: %s (last activity %s)", tp.id, reason, last)
        return True
