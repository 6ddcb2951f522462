"""The decision log: every policy decision, with its input's hash and reasons."""

from __future__ import annotations

from typing import Protocol

from connector.model.records import DecisionRecord
from connector.store.core import Statements
from connector.store.rows import from_row, to_row


class DecisionRepository(Protocol):
    def add_decisions(self, records: list[DecisionRecord]) -> None: ...
    def list_decisions(self, limit: int = 100, offset: int = 0) -> list[DecisionRecord]: ...


class Decisions(Statements):
    def add_decisions(self, records: list[DecisionRecord]) -> None:
        rows = []
        for record in records:
            row = to_row(record)
            row.pop("seq", None)
            row["allow"] = int(record.allow)
            rows.append(row)
        self._insert_rows("decisions", rows)

    def list_decisions(self, limit: int = 100, offset: int = 0) -> list[DecisionRecord]:
        rows = self._rows(
            "select * from decisions order by seq desc limit ? offset ?", [limit, offset]
        )
        return [from_row(DecisionRecord, {**r, "allow": bool(r["allow"])}) for r in rows]
