"""The decision log: every policy decision, with its input's hash and reasons."""

from __future__ import annotations

from typing import Protocol

from connector.model.records import DecisionRecord
from connector.store.core import Statements
from connector.store.rows import from_row, to_row


class DecisionRepository(Protocol):
    def add_decisions(
        self, records: list[DecisionRecord], forget_before: str | None = None
    ) -> None: ...
    def list_decisions(self, limit: int = 100, offset: int = 0) -> list[DecisionRecord]: ...
    def get_decision(self, seq: int) -> DecisionRecord | None: ...
    def forget_decision_inputs(self, before: str) -> int: ...


class Decisions(Statements):
    def add_decisions(
        self, records: list[DecisionRecord], forget_before: str | None = None
    ) -> None:
        """Log decisions; with `forget_before`, drop the inputs of those made before it."""
        if forget_before is not None:
            self.forget_decision_inputs(forget_before)
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

    def get_decision(self, seq: int) -> DecisionRecord | None:
        rows = self._rows("select * from decisions where seq = ?", [seq])
        return (
            from_row(DecisionRecord, {**rows[0], "allow": bool(rows[0]["allow"])}) if rows else None
        )

    def forget_decision_inputs(self, before: str) -> int:
        """Drop the inputs of decisions made before `before` (their digests stay)."""
        return self._run(
            "update decisions set input = null where at < ? and input is not null", [before]
        )
