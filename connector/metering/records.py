"""Hashing and reading metering records (the record models are in connector/model/metering.py)."""

from __future__ import annotations

from typing import Any

from connector.identity import signatures
from connector.model.metering import MeteringEntry


def record_hash(record: dict[str, Any]) -> str:
    return signatures.digest(record)


def entry_from_line(line: dict[str, Any]) -> MeteringEntry:
    """A chain line as exported or sent between the connectors (checked by the caller)."""
    record = line["record"]
    return MeteringEntry(
        agreement_id=str(record["agreement"]),
        seq=int(record["seq"]),
        transfer_id=str(record["transfer"]),
        kind=str(record["kind"]),
        hash=str(line.get("hash") or record_hash(record)),
        record=record,
        signature=str(line["signature"]),
        receipt=line.get("receipt"),
        refusal=line.get("refusal"),
    )
