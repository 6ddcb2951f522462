"""DCAT rendering of our datasets: what the catalog endpoints answer."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from connector.model.enums import TransferFormat
from connector.model.messages import (
    CATALOG_DIGEST,
    CATALOG_UNCHANGED,
    CLASSIFICATION,
    CONTEXT,
    FOAF_NAME,
)
from connector.model.records import Dataset

FORMATS = tuple(TransferFormat)


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
    if record.themes:
        out["dcat:theme"] = record.themes
    out[CLASSIFICATION] = record.classification
    out["hasPolicy"] = [offer_for_catalog(o) for o in record.offers]
    out["distribution"] = [
        {"@type": "Distribution", "format": fmt, "accessService": service_id(did)}
        for fmt in FORMATS
    ]
    return out


def _head(did: str, dsp_url: str, name: str) -> dict[str, Any]:
    return {
        "@context": list(CONTEXT),
        "@id": f"{did}#catalog",
        "@type": "Catalog",
        "participantId": did,
        "dct:publisher": {"@id": did, FOAF_NAME: name},
        "service": [{"@id": service_id(did), "@type": "DataService", "endpointURL": dsp_url}],
    }


def catalog(records: list[Dataset], did: str, dsp_url: str, name: str = "") -> dict[str, Any]:
    """The catalog a caller may see, with the digest of exactly that content."""
    out = _head(did, dsp_url, name)
    if records:
        out["dataset"] = [dataset(r, did) for r in records]
    out[CATALOG_DIGEST] = digest(out)
    return out


def page(
    records: list[Dataset], did: str, dsp_url: str, name: str, whole: str | None
) -> dict[str, Any]:
    """One page of the catalog; it carries the digest of the whole catalog only when that was
    computed (asked for by IfChanged), as the digest of a page would never match it."""
    out = _head(did, dsp_url, name)
    if records:
        out["dataset"] = [dataset(r, did) for r in records]
    if whole is not None:
        out[CATALOG_DIGEST] = whole
    return out


def unchanged(did: str, dsp_url: str, name: str, known: str) -> dict[str, Any]:
    """The answer to an IfChanged filter whose digest still matches: no datasets."""
    out = _head(did, dsp_url, name)
    out[CATALOG_DIGEST] = known
    out[CATALOG_UNCHANGED] = True
    return out


def digest(doc: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON (sorted keys, no white space) without the digest itself."""
    body = {k: v for k, v in doc.items() if k not in (CATALOG_DIGEST, CATALOG_UNCHANGED)}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
