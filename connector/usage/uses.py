"""Uses of received data: each one decided by the policy at phase `use`, written as a signed,
hash-chained use record, and reported to the provider when the agreement asks for it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connector.credentials.verifier import CredentialVerifier
from connector.credentials.wallet import Wallet
from connector.errors import BadRequest, ConnectorError, NotFound
from connector.identity import signatures
from connector.identity.did import did_from_url
from connector.identity.signatures import GENESIS, seal
from connector.model.enums import Direction, DutyState, Role
from connector.model.records import Agreement, Transfer
from connector.model.states import TP
from connector.model.usage import (
    USE_TYPE,
    UseEntry,
    UseSummary,
    earliest_delete,
    reporting_duty,
    utcnow,
)
from connector.policy.decision import DecisionInput, Party, Phase
from connector.policy.inputs import dataset_facts
from connector.runtime import Runtime
from connector.store.base import Store
from connector.usage.deletion import ConsumerDeletions, agreement_path, peer_address
from connector.usage.outbound import PeerMail
from connector.usage.signed import RecordRefused, check


class UseRefused(ConnectorError):
    """The policy, or the agreement's state, does not allow this use."""

    status = 403


class DataGone(ConnectorError):
    """The data was deleted (a deletion duty was carried out)."""

    status = 410


@dataclass(frozen=True)
class Granted:
    entry: UseEntry
    transfer: Transfer
    path: Path
    deadline: str | None


OwnClaims = Callable[[], Awaitable[dict[str, Any]]]


def wallet_claims(
    verifier: CredentialVerifier, wallet: Wallet, issuer_url: str | None, cache_seconds: float
) -> OwnClaims:
    """The consumer's own verified credentials, as the use decision's `consumer.credentials`:
    the wallet's credentials, checked like a peer's (the authority we asked for them counts
    as trusted, beside `trusted_issuers`), and kept `cache_seconds` as a peer's claims are
    (a renewal, which changes the wallet, is seen at once)."""
    also = {did_from_url(issuer_url)} if issuer_url else set()
    kept: dict[tuple[str, ...], tuple[float, dict[str, Any]]] = {}

    async def claims() -> dict[str, Any]:
        tokens = wallet.matching()
        key = tuple(tokens)
        hit = kept.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        found = await verifier.own_claims(tokens, also)
        kept.clear()
        if cache_seconds > 0:
            kept[key] = (time.monotonic() + cache_seconds, found)
        return found

    return claims


def terminated_reason(agreement: Agreement) -> str:
    why = agreement.termination_reason or "no reason given"
    return f"the provider terminated agreement {agreement.id} at {agreement.terminated_at}: {why}"


class ConsumerUses:
    def __init__(self, rt: Runtime, mail: PeerMail, deletions: ConsumerDeletions) -> None:
        self.rt = rt
        self.mail = mail
        self.deletions = deletions
        self._lock = asyncio.Lock()  # one use decision at a time: counts stay exact
        # our own verified credentials (membership, roles) for the use decision; set by the
        # app once the wallet and the verifier exist
        self.own_claims: OwnClaims | None = None

    async def _agreement(self, agreement_id: str) -> Agreement:
        agreement = await self.rt.db.read(lambda s: s.get_agreement(agreement_id))
        if agreement is None or agreement.consumer_id != self.rt.did:
            raise NotFound(f"no agreement {agreement_id} with this connector as consumer")
        return agreement

    @staticmethod
    def _copy(store: Store, agreement: Agreement) -> Transfer:
        """The newest completed copy still held; DataGone or NotFound otherwise."""
        transfers = sorted(
            store.agreement_transfers(agreement.id, Role.CONSUMER),
            key=lambda t: t.updated_at,
            reverse=True,
        )
        for tp in transfers:
            duty = store.get_deletion(tp.id)
            if duty is not None and duty.state == DutyState.FULFILLED:
                continue
            if tp.state == TP.COMPLETED and tp.path and Path(tp.path).exists():
                return tp
        deleted = [
            d
            for d in store.list_deletions(role=Role.CONSUMER, agreement_id=agreement.id)
            if d.state == DutyState.FULFILLED
        ]
        if deleted:
            last = deleted[0]
            raise DataGone(
                f"the data of agreement {agreement.id} was deleted at {last.fulfilled_at}"
                f" ({(last.receipt or {}).get('reason', 'deletion duty')})"
            )
        raise NotFound(f"no completed transfer under agreement {agreement.id} holds data")

    @staticmethod
    def usage(store: Store, agreement: Agreement, uses: UseSummary) -> dict[str, Any]:
        delivered = [t for t in store.agreement_transfers(agreement.id, Role.CONSUMER) if t.bytes]
        return {
            "transfers": len(delivered),
            "bytes": sum(t.bytes for t in delivered),
            "records": 0,
            "uses": uses.uses,
            "agreed_at": agreement.body.get("timestamp"),
            "first_use": uses.first_at,
        }

    async def use(self, agreement_id: str, purpose: str) -> Granted:
        if not purpose.strip():
            raise BadRequest("purpose is required: declare what the data is used for")
        async with self._lock:
            agreement = await self._agreement(agreement_id)
            if agreement.terminated_at:
                raise UseRefused("use refused: " + terminated_reason(agreement))
            await self.deletions.run_due()  # a deadline that has come is carried out first
            tp, uses, usage = await self.rt.db.read(lambda s: self._held(s, agreement))
            claims = await self.own_claims() if self.own_claims is not None else {}
            decision = await self.rt.decisions.decide(
                DecisionInput(
                    phase=Phase.USE,
                    provider=Party(id=agreement.provider_id),
                    consumer=Party(id=self.rt.did, credentials=claims),
                    dataset=dataset_facts(None, agreement.dataset_id, agreement.provider_id),
                    policy=agreement.body,
                    request={"process_id": tp.id, "purpose": purpose, "bytes": 0, "records": 0},
                    usage=usage,
                )
            )
            if not decision.allow:
                reasons = decision.reasons
                await self.rt.note(
                    tp.id, Direction.NOTE, "use", detail="use refused: " + "; ".join(reasons)
                )
                raise UseRefused("use refused by policy: " + "; ".join(reasons), reasons=reasons)
            first_of_copy = not uses.of_transfer
            deadline = None
            if first_of_copy and earliest_delete(decision.obligations) is not None:
                deadline = await self.deletions.first_use_deadline(agreement, tp)
            report = reporting_duty(decision.obligations)

            def used(store: Store) -> tuple[UseEntry, str | None]:
                entry = store.append_use(
                    agreement.id, lambda seq, prev: self._record(agreement, tp, purpose, seq, prev)
                )
                if deadline is not None:
                    self.deletions.on_first_use(agreement, tp, deadline)
                self.rt.log(
                    tp.id,
                    Direction.NOTE,
                    "use",
                    detail=f"use {entry.seq + 1} for purpose {purpose!r}",
                )
                if report:
                    self.mail.send(
                        agreement.id,
                        peer_address(self.rt, agreement),
                        agreement.provider_id,
                        agreement_path(agreement.id, "uses"),
                        {"records": [entry.line()]},
                        "UseReport",
                        after={"kind": "uses", "agreement": agreement.id, "seqs": [entry.seq]},
                    )
                duty = store.get_deletion(tp.id)
                pending = duty is not None and duty.state == DutyState.PENDING
                return entry, duty.deadline if duty is not None and pending else None

            entry, due = await self.rt.db.write(used)
            return Granted(entry=entry, transfer=tp, path=Path(tp.path or ""), deadline=due)

    def _held(
        self, store: Store, agreement: Agreement
    ) -> tuple[Transfer, UseSummary, dict[str, Any]]:
        """The copy a use reads, its use summary, and the agreement's usage (one read)."""
        tp = self._copy(store, agreement)
        uses = store.use_summary(agreement.id, tp.provider_pid or "")
        return tp, uses, self.usage(store, agreement, uses)

    def _record(
        self, agreement: Agreement, tp: Transfer, purpose: str, seq: int, prev: str | None
    ) -> UseEntry:
        record = {
            "type": USE_TYPE,
            "agreement": agreement.id,
            "seq": seq,
            "provider": agreement.provider_id,
            "consumer": self.rt.did,
            "dataset": agreement.dataset_id,
            "transfer": tp.provider_pid,
            "purpose": purpose,
            "bytes": tp.bytes,
            "sha256": tp.sha256,
            "at": utcnow(),
            "prev": prev or GENESIS,
        }
        digest, signature = seal(record, self.rt.did, self.rt.keys)
        return UseEntry(
            agreement_id=agreement.id, seq=seq, hash=digest, record=record, signature=signature
        )


class ProviderUses:
    """The provider's copy of a consumer's use records, each checked before it is kept."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def on_report(self, caller: str, agreement: Agreement, body: Any) -> int:
        lines = body.get("records") if isinstance(body, dict) else None
        if not isinstance(lines, list) or not lines:
            raise RecordRefused("expected {'records': [{record, hash, signature}, ...]}")
        doc = await self.rt.resolver.resolve(caller)
        expected = {
            "agreement": agreement.id,
            "provider": self.rt.did,
            "consumer": caller,
            "dataset": agreement.dataset_id,
        }
        checked: list[tuple[dict[str, Any], str]] = []
        for line in lines:
            if not isinstance(line, dict):
                raise RecordRefused("each use record line must be an object")
            record = check(
                USE_TYPE, line.get("record"), line.get("signature"), caller, doc, expected
            )
            if not isinstance(record["seq"], int) or record["seq"] < 0:
                raise RecordRefused(f"seq must be a non-negative integer, got {record['seq']!r}")
            checked.append((record, line["signature"]))
        # linked to the records kept and kept in one unit: two reports at once cannot both
        # add the same seq
        return await self.rt.db.write(lambda s: self._keep(s, agreement, checked))

    def _keep(
        self, store: Store, agreement: Agreement, checked: list[tuple[dict[str, Any], str]]
    ) -> int:
        """(a unit) The checked records that are new, linked to those kept before."""
        reported = [record["seq"] for record, _ in checked]
        near = [*reported, *(n - 1 for n in reported)]
        known = {e.seq: e for e in store.list_uses(agreement.id, near)}
        accepted: list[UseEntry] = []
        for record, signature in checked:
            seq, digest = record["seq"], signatures.digest(record)
            if seq in known:
                if known[seq].hash != digest:
                    raise RecordRefused(f"use record {seq} differs from the one reported before")
                continue
            previous = known.get(seq - 1)
            want = GENESIS if seq == 0 else (previous.hash if previous else None)
            if want is not None and record["prev"] != want:
                raise RecordRefused(f"use record {seq} does not link to use record {seq - 1}")
            entry = UseEntry(
                agreement_id=agreement.id,
                seq=seq,
                hash=digest,
                record=record,
                signature=signature,
                reported_at=utcnow(),
            )
            known[seq] = entry
            accepted.append(entry)
        store.put_uses(accepted)
        for entry in accepted:
            r = entry.record
            self.rt.log(
                agreement.id,
                Direction.RECEIVED,
                "UseReport",
                detail=f"use {r['seq'] + 1} at {r['at']} for purpose {r['purpose']!r}",
            )
        return len(accepted)


def _has_seq(line: Any) -> bool:
    record = line.get("record") if isinstance(line, dict) else None
    return isinstance(record, dict) and isinstance(record.get("seq"), int)
