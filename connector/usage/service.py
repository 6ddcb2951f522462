"""Usage control as one part of a running connector: its pieces, the hooks the transfer
process calls, and the scheduler that carries out deletions and raises overdue alerts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from connector.errors import BadRequest
from connector.model.enums import DutyState, Role
from connector.model.records import Agreement, Transfer
from connector.model.states import TP_TERMINAL
from connector.outbox import Outbox
from connector.peer.client import DspClient
from connector.policy.decision import Decision
from connector.runtime import Runtime
from connector.store.base import Store
from connector.usage.deletion import ConsumerDeletions
from connector.usage.outbound import PeerMail
from connector.usage.termination import TerminateTransfer, Termination
from connector.usage.tracking import ProviderDeletions
from connector.usage.uses import ConsumerUses, ProviderUses, terminated_reason

log = logging.getLogger(__name__)

TICK_SECONDS = 0.2


class Usage:
    def __init__(
        self,
        rt: Runtime,
        outbox: Outbox,
        client: DspClient,
        terminate_transfer: TerminateTransfer,
    ) -> None:
        self.rt = rt
        self.mail = PeerMail(rt, outbox, client)
        self.deletions = ConsumerDeletions(rt, self.mail)
        self.tracking = ProviderDeletions(rt)
        self.uses = ConsumerUses(rt, self.mail, self.deletions)
        self.reports = ProviderUses(rt)
        self.termination = Termination(
            rt, self.mail, self.deletions, self.tracking, terminate_transfer
        )
        self._task: asyncio.Task[None] | None = None

    # hooks of the transfer process -----------------------------------------------------------

    async def guard_transfer(self, agreement: Agreement, caller: str) -> None:
        """Provider, before deciding a transfer: a terminated agreement refuses it. What an
        overdue deletion refuses, the policy decides (policies/connector/deletion.rego)."""
        if agreement.terminated_at:
            raise BadRequest("transfer refused: " + terminated_reason(agreement))

    def transfer_decided(self, tp: Transfer, decision: Decision) -> None:
        """(inside the unit that accepts the transfer)"""
        self.tracking.expect(tp, decision)

    async def delivered(self, tp: Transfer) -> None:
        """A copy changed hands: the consumer schedules its deletion, the provider records
        what it delivered and when (the deadline and the receipt are checked against it)."""
        if tp.role == Role.PROVIDER:
            await self.tracking.on_delivered(tp)
        else:
            await self.deletions.on_delivered(tp)

    # the scheduler -----------------------------------------------------------------------------

    async def catch_up(self) -> int:
        """At start-up, before anything is served: deadlines that passed while stopped."""
        done = await self.deletions.run_due(at_start=True)
        if done:
            log.info("carried out %d deletion(s) whose deadline passed while stopped", done)
        adopted = await self.deletions.adopt_orphans()
        if adopted:
            log.info("scheduled the deletion of %d copies that arrived before a crash", adopted)
        await self.deletions.resend_receipts()
        await self.rt.db.write(self.tracking.check_overdue)
        return done

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                await self.deletions.run_due()
                # asked on a reader first: the check takes the write lock only when it has
                # something to look at
                if await self.rt.db.read(self._overdue_due):
                    await self.rt.db.write(self._overdue_check)
            except Exception:
                log.exception("usage-control scheduler failed; trying again")

    def _overdue_due(self, store: Store) -> bool:
        """Whether the overdue check has something to mark (a copy not yet delivered waits)."""
        grace = self.rt.settings.deletion_grace_seconds
        for duty in store.due_deletions(Role.PROVIDER, (DutyState.PENDING,), time.time() - grace):
            tp = store.get_transfer(duty.id)
            if tp is None or tp.bytes or tp.state in TP_TERMINAL:
                return True
        return False

    def _overdue_check(self, store: Store) -> None:
        """(a unit) Replicas: one raises the overdue alerts (the one holding this lease)."""
        now = time.time()
        if not store.shared or store.try_lease(
            "deletion-overdue-check", self.rt.replica, now + 10 * TICK_SECONDS, now
        ):
            self.tracking.check_overdue(store)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
