"""The idle watchdog: no transfer or negotiation stays open without a reason and a next step.

A process that has not ended (COMPLETED/TERMINATED transfer, FINALIZED/TERMINATED
negotiation), that nothing has touched for `transfer_idle_seconds` or
`negotiation_idle_seconds` (no state change, no timeline entry, no data moving: a stream
bumps its transfer while it flows, see streams.StateWatch) and that has no job in the outbox
is ended TERMINATED with the reason "no activity for N s". The termination message goes
through the outbox as for an operator's termination, so the peer ends it too once it can be
reached. One replica sweeps at a time (a store lease); each change is made under the
process's row lock and only if the record is still the one found idle, so two sweeps never
end one process twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from connector.dsp.negotiation import NegotiationService
from connector.dsp.transfer import TransferService
from connector.model.enums import Direction
from connector.model.states import CN_TERMINAL, TP_TERMINAL
from connector.runtime import Runtime

log = logging.getLogger(__name__)

LEASE = "idle-process-watchdog"
BATCH = 500  # idle candidates looked at per kind and sweep, oldest first
IDLE_CODE = "IDLE"


class Process(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def updated_at(self) -> str: ...


@dataclass(frozen=True)
class Watched:
    """One kind of process the watchdog looks after, and how to end one."""

    kind: str
    closed: list[str]
    idle_seconds: float
    untouched: Callable[[list[str], str, int], Sequence[Process]]
    lock: Callable[[str], Process | None]
    terminate: Callable[[str, list[str], str | None], Any]


def _iso(seconds: float) -> str:
    stamp = datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def sweep_period(idle_seconds: float) -> float:
    """How often to look: a fraction of the idle time, at least every minute."""
    return min(60.0, max(0.2, idle_seconds / 4))


class Watchdog:
    def __init__(
        self, rt: Runtime, transfers: TransferService, negotiations: NegotiationService
    ) -> None:
        self.rt = rt
        s, store = rt.settings, rt.store
        self.watched = [
            Watched(
                "transfer",
                [str(x) for x in TP_TERMINAL],
                float(s.transfer_idle_seconds),
                store.untouched_transfers,
                store.lock_transfer,
                transfers.terminate,
            ),
            Watched(
                "negotiation",
                [str(x) for x in CN_TERMINAL],
                float(s.negotiation_idle_seconds),
                store.untouched_negotiations,
                store.lock_negotiation,
                negotiations.terminate,
            ),
        ]
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        period = min(sweep_period(w.idle_seconds) for w in self.watched)
        while True:
            await asyncio.sleep(period)
            try:
                now = time.time()
                store = self.rt.store
                until = now + 3 * period
                if not store.shared or store.try_lease(LEASE, self.rt.replica, until, now):
                    self.sweep(now)
            except Exception:
                log.exception("idle-process watchdog failed; trying again")

    def sweep(self, now: float | None = None) -> list[str]:
        """End the processes idle longer than their kind's idle time; returns their ids."""
        now = time.time() if now is None else now
        ended: list[str] = []
        for watched in self.watched:
            cutoff = _iso(now - watched.idle_seconds)
            for found in watched.untouched(watched.closed, cutoff, BATCH):
                if self._end_if_idle(watched, found, cutoff):
                    ended.append(found.id)
        return ended

    def _end_if_idle(self, watched: Watched, found: Process, cutoff: str) -> bool:
        store = self.rt.store
        if store.pending_jobs(found.id):
            return False  # a message or data move is queued or running: it has a next step
        events = store.timeline(found.id)
        last = max([found.updated_at, *(e.at for e in events[-1:])])
        if last >= cutoff:
            return False
        reason = f"no activity for {watched.idle_seconds:g} s"
        with store.transaction():
            current = watched.lock(found.id)
            # still the record found idle (another replica or a message did not move it)?
            if (
                current is None
                or current.state in watched.closed
                or current.updated_at != found.updated_at
                or store.pending_jobs(found.id)
            ):
                return False
            self.rt.log(
                found.id,
                Direction.NOTE,
                "TERMINATED",
                state=current.state,
                detail=f"{reason} (last at {last}, state {current.state}): terminating",
            )
            watched.terminate(found.id, [reason], IDLE_CODE)
        log.warning("%s %s ended: %s (last activity %s)", watched.kind, found.id, reason, last)
        return True
