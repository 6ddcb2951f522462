"""The consumer's deletion duties: a deadline fixed when a copy arrives and again at its first
use, carried out at that deadline (or at once when the provider terminates the agreement),
each deletion with a signed receipt sent to the provider."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from connector.identity.signatures import seal
from connector.model.enums import Direction, DutyState, Role
from connector.model.jobs import UsageSend
from connector.model.records import Agreement, Transfer
from connector.model.usage import (
    RECEIPT_TYPE,
    SCHEDULE_TYPE,
    DeletionDuty,
    earliest_delete,
    parse_time,
    utcnow,
)
from connector.policy.decision import DecisionInput, Party, Phase
from connector.policy.inputs import dataset_facts
from connector.policy.odrl import term
from connector.runtime import Runtime
from connector.store.base import Store
from connector.usage.outbound import PeerMail

log = logging.getLogger(__name__)

TERMINATED = "agreement terminated"
LEASE_SECONDS = 60.0


def delete_duties(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The ODRL `delete` duties of an agreement, from its permissions and its obligations."""
    found: list[dict[str, Any]] = []
    rules = body.get("permission") or []
    for rule in rules if isinstance(rules, list) else [rules]:
        duties = (rule.get("duty") or []) if isinstance(rule, dict) else []
        for d in duties if isinstance(duties, list) else [duties]:
            if isinstance(d, dict) and term(d.get("action")) == "delete":
                found.append(d)
    obligations = body.get("obligation") or []
    for d in obligations if isinstance(obligations, list) else [obligations]:
        if isinstance(d, dict) and term(d.get("action")) == "delete":
            found.append(d)
    return found


def agreement_path(agreement_id: str, tail: str) -> str:
    """A usage-control endpoint of the peer, relative to its DSP base URL."""
    return f"/usage/agreements/{quote(agreement_id, safe=':')}/{tail}"


def peer_address(rt: Runtime, agreement: Agreement) -> str:
    """The other party's DSP base URL, as the negotiation learned it (inside a unit)."""
    neg = rt.store.get_negotiation(agreement.negotiation_id)
    return neg.counterparty_address if neg else ""


def _file_digest(path: Path) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


async def deletion_deadline(
    rt: Runtime, agreement: Agreement, tp: Transfer, counted_from: str, at: float
) -> tuple[str | None, bool]:
    """The agreement's deletion deadline for a copy, counted from `at` (delivery or first
    use), as the policy library computes it: (deadline, allowed). Only the agreement's delete
    duties are asked, so it does not depend on whether a use would be allowed right now; `at`
    is rounded up to the whole second, as the library rounds deadlines down to the second and
    a deadline must never fall before the agreed delay has passed. Both parties ask the same
    question: the consumer to fix its deadline, the provider to bound what it accepts."""
    now = datetime.fromtimestamp(math.ceil(at), UTC)
    decision = await rt.decisions.decide(
        DecisionInput(
            phase=Phase.STREAM,
            now=now.isoformat().replace("+00:00", "Z"),
            provider=Party(id=agreement.provider_id),
            consumer=Party(id=agreement.consumer_id),
            dataset=dataset_facts(None, agreement.dataset_id, agreement.provider_id),
            policy={"permission": [{"action": "use", "duty": delete_duties(agreement.body)}]},
            request={"process_id": tp.id, "purpose": tp.purpose, "counted_from": counted_from},
        )
    )
    deadline = earliest_delete(decision.obligations)
    if deadline is None and not decision.allow:
        log.warning("no deletion deadline for %s: %s", tp.id, "; ".join(decision.reasons))
    elif deadline is None:
        log.warning("the %s policy engine gives no deletion deadline", decision.engine)
    return deadline, decision.allow


def _unscheduled_copies(store: Store, offset: int) -> list[Transfer | None]:
    """One page of transfers from `offset`: the received copies with no deletion scheduled,
    None in place of the others (the page keeps its length, so the caller can go on)."""
    return [
        tp if tp.role == Role.CONSUMER and tp.path and store.get_deletion(tp.id) is None else None
        for tp in store.list_transfers(1000, offset)
    ]


class ConsumerDeletions:
    def __init__(self, rt: Runtime, mail: PeerMail) -> None:
        self.rt = rt
        self.mail = mail
        self._lock = asyncio.Lock()

    # fixing deadlines ----------------------------------------------------------------------

    async def _deadline(self, agreement: Agreement, tp: Transfer, counted_from: str) -> str | None:
        """The copy's deadline from the library. Only the agreement's delete duties are asked,
        so it does not depend on whether a use would be allowed right now; `now` is the next
        whole second, as the library rounds deadlines down to the second and a deadline must
        never fall before the agreed delay has passed. None when the engine decides no
        obligations (permit-all)."""
        deadline, allowed = await deletion_deadline(
            self.rt, agreement, tp, counted_from, time.time()
        )
        if deadline is None and allowed:
            return None
        if deadline is None:  # e.g. a fixed deadline that has passed: delete now
            return utcnow()
        return deadline

    async def on_delivered(self, tp: Transfer) -> bool:
        """A copy arrived: if the agreement carries a delete duty, schedule its deletion
        (True when this scheduled one)."""
        agreement, existing = await self.rt.db.read(
            lambda s: (s.get_agreement(tp.agreement_id), s.get_deletion(tp.id))
        )
        if agreement is None or agreement.consumer_id != self.rt.did:
            return False
        if not delete_duties(agreement.body) or not tp.path:
            return False
        if existing is not None and existing.state == DutyState.PENDING:
            return False
        deadline = await self._deadline(agreement, tp, "delivery")
        if deadline is None:
            return False
        why = "the agreement's delete duty, counted from delivery"
        duty = DeletionDuty(
            id=tp.id,
            role=Role.CONSUMER,
            agreement_id=agreement.id,
            dataset_id=agreement.dataset_id,
            counterparty_id=agreement.provider_id,
            peer_transfer_id=tp.provider_pid,
            deadline=deadline,
            due_at=parse_time(deadline),
            fixed_by="delivery",
            path=tp.path,
            notes=[f"delete by {deadline}: {why}"],
        )

        def schedule(store: Store) -> bool:
            again = store.get_deletion(tp.id)  # scheduled meanwhile (the copy arrived twice)
            if again is not None and again.state == DutyState.PENDING:
                return False
            store.put_deletion(duty)
            self.rt.log(tp.id, Direction.NOTE, "deletion", detail=f"delete by {deadline} ({why})")
            self._announce(agreement, duty)
            return True

        return await self.rt.db.write(schedule)

    async def first_use_deadline(self, agreement: Agreement, tp: Transfer) -> str | None:
        """The deadline the first use of this copy fixes (None when it fixes nothing)."""
        duty = await self.rt.db.read(lambda s: s.get_deletion(tp.id))
        if duty is None or duty.state != DutyState.PENDING or duty.fixed_by != "delivery":
            return None
        return await self._deadline(agreement, tp, "first use")

    def on_first_use(self, agreement: Agreement, tp: Transfer, deadline: str) -> None:
        """The copy's first use fixes its deadline for good (inside the use's unit)."""
        duty = self.rt.store.get_deletion(tp.id)
        if duty is None or duty.state != DutyState.PENDING or duty.fixed_by != "delivery":
            return
        duty = self.rt.store.update_deletion(
            duty.id,
            deadline=deadline,
            due_at=parse_time(deadline),
            fixed_by="first use",
            notes=[*duty.notes, f"delete by {deadline}: counted from the first use"],
        )
        self.rt.log(tp.id, Direction.NOTE, "deletion", detail=f"delete by {deadline} (first use)")
        self._announce(agreement, duty)

    async def adopt_orphans(self) -> int:
        """At start-up: copies that arrived just before a crash, before their deletion was
        scheduled, are scheduled now (counted from now)."""
        adopted, offset = 0, 0
        while page := await self.rt.db.read(functools.partial(_unscheduled_copies, offset=offset)):
            offset += len(page)
            for tp in page:
                if tp is not None and Path(tp.path or "").exists():
                    adopted += await self.on_delivered(tp)
        return adopted

    async def resend_receipts(self) -> int:
        """At start-up: receipts the provider has not acknowledged and no job is sending."""
        return await self.rt.db.write(self._resend_receipts)

    def _resend_receipts(self, store: Store) -> int:
        sent = 0
        for duty in store.list_deletions(role=Role.CONSUMER, state=DutyState.FULFILLED, limit=1000):
            if duty.receipt is None or any("receipt accepted" in n for n in duty.notes):
                continue
            if any(
                j.kind == UsageSend.KIND and j.read(UsageSend).after.get("duty") == duty.id
                for j in store.pending_jobs(duty.agreement_id)
            ):
                continue
            agreement = store.get_agreement(duty.agreement_id)
            if agreement is not None:
                self._send_receipt(agreement, duty, duty.receipt, duty.signature or "")
                sent += 1
        return sent

    def on_terminated(self, agreement: Agreement) -> int:
        """The provider ended the agreement: every copy held under it is due now (inside the
        unit that records the termination)."""
        if not delete_duties(agreement.body):
            return 0
        now = time.time()
        due = 0
        for tp in self.rt.store.agreement_transfers(agreement.id, Role.CONSUMER):
            duty = self.rt.store.get_deletion(tp.id)
            if duty is not None and duty.state != DutyState.PENDING:
                continue
            if duty is None and not (tp.path and Path(tp.path).exists()):
                continue
            fields: dict[str, Any] = {
                "deadline": utcnow(),
                "due_at": now,
                "fixed_by": TERMINATED,
            }
            if duty is None:
                self.rt.store.put_deletion(
                    DeletionDuty(
                        id=tp.id,
                        role=Role.CONSUMER,
                        agreement_id=agreement.id,
                        dataset_id=agreement.dataset_id,
                        counterparty_id=agreement.provider_id,
                        peer_transfer_id=tp.provider_pid,
                        path=tp.path,
                        **fields,
                    )
                )
            else:
                self.rt.store.update_deletion(duty.id, **fields)
            due += 1
        return due

    def _announce(self, agreement: Agreement, duty: DeletionDuty) -> None:
        """Tell the provider the deadline it can hold us to (signed)."""
        record = {
            "type": SCHEDULE_TYPE,
            "agreement": agreement.id,
            "dataset": agreement.dataset_id,
            "provider": agreement.provider_id,
            "consumer": self.rt.did,
            "transfer": duty.peer_transfer_id,
            "deadline": duty.deadline,
            "fixed_by": duty.fixed_by,
            "at": utcnow(),
        }
        _, signature = seal(record, self.rt.did, self.rt.keys)
        self.mail.send(
            agreement.id,
            peer_address(self.rt, agreement),
            agreement.provider_id,
            agreement_path(agreement.id, "deletion-schedule"),
            {"record": record, "signature": signature},
            "DeletionSchedule",
        )

    # carrying out ----------------------------------------------------------------------------

    async def run_due(self, *, at_start: bool = False) -> int:
        """Carry out every duty whose deadline has come; returns how many. `at_start`: the
        deadlines passed while the connector was stopped (the receipts say so)."""
        done = 0
        now = time.time()
        due = await self.rt.db.read(
            lambda s: s.due_deletions(Role.CONSUMER, (DutyState.PENDING,), now)
        )
        for duty in due:
            reason = None
            if at_start and duty.fixed_by != TERMINATED:
                reason = (
                    f"the deletion deadline {duty.deadline} passed while the connector was"
                    " stopped; deleted at start-up, before any use was served"
                )
            if await self.carry_out(duty.id, reason):
                done += 1
        return done

    async def carry_out(self, duty_id: str, reason: str | None = None) -> bool:
        """Delete the copy, then record and send the signed receipt.

        The receipt (with the copy's hash) is written before the file is removed, so a crash
        in between finishes with the same receipt at the next start."""
        async with self._lock:
            found = await self.rt.db.write(lambda s: self._claim(s, duty_id))
            if found is None:
                return False
            duty, agreement = found
            path = Path(duty.path) if duty.path else None
            receipt, signature = duty.receipt, duty.signature
            if receipt is None or signature is None:
                receipt = await self._receipt(agreement, duty, path, reason)
                _, signature = seal(receipt, self.rt.did, self.rt.keys)
                sealed = (receipt, signature)
                await self.rt.db.write(
                    lambda s: s.update_deletion(duty.id, receipt=sealed[0], signature=sealed[1])
                )
            if path is not None:
                path.unlink(missing_ok=True)
            what = ", ".join(
                f"{d['file']} ({d['bytes']} bytes, sha256 {d['sha256']})"
                for d in receipt["deleted"]
            )

            def fulfilled(store: Store, receipt: dict[str, Any], signature: str) -> None:
                store.update_deletion(
                    duty.id, state=DutyState.FULFILLED, fulfilled_at=receipt["deleted_at"]
                )
                self.rt.log(
                    duty.id,
                    Direction.NOTE,
                    "deletion",
                    detail=f"deleted {what or 'nothing (no copy was left)'}: {receipt['reason']}",
                )
                self._send_receipt(agreement, duty, receipt, signature)

            await self.rt.db.write(lambda s: fulfilled(s, receipt, signature))
            log.info(
                "deleted the copy of %s under %s: %s", duty.id, agreement.id, receipt["reason"]
            )
            return True

    def _claim(self, store: Store, duty_id: str) -> tuple[DeletionDuty, Agreement] | None:
        """The duty and its agreement if it is still to be carried out here (a unit).

        Replicas sharing a store: one of them carries a duty out (the lease outlives a
        deletion; if its holder dies, another finishes with the same receipt)."""
        now = time.time()
        lease = f"deletion:{duty_id}"
        if store.shared and not store.try_lease(lease, self.rt.replica, now + LEASE_SECONDS, now):
            return None
        duty = store.get_deletion(duty_id)
        if duty is None or duty.state != DutyState.PENDING:
            return None
        agreement = store.get_agreement(duty.agreement_id)
        if agreement is None:
            return None
        return duty, agreement

    def _send_receipt(
        self, agreement: Agreement, duty: DeletionDuty, receipt: dict[str, Any], signature: str
    ) -> None:
        self.mail.send(
            agreement.id,
            peer_address(self.rt, agreement),
            agreement.provider_id,
            agreement_path(agreement.id, "deletion-receipts"),
            {"record": receipt, "signature": signature},
            "DeletionReceipt",
            after={"kind": "receipt", "duty": duty.id},
        )

    async def _receipt(
        self, agreement: Agreement, duty: DeletionDuty, path: Path | None, reason: str | None
    ) -> dict[str, Any]:
        deleted: list[dict[str, Any]] = []
        if path is not None and path.exists():
            size, digest = await asyncio.to_thread(_file_digest, path)
            try:
                name = path.relative_to(self.rt.settings.data_dir).as_posix()
            except ValueError:
                name = path.name
            deleted.append({"file": name, "bytes": size, "sha256": digest})
        if reason is None and duty.fixed_by == TERMINATED:
            why = agreement.termination_reason or "no reason given"
            reason = f"the provider terminated the agreement: {why}"
        return {
            "type": RECEIPT_TYPE,
            "agreement": agreement.id,
            "dataset": agreement.dataset_id,
            "provider": agreement.provider_id,
            "consumer": self.rt.did,
            "transfer": duty.peer_transfer_id,
            "deleted": deleted,
            "deadline": duty.deadline,
            "reason": reason or f"the deletion deadline {duty.deadline} was reached",
            "deleted_at": utcnow(),
        }
