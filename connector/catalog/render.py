"""DCAT rendering of our datasets: what the catalog endpoints answer."""

from __future__ import annotations

from typing import Any

from connector.dsp.messages import CONTEXT
from connector.store.records import Dataset

FORMATS = ("HttpData-PULL", "HttpData-PUSH")


def service_id(did: str) -> str:
    return f"{did}#dsp"


def offer_for_catalog(offer: dict[str, Any]) -> dict[str, Any]:
    """An offer as the catalog shows it: typed, no target (the dataset is the target)."""
    shown = {k: v for k, v in offer.items() if k != "target"}
    shown["@type"] = "Offer"
    return shown


def dataset(record: Dataset, did: str, *, with_context: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if with_context:
        out["@context"] = list(CONTEXT)
    out.update({"@id": record.id, "@type": "Dataset"})
    if record.title:
        out["dct:title"] = record.title
    if record.description:
        out["dct:description"] = record.description
    if record.keywords:
        out["dcat:keyword"] = record.keywords
    out["hasPolicy"] = [offer_for_catalog(o) for o in record.offers]
    out["distribution"] = [
        {"@type": "Distribution", "format": fmt, "accessService": service_id(did)}
        for fmt in FORMATS
    ]
    return out


def catalog(records: list[Dataset], did: str, dsp_url: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "@context": list(CONTEXT),
        "@id": f"{did}#catalog",
        "@type": "Catalog",
        "participantId": did,
        "service": [{"@id": service_id(did), "@type": "DataService", "endpointURL": dsp_url}],
    }
    if records:
        out["dataset"] = [dataset(r, did) for r in records]
    return out
