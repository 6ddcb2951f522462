"""What the enforcement points tell the policy about datasets and usage so far."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from connector.model.enums import DutyState, Role
from connector.model.metering import MeteringEntry
from connector.model.records import Dataset, Transfer
from connector.model.states import TP_TERMINAL
from connector.store.base import Store


def dataset_facts(dataset: Dataset | None, dataset_id: str, owner: str) -> dict[str, Any]:
    return {
        "id": dataset_id,
        "classification": dataset.classification if dataset else "general",
        "owner": owner,
    }


def committed_bytes(tp: Transfer) -> int:
    """The bytes a provider transfer counts against the agreement's volume.

    An ended transfer counts what it delivered. One under way (requested, started or
    suspended) counts its reservation, `limit_bytes`, which is also the most its stream may
    send (connector/dataplane/streams.VolumeCap), or what it has sent if that is more: so
    transfers running at once share the volume left instead of each getting all of it."""
    if tp.state in TP_TERMINAL:
        return tp.bytes
    return max(tp.bytes, tp.limit_bytes or 0)


NAMED_DISPUTES = 20  # disputed windows named in the policy input; the count covers all
NAMED_OVERDUE = 20  # overdue deletions named in the policy input


def overdue_deletions(store: Store, consumer: str) -> list[dict[str, Any]]:
    """The consumer's overdue deletions (provider side), for the policy to decide what they
    block (policies/connector/deletion.rego, `overdue_scope`). A duty of a terminated
    agreement is `settled`: still on record, and fulfilled by a late receipt, but the
    provider ended that agreement and with it the duty's hold on the consumer."""
    duties = store.list_deletions(
        role=Role.PROVIDER, state=DutyState.OVERDUE, counterparty_id=consumer
    )
    out = []
    for d in duties[:NAMED_OVERDUE]:
        agreement = store.get_agreement(d.agreement_id)
        out.append(
            {
                "transfer": d.id,
                "agreement": d.agreement_id,
                "dataset": d.dataset_id,
                "deadline": d.deadline,
                "settled": agreement is None or agreement.terminated_at is not None,
            }
        )
    return out


def _instant(text: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text))
    except ValueError:
        return None


def disputed_windows(
    chain: list[MeteringEntry], receipt_seconds: float, now: datetime | None = None
) -> list[dict[str, Any]]:
    """The provider's windows (records that carried bytes) the consumer refused, or left
    without a receipt for longer than `receipt_seconds` after its stream's last record: the
    evidence a consumer withholds. A window still streaming is never disputed."""
    now = now or datetime.now(UTC)
    last: dict[str, datetime] = {}
    for entry in chain:
        at = _instant(entry.record.get("to"))
        if at is not None and (entry.transfer_id not in last or at > last[entry.transfer_id]):
            last[entry.transfer_id] = at
    grace = timedelta(seconds=receipt_seconds)
    disputed = []
    for entry in sorted(chain, key=lambda e: e.seq):
        if entry.receipt or not int(entry.record.get("length", 0) or 0):
            continue
        ended = last.get(entry.transfer_id)
        if entry.refusal:
            why = "refused"
        elif ended is not None and now - ended > grace:
            why = "no receipt"
        else:
            continue
        disputed.append({"seq": entry.seq, "transfer": entry.transfer_id, "why": why})
    return disputed


def agreement_usage(
    store: Store,
    agreement_id: str,
    agreed_at: str | None,
    *,
    receipt_seconds: float | None = None,
    max_disputed: int = 0,
    overdue_of: str | None = None,
) -> dict[str, Any]:
    """Transfers and bytes under one agreement so far (provider side), and, with
    `receipt_seconds`, the metering windows in dispute (docs/metering.md), and with
    `overdue_of`, that consumer's overdue deletions under any agreement.

    Every accepted transfer counts from the moment it is accepted, and a transfer under way
    counts the bytes it has reserved: the decision on the next request sees them even before
    they have moved a byte (issue 13, finding 6)."""
    transfers = store.agreement_transfers(agreement_id, Role.PROVIDER)
    usage: dict[str, Any] = {
        "transfers": len(transfers),
        "bytes": sum(committed_bytes(t) for t in transfers),
        "records": 0,
        "uses": 0,
        "agreed_at": agreed_at,
        "first_use": None,
    }
    if receipt_seconds is not None:
        disputed = disputed_windows(store.metering_chain(agreement_id), receipt_seconds)
        # the first ones by name (a reason stays short), and how many there are
        usage["disputed_windows"] = disputed[:NAMED_DISPUTES]
        usage["disputed_window_count"] = len(disputed)
        usage["max_disputed_windows"] = max_disputed
    if overdue_of is not None:
        usage["overdue_deletions"] = overdue_deletions(store, overdue_of)
    return usage
