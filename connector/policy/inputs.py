"""What the enforcement points tell the policy about datasets and usage so far."""

from __future__ import annotations

from typing import Any

from connector.dsp.states import TP
from connector.store.base import Store
from connector.store.records import Dataset


def dataset_facts(dataset: Dataset | None, dataset_id: str, owner: str) -> dict[str, Any]:
    return {
        "id": dataset_id,
        "classification": dataset.classification if dataset else "general",
        "owner": owner,
    }


def agreement_usage(store: Store, agreement_id: str, agreed_at: str | None) -> dict[str, Any]:
    """Transfers started and bytes delivered under one agreement (provider side)."""
    transfers = store.agreement_transfers(agreement_id, "provider")
    delivered = [t for t in transfers if t.state != TP.REQUESTED or t.bytes]
    return {
        "transfers": len(delivered),
        "bytes": sum(t.bytes for t in transfers),
        "records": 0,
        "uses": 0,
        "agreed_at": agreed_at,
        "first_use": None,
    }
