"""The provider's side of deletion duties: each delivered copy is pending until the consumer's
verified receipt fulfils it, and overdue (an alert) once its deadline and the grace period have
passed without one."""

from __future__ import annotations

import logging
import time
from typing import Any

from connector.dsp.states import TP_TERMINAL
from connector.policy.decision import Decision
from connector.runtime import Runtime
from connector.store.records import Agreement, Transfer
from connector.usage.records import (
    RECEIPT_TYPE,
    SCHEDULE_TYPE,
    DeletionDuty,
    earliest_delete,
    format_time,
    parse_time,
    utcnow,
)
from connector.usage.signed import RecordRefused, check

log = logging.getLogger(__name__)


class ProviderDeletions:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def expect(self, tp: Transfer, decision: Decision) -> None:
        """At the transfer decision: a delete obligation makes the copy a pending deletion,
        due at the decision's deadline until the consumer says when it fixed its own."""
        deadline = earliest_delete(decision.obligations)
        if deadline is None:
            return
        self.rt.store.put_deletion(
            DeletionDuty(
                id=tp.id,
                role="provider",
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

    def overdue_for(self, consumer: str) -> list[DeletionDuty]:
        return self.rt.store.list_deletions(
            role="provider", state="overdue", counterparty_id=consumer
        )

    def check_overdue(self) -> list[DeletionDuty]:
        """Mark every pending deletion whose deadline and grace passed overdue, with an alert."""
        grace = self.rt.settings.deletion_grace_seconds
        marked: list[DeletionDuty] = []
        for duty in self.rt.store.due_deletions("provider", ("pending",), time.time() - grace):
            tp = self.rt.store.get_transfer(duty.id)
            if tp is not None and not tp.bytes and tp.state not in TP_TERMINAL:
                continue  # nothing delivered yet
            if tp is None or (not tp.bytes and tp.state in TP_TERMINAL):
                self.rt.store.update_deletion(
                    duty.id, due_at=None, notes=[*duty.notes, "nothing was delivered"]
                )
                continue
            why = (
                f"deletion overdue: the copy of {duty.dataset_id} delivered to"
                f" {duty.counterparty_id} (transfer {duty.id}, agreement {duty.agreement_id})"
                f" was due for deletion by {duty.deadline}; no receipt has arrived"
            )
            with self.rt.store.transaction():
                # re-read under the lock: a receipt another replica just committed wins
                fresh = self.rt.store.lock_deletion(duty.id)
                if fresh is None or fresh.state != "pending":
                    continue
                duty = self.rt.store.update_deletion(
                    duty.id, state="overdue", notes=[*fresh.notes, f"{utcnow()}: {why}"]
                )
                self.rt.log(duty.id, "note", "deletion", detail=why)
            log.warning(why)
            marked.append(duty)
        return marked

    def on_terminated(self, agreement: Agreement) -> None:
        """The agreement ended: the consumer must delete its copies now."""
        now = time.time()
        for duty in self.rt.store.list_deletions(
            role="provider", agreement_id=agreement.id, state="pending", limit=1000
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

    def _duty_for(self, agreement: Agreement, transfer: Any) -> DeletionDuty:
        duty = self.rt.store.get_deletion(str(transfer))
        if duty is None or duty.role != "provider" or duty.agreement_id != agreement.id:
            raise RecordRefused(
                f"no deletion is tracked for transfer {transfer} of agreement {agreement.id}"
            )
        return duty

    async def on_schedule(self, caller: str, agreement: Agreement, body: Any) -> DeletionDuty:
        record = await self._checked(SCHEDULE_TYPE, caller, agreement, body)
        duty = self._duty_for(agreement, record["transfer"])
        if duty.state == "fulfilled":
            return duty
        try:
            due = parse_time(str(record["deadline"]))
        except ValueError as exc:
            raise RecordRefused(f"deadline is not a time stamp: {record['deadline']!r}") from exc
        if duty.fixed_by == "agreement terminated" and duty.due_at is not None:
            due = min(due, duty.due_at)
        grace = self.rt.settings.deletion_grace_seconds
        state = "pending" if due + grace > time.time() else duty.state
        note = (
            f"delete by {record['deadline']}: the consumer's signed schedule ({record['fixed_by']})"
        )
        with self.rt.store.transaction():
            fresh = self.rt.store.lock_deletion(duty.id)
            if fresh is None or fresh.state == "fulfilled":
                return fresh or duty
            duty = self.rt.store.update_deletion(
                duty.id,
                deadline=format_time(due),
                due_at=due,
                fixed_by=f"consumer: {record['fixed_by']}",
                state=state if state == "pending" else fresh.state,
                notes=[*fresh.notes, note],
            )
            self.rt.log(duty.id, "received", "DeletionSchedule", detail=note, body=body)
        return duty

    async def on_receipt(self, caller: str, agreement: Agreement, body: Any) -> DeletionDuty:
        receipt = await self._checked(RECEIPT_TYPE, caller, agreement, body)
        duty = self._duty_for(agreement, receipt["transfer"])
        if duty.state == "fulfilled" and duty.receipt == receipt:
            return duty  # delivered again (a retry)
        deleted = receipt.get("deleted")
        if not isinstance(deleted, list) or not all(isinstance(d, dict) for d in deleted):
            raise RecordRefused("deleted must be a list of {file, bytes, sha256}")
        tp = self.rt.store.get_transfer(duty.id)
        hashes = {d.get("sha256") for d in deleted}
        if deleted and tp is not None and tp.sha256 and tp.sha256 not in hashes:
            raise RecordRefused(
                f"the receipt names sha256 {', '.join(str(h) for h in hashes)}; the data"
                f" delivered in transfer {duty.id} has sha256 {tp.sha256}"
            )
        late = ""
        try:
            if duty.due_at is not None and parse_time(str(receipt["deleted_at"])) > (
                duty.due_at + self.rt.settings.deletion_grace_seconds
            ):
                late = " (late)"
        except ValueError as exc:
            raise RecordRefused(
                f"deleted_at is not a time stamp: {receipt['deleted_at']!r}"
            ) from exc
        what = "; ".join(f"{d.get('file')} sha256 {d.get('sha256')}" for d in deleted) or "no copy"
        note = f"fulfilled{late}: deleted {what} at {receipt['deleted_at']}: {receipt['reason']}"
        with self.rt.store.transaction():
            fresh = self.rt.store.lock_deletion(duty.id) or duty
            duty = self.rt.store.update_deletion(
                duty.id,
                state="fulfilled",
                receipt=receipt,
                signature=body["signature"],
                fulfilled_at=receipt["deleted_at"],
                notes=[*fresh.notes, note],
            )
            self.rt.log(duty.id, "received", "DeletionReceipt", detail=note, body=body)
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
