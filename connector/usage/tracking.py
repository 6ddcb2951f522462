"""The provider's side of deletion duties: each delivered copy is pending until the consumer's
verified receipt fulfils it, and overdue (an alert) once its deadline and the grace period have
passed without one.

The provider computes every deadline itself, from the agreement and its own record of the
delivery; a consumer's signed schedule can only bring a deadline forward (or, for a first use
before the deadline, fix it where the agreement says), and a receipt must name the delivered
copy and be dated after the delivery. A consumer's word alone never postpones a deletion."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from connector.model.enums import Direction, DutyState, Role
from connector.model.records import Agreement, Transfer
from connector.model.states import TP_TERMINAL
from connector.model.usage import (
    RECEIPT_TYPE,
    SCHEDULE_TYPE,
    DeletionDuty,
    earliest_delete,
    format_time,
    parse_time,
    utcnow,
)
from connector.policy.decision import Decision
from connector.runtime import Runtime
from connector.store.base import Store
from connector.usage.deletion import deletion_deadline
from connector.usage.signed import Delivery, RecordRefused, check, check_deleted_copy

log = logging.getLogger(__name__)

TERMINATED = "agreement terminated"
FIXED_BY = ("delivery", "first use", TERMINATED)


class ProviderDeletions:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def expect(self, tp: Transfer, decision: Decision) -> None:
        """At the transfer decision: a delete obligation makes the copy a pending deletion,
        due at the decision's deadline until the consumer says when it fixed its own (inside
        the unit that accepts the transfer)."""
        deadline = earliest_delete(decision.obligations)
        if deadline is None:
            return
        self.rt.store.put_deletion(
            DeletionDuty(
                id=tp.id,
                role=Role.PROVIDER,
                agreement_id=tp.agreement_id,
                dataset_id=tp.dataset_id,
                counterparty_id=tp.counterparty_id,
                peer_transfer_id=tp.consumer_pid,
                deadline=deadline,
                due_at=parse_time(deadline),
                fixed_by="transfer decision",
                notes=[f"delete by {deadline}: the transfer decision's delete obligation"],
            )
        )

    async def on_delivered(self, tp: Transfer) -> None:
        """The provider delivered a copy: record what and when, and compute the deadline from
        the agreement counted from this delivery (the provider's own, not the consumer's)."""
        duty, agreement = await self.rt.db.read(
            lambda s: (s.get_deletion(tp.id), s.get_agreement(tp.agreement_id))
        )
        if duty is None or duty.role != Role.PROVIDER or agreement is None:
            return
        now = time.time()
        deadline, _ = await deletion_deadline(self.rt, agreement, tp, "delivery", now)
        await self.rt.db.write(lambda s: self._delivered(s, duty, tp, deadline, now))

    def _delivered(
        self, store: Store, duty: DeletionDuty, tp: Transfer, deadline: str | None, now: float
    ) -> None:
        """(a unit) The delivery record, and the deadline it fixes."""
        fresh = store.lock_deletion(duty.id) or duty
        fields: dict[str, Any] = {
            "delivered_at": fresh.delivered_at or format_time(now),
            "delivered_bytes": tp.bytes,
            "delivered_sha256": tp.sha256,
        }
        due = parse_time(deadline) if deadline else None
        if fresh.state == DutyState.PENDING and due is not None:
            # a copy delivered again (a pull repeated) never postpones the first deadline
            again = fresh.delivered_at is not None
            if again or fresh.fixed_by == TERMINATED or fresh.fixed_by.startswith("consumer:"):
                due = min(due, fresh.due_at if fresh.due_at is not None else due)
            note = f"delete by {format_time(due)}: the agreement, counted from the delivery"
            fields.update(
                deadline=format_time(due),
                due_at=due,
                fixed_by=fresh.fixed_by if due == fresh.due_at else "delivery",
                notes=[*fresh.notes, note],
            )
        store.update_deletion(duty.id, **fields)

    @staticmethod
    def _delivery(duty: DeletionDuty, tp: Transfer | None) -> Delivery:
        """What was delivered, by the provider's own records: the duty's delivery record, else
        the transfer `tp` (a delivery no earlier than the transfer decision that opened the
        duty)."""
        if duty.delivered_at is not None:
            return Delivery(
                duty.delivered_bytes or 0, duty.delivered_sha256, parse_time(duty.delivered_at)
            )
        return Delivery(
            tp.bytes if tp else 0, tp.sha256 if tp else None, parse_time(duty.created_at)
        )

    async def _latest(
        self, agreement: Agreement, duty: DeletionDuty, record: dict[str, Any], now: float
    ) -> tuple[float, str]:
        """The latest deadline the agreement allows for what the schedule says fixed it, and
        why; RecordRefused for a first use the schedule cannot have had."""
        fixed_by = record["fixed_by"]
        if fixed_by not in FIXED_BY:
            raise RecordRefused(f"fixed_by is {fixed_by!r}, expected one of {', '.join(FIXED_BY)}")
        if duty.fixed_by == TERMINATED and duty.due_at is not None:
            return duty.due_at, "the agreement was terminated"
        if fixed_by == TERMINATED:
            return now, "the consumer says the agreement was terminated"
        tp = await self.rt.db.read(lambda s: s.get_transfer(duty.id))
        if tp is None:
            raise RecordRefused(f"no transfer {duty.id}")
        delivered = self._delivery(duty, tp)
        # a copy cannot have arrived later than now, nor before the provider delivered it
        delivered_at = parse_time(duty.delivered_at) if duty.delivered_at else now
        at = delivered_at
        if fixed_by == "first use":
            try:
                used = parse_time(str(record["at"]))
            except ValueError as exc:
                raise RecordRefused(f"at is not a time stamp: {record['at']!r}") from exc
            if duty.due_at is not None and now > duty.due_at + self._grace:
                raise RecordRefused(
                    f"a first use reported after the deletion deadline {duty.deadline} cannot"
                    " move the deadline"
                )
            at = max(min(used, now), delivered.at or delivered_at)
        deadline, allowed = await deletion_deadline(self.rt, agreement, tp, fixed_by, at)
        if deadline is None:
            return (math.inf if allowed else now), "the agreement"
        return parse_time(deadline), f"the agreement, counted from {fixed_by} at {format_time(at)}"

    @property
    def _grace(self) -> float:
        return self.rt.settings.deletion_grace_seconds

    async def overdue_for(self, consumer: str) -> list[DeletionDuty]:
        return await self.rt.db.read(
            lambda s: s.list_deletions(
                role=Role.PROVIDER, state=DutyState.OVERDUE, counterparty_id=consumer
            )
        )

    def check_overdue(self, store: Store) -> list[DeletionDuty]:
        """Mark every pending deletion whose deadline and grace passed overdue, with an alert
        (a unit: each duty is re-read under its lock, so a receipt another replica has just
        committed wins)."""
        grace = self.rt.settings.deletion_grace_seconds
        marked: list[DeletionDuty] = []
        for duty in store.due_deletions(Role.PROVIDER, (DutyState.PENDING,), time.time() - grace):
            tp = store.get_transfer(duty.id)
            if tp is not None and not tp.bytes and tp.state not in TP_TERMINAL:
                continue  # nothing delivered yet
            fresh = store.lock_deletion(duty.id)
            if fresh is None or fresh.state != DutyState.PENDING:
                continue
            if tp is None or (not tp.bytes and tp.state in TP_TERMINAL):
                store.update_deletion(
                    duty.id, due_at=None, notes=[*fresh.notes, "nothing was delivered"]
                )
                continue
            why = (
                f"deletion overdue: the copy of {duty.dataset_id} delivered to"
                f" {duty.counterparty_id} (transfer {duty.id}, agreement {duty.agreement_id})"
                f" was due for deletion by {duty.deadline}; no receipt has arrived"
            )
            duty = store.update_deletion(
                duty.id, state=DutyState.OVERDUE, notes=[*fresh.notes, f"{utcnow()}: {why}"]
            )
            self.rt.log(duty.id, Direction.NOTE, "deletion", detail=why)
            log.warning(why)
            marked.append(duty)
        return marked

    def on_terminated(self, agreement: Agreement) -> None:
        """The agreement ended: the consumer must delete its copies now (inside the unit that
        records the termination)."""
        now = time.time()
        for duty in self.rt.store.list_deletions(
            role=Role.PROVIDER, agreement_id=agreement.id, state=DutyState.PENDING, limit=1000
        ):
            if duty.due_at is not None and duty.due_at > now:
                self.rt.store.update_deletion(
                    duty.id,
                    deadline=format_time(now),
                    due_at=now,
                    fixed_by="agreement terminated",
                    notes=[*duty.notes, "due now: the agreement was terminated"],
                )

    # from the consumer ------------------------------------------------------------------------

    async def _duty_for(
        self, agreement: Agreement, transfer: Any
    ) -> tuple[DeletionDuty, Transfer | None]:
        """The duty tracked for the consumer's `transfer` (our transfer id), with our transfer."""
        duty, tp = await self.rt.db.read(
            lambda s: (s.get_deletion(str(transfer)), s.get_transfer(str(transfer)))
        )
        if duty is None or duty.role != Role.PROVIDER or duty.agreement_id != agreement.id:
            raise RecordRefused(
                f"no deletion is tracked for transfer {transfer} of agreement {agreement.id}"
            )
        return duty, tp

    async def on_schedule(self, caller: str, agreement: Agreement, body: Any) -> DeletionDuty:
        record = await self._checked(SCHEDULE_TYPE, caller, agreement, body)
        duty, _ = await self._duty_for(agreement, record["transfer"])
        if duty.state == DutyState.FULFILLED:
            return duty
        try:
            due = parse_time(str(record["deadline"]))
        except ValueError as exc:
            raise RecordRefused(f"deadline is not a time stamp: {record['deadline']!r}") from exc
        now = time.time()
        latest, why = await self._latest(agreement, duty, record, now)
        # a later schedule can only be earlier; only a first use may fix the deadline anew,
        # once (the agreement counts from it), and then it is fixed for good
        again = duty.fixed_by == "consumer: first use" or (
            duty.fixed_by.startswith("consumer:") and record["fixed_by"] != "first use"
        )
        if again and duty.due_at is not None and duty.due_at < latest:
            latest, why = duty.due_at, "the consumer's earlier schedule"
        note = (
            f"delete by {record['deadline']}: the consumer's signed schedule ({record['fixed_by']})"
        )
        if due > latest:
            note = (
                f"the consumer's signed schedule ({record['fixed_by']}) says {record['deadline']};"
                f" {why} allows no later than {format_time(latest)}: kept"
            )
            due = latest
        grace = self._grace
        state = DutyState.PENDING if due + grace > now else duty.state

        def scheduled(store: Store) -> DeletionDuty:
            fresh = store.lock_deletion(duty.id)
            if fresh is None or fresh.state == DutyState.FULFILLED:
                return fresh or duty
            changed = store.update_deletion(
                duty.id,
                deadline=format_time(due) if math.isfinite(due) else fresh.deadline,
                due_at=due if math.isfinite(due) else fresh.due_at,
                fixed_by=f"consumer: {record['fixed_by']}",
                state=state if state == DutyState.PENDING else fresh.state,
                notes=[*fresh.notes, note],
            )
            self.rt.log(duty.id, Direction.RECEIVED, "DeletionSchedule", detail=note, body=body)
            return changed

        return await self.rt.db.write(scheduled)

    async def on_receipt(self, caller: str, agreement: Agreement, body: Any) -> DeletionDuty:
        receipt = await self._checked(RECEIPT_TYPE, caller, agreement, body)
        duty, tp = await self._duty_for(agreement, receipt["transfer"])
        if duty.state == DutyState.FULFILLED and duty.receipt == receipt:
            return duty  # delivered again (a retry)
        check_deleted_copy(receipt, self._delivery(duty, tp), time.time())
        deleted = receipt["deleted"]
        late = ""
        if duty.due_at is not None and parse_time(str(receipt["deleted_at"])) > (
            duty.due_at + self._grace
        ):
            late = " (late)"
        what = "; ".join(f"{d.get('file')} sha256 {d.get('sha256')}" for d in deleted) or "no copy"
        note = f"fulfilled{late}: deleted {what} at {receipt['deleted_at']}: {receipt['reason']}"

        def fulfilled(store: Store) -> DeletionDuty:
            fresh = store.lock_deletion(duty.id) or duty
            changed = store.update_deletion(
                duty.id,
                state=DutyState.FULFILLED,
                receipt=receipt,
                signature=body["signature"],
                fulfilled_at=receipt["deleted_at"],
                notes=[*fresh.notes, note],
            )
            self.rt.log(duty.id, Direction.RECEIVED, "DeletionReceipt", detail=note, body=body)
            return changed

        duty = await self.rt.db.write(fulfilled)
        log.info("deletion receipt for %s verified: %s", duty.id, note)
        return duty

    async def _checked(
        self, kind: str, caller: str, agreement: Agreement, body: Any
    ) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise RecordRefused("expected {'record': {...}, 'signature': JWS}")
        doc = await self.rt.resolver.resolve(caller)
        expected = {
            "agreement": agreement.id,
            "provider": self.rt.did,
            "consumer": caller,
            "dataset": agreement.dataset_id,
        }
        return check(kind, body.get("record"), body.get("signature"), caller, doc, expected)
