"""The data the TCK expects to find: datasets with fixed offer ids, finalized agreements."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from connector.model.enums import Role
from connector.model.records import Agreement, Dataset, Negotiation
from connector.model.states import CN
from connector.runtime import Runtime
from connector.store.base import Store
from connector.tck.cases import (
    CATALOG_DATASETS,
    CONSUMER_TRANSFERS,
    PROVIDER_NEGOTIATIONS,
    PROVIDER_TRANSFERS,
    TCK_PARTICIPANT,
    offer_id,
)

AGREEMENT_DATASET = CATALOG_DATASETS[0]
USE: list[dict[str, Any]] = [{"action": "use"}]


def negotiation_id(agreement_id: str) -> str:
    return f"urn:tck:negotiation:{agreement_id}"


async def seed(rt: Runtime) -> None:
    """Insert (or refresh) every seeded record, in one unit; safe to run at each start."""
    sample = rt.settings.data_dir / "tck" / "sample.txt"
    sample.parent.mkdir(parents=True, exist_ok=True)
    if not sample.exists():
        sample.write_text("Sample data for the Dataspace Protocol TCK.\n", encoding="utf-8")
    source = {"type": "file", "path": str(sample)}
    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")

    def records(store: Store) -> None:
        for dataset_id in (*PROVIDER_NEGOTIATIONS, *CATALOG_DATASETS):
            offer = {"@id": offer_id(dataset_id), "@type": "Offer", "permission": USE}
            store.put_dataset(
                Dataset(
                    id=dataset_id,
                    title=f"TCK dataset {dataset_id}",
                    media_type="text/plain",
                    source=source,
                    offers=[offer],
                )
            )
        for agreement_id in PROVIDER_TRANSFERS:
            _agreement(store, agreement_id, Role.PROVIDER, rt.did, TCK_PARTICIPANT, now)
        for agreement_id in CONSUMER_TRANSFERS:
            _agreement(store, agreement_id, Role.CONSUMER, TCK_PARTICIPANT, rt.did, now)

    await rt.db.write(records)


def _agreement(
    store: Store, agreement_id: str, role: str, provider: str, consumer: str, now: str
) -> None:
    neg_id = negotiation_id(agreement_id)
    body = {
        "@id": agreement_id,
        "@type": "Agreement",
        "target": AGREEMENT_DATASET,
        "assigner": provider,
        "assignee": consumer,
        "timestamp": now,
        "permission": USE,
    }
    if store.get_negotiation(neg_id) is None:
        store.insert_negotiation(
            Negotiation(
                id=neg_id,
                role=Role.PROVIDER if role == Role.PROVIDER else Role.CONSUMER,
                state=CN.FINALIZED.value,
                provider_pid=neg_id,
                consumer_pid=neg_id,
                counterparty_id=TCK_PARTICIPANT,
                counterparty_address="",
                dataset_id=AGREEMENT_DATASET,
                offer={"@id": offer_id(AGREEMENT_DATASET), "@type": "Offer", "permission": USE},
                offer_by=Role.PROVIDER,
                agreement_id=agreement_id,
            )
        )
    store.put_agreement(
        Agreement(
            id=agreement_id,
            negotiation_id=neg_id,
            dataset_id=AGREEMENT_DATASET,
            provider_id=provider,
            consumer_id=consumer,
            body=body,
        )
    )
