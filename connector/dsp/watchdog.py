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
from connector.dsp.process import NEGOTIATION, TRANSFER, Record
from connector.dsp.transfer import TransferService
from connector.model.enums import Direction
from connector.model.states import CN_TERMINAL, TP_TERMINAL
from connector.runtime import Runtime
from connector.store.base import Store

log = logging.getLogger(__name__)

LEASE = "idle-process-watchdog"
BATCH = 500  # idle candidates looked at per kind and sweep, oldest first
IDLE_CODE = "IDLE"


class Process(Record, Protocol):
    @property
    def updated_at(self) -> str: ...


@dataclass(frozen=True)
class Watched:
    """One kind of process the watchdog looks after, and how to end one."""

    kind: str
    closed: list[str]
    idle_seconds: float
    untouched: Callable[[Store, list[str], str, int], Sequence[Process]]
    lock: Callable[[Store, str], Process | None]
    terminate: Callable[[str, list[str], str | None], Any]  # in a unit


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
        s = rt.settings
        self.watched = [
            Watched(
                "transfer",
                [str(x) for x in TP_TERMINAL],
                float(s.transfer_idle_seconds),
                lambda store, *args: store.untouched_transfers(*args),
                TRANSFER.lock,
                transfers.terminate,
            ),
            Watched(
                "negotiation",
                [str(x) for x in CN_TERMINAL],
                float(s.negotiation_idle_seconds),
                lambda store, *args: store.untouched_negotiations(*args),
                NEGOTIATION.lock,
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
                if await self._leased(now, now + 3 * period):
                    await self.sweep(now)
            except Exception:
                log.exception("idle-process watchdog failed; trying again")

    async def _leased(self, now: float, until: float) -> bool:
        """Whether this replica sweeps now (one at a time on a shared store)."""
        return await self.rt.db.write(
            lambda s: not s.shared or s.try_lease(LEASE, self.rt.replica, until, now)
        )

    async def sweep(self, now: float | None = None) -> list[str]:
        """End the processes idle longer than their kind's idle time; returns their ids."""
        now = time.time() if now is None else now
        ended: list[str] = []
        for watched in self.watched:
            cutoff = _iso(now - watched.idle_seconds)
            for found in await self._candidates(watched, cutoff):
                if await self._end_if_idle(watched, found, cutoff):
                    ended.append(found.id)
        return ended

    async def _candidates(self, watched: Watched, cutoff: str) -> Sequence[Process]:
        return await self.rt.db.read(lambda s: watched.untouched(s, watched.closed, cutoff, BATCH))

    async def _end_if_idle(self, watched: Watched, found: Process, cutoff: str) -> bool:
        def last_activity(store: Store) -> str | None:
            if store.pending_jobs(found.id):
                return None  # a message or data move is queued or running: a next step
            events = store.timeline(found.id)
            return max([found.updated_at, *(e.at for e in events[-1:])])

        last = await self.rt.db.read(last_activity)
        if last is None or last >= cutoff:
            return False
        reason = f"no activity for {watched.idle_seconds:g} s"

        def end(store: Store) -> bool:
            current = watched.lock(store, found.id)
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
            return True

        if not await self.rt.db.write(end):
            return False
        log.warning("%s %s ended: %s (last activity %s)", watched.kind, found.id, reason, last)
        return True
