"""Rows as both stores keep them: which model goes in which table, and how a model's fields
become column values (nested values as JSON text) and back."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel

from connector.model.metering import MeteringHead
from connector.model.records import Agreement, Dataset, Negotiation, Transfer
from connector.model.usage import DeletionDuty

M = TypeVar("M", bound=BaseModel)

# Tables of one model each, keyed by `id`.
TABLES: dict[str, tuple[type[BaseModel], str]] = {
    "datasets": (Dataset, "id"),
    "negotiations": (Negotiation, "id"),
    "agreements": (Agreement, "id"),
    "transfers": (Transfer, "id"),
    "deletion_duties": (DeletionDuty, "id"),
    "metering_heads": (MeteringHead, "id"),
}


def json_fields(model: type[BaseModel]) -> set[str]:
    """Fields kept as JSON text: dicts, lists and free-form values."""
    out = set()
    for name, field in model.model_fields.items():
        text = str(field.annotation)
        if "dict" in text or "list" in text or text == "typing.Any":
            out.add(name)
    return out


def column_type(model: type[BaseModel], name: str) -> type:
    """The Python type of a field's column: str (also JSON), int or float."""
    if name in json_fields(model):
        return str
    annotation = str(model.model_fields[name].annotation)
    if "int" in annotation:
        return int
    if "float" in annotation:
        return float
    return str


def encode(fields: dict[str, Any]) -> dict[str, Any]:
    """Values of an update: nested ones (and any `body`) as JSON text."""
    return {
        k: json.dumps(v) if isinstance(v, dict | list) or (v is not None and k == "body") else v
        for k, v in fields.items()
    }


def to_row(record: BaseModel) -> dict[str, Any]:
    row = record.model_dump()
    for name in json_fields(type(record)):
        row[name] = json.dumps(row[name]) if row[name] is not None else None
    return row


def from_row(model: type[M], row: dict[str, Any]) -> M:
    data = dict(row)
    for name in json_fields(model):
        if isinstance(data.get(name), str):
            data[name] = json.loads(data[name])
    return model.model_validate(data)
