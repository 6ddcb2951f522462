"""Reading a member's DSP catalog: the search fields of each dataset, tolerant of JSON-LD forms."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel

from connector.model.messages import CATALOG_DIGEST, CATALOG_UNCHANGED, CLASSIFICATION, FOAF_NAME

CLASSES = ("general", "important", "core")


class CatalogError(Exception):
    """The member answered something that is not a DSP catalog."""


class Entry(BaseModel):
    """One dataset as the index keeps it."""

    dataset_id: str
    title: str = ""
    description: str = ""
    keywords: list[str] = []
    themes: list[str] = []
    classification: str = "general"
    offers: list[dict[str, Any]] = []
    hash: str


class Catalog(BaseModel):
    digest: str | None
    unchanged: bool
    publisher_name: str
    entries: list[Entry]


def _many(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _text(value: Any) -> str:
    """A literal: a string, {"@value": ...}, or a list of those (joined)."""
    out = []
    for item in _many(value):
        if isinstance(item, dict):
            item = item.get("@value", item.get("@id", ""))
        if isinstance(item, str | int | float):
            out.append(str(item))
    return " ".join(out)


def _texts(value: Any) -> list[str]:
    return [t for t in (_text(v) for v in _many(value)) if t]


def _first(doc: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if key in doc:
            return doc[key]
    return None


def _entry(doc: dict[str, Any]) -> Entry | None:
    dataset_id = doc.get("@id")
    if not isinstance(dataset_id, str) or not dataset_id:
        return None
    level = _text(doc.get(CLASSIFICATION)) or "general"
    return Entry(
        dataset_id=dataset_id,
        title=_text(_first(doc, "dct:title", "title")),
        description=_text(_first(doc, "dct:description", "description")),
        keywords=_texts(_first(doc, "dcat:keyword", "keyword")),
        themes=_texts(_first(doc, "dcat:theme", "theme")),
        classification=level,
        offers=[o for o in _many(doc.get("hasPolicy")) if isinstance(o, dict)],
        hash=hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest(),
    )


def _datasets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The catalog's datasets, with those of nested catalogs."""
    found = [d for d in _many(doc.get("dataset")) if isinstance(d, dict)]
    for sub in _many(doc.get("catalog")):
        if isinstance(sub, dict):
            found += _datasets(sub)
    return found


def read(body: Any) -> Catalog:
    if not isinstance(body, dict) or body.get("@type") not in ("Catalog", "dcat:Catalog"):
        raise CatalogError("the answer is not a DSP Catalog")
    publisher = body.get("dct:publisher")
    name = _text(publisher.get(FOAF_NAME)) if isinstance(publisher, dict) else ""
    digest = body.get(CATALOG_DIGEST)
    entries: dict[str, Entry] = {}
    for doc in _datasets(body):
        entry = _entry(doc)
        if entry is not None:
            entries[entry.dataset_id] = entry
    return Catalog(
        digest=digest if isinstance(digest, str) else None,
        unchanged=body.get(CATALOG_UNCHANGED) is True,
        publisher_name=name,
        entries=list(entries.values()),
    )
