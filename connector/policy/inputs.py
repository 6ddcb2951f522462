"""What the enforcement points tell the policy about datasets and usage so far."""

from __future__ import annotations

from typing import Any

from connector.dsp.states import TP_TERMINAL
from connector.store.base import Store
from connector.store.records import Dataset, Transfer


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


def agreement_usage(store: Store, agreement_id: str, agreed_at: str | None) -> dict[str, Any]:
    """Transfers and bytes under one agreement so far (provider side).

    Every accepted transfer counts from the moment it is accepted, and a transfer under way
    counts the bytes it has reserved: the decision on the next request sees them even before
    they have moved a byte (issue 13, finding 6)."""
    transfers = store.agreement_transfers(agreement_id, "provider")
    return {
        "transfers": len(transfers),
        "bytes": sum(committed_bytes(t) for t in transfers),
        "records": 0,
        "uses": 0,
        "agreed_at": agreed_at,
        "first_use": None,
    }
