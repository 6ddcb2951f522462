"""The timeline of a process: each message sent or received, each thing that happened."""

from __future__ import annotations

from typing import Protocol

from connector.model.records import TimelineEntry
from connector.store.core import Statements
from connector.store.rows import to_row


class TimelineRepository(Protocol):
    def add_event(self, entry: TimelineEntry) -> None: ...
    def timeline(self, process_id: str) -> list[TimelineEntry]: ...


class Timeline(Statements):
    def add_event(self, entry: TimelineEntry) -> None:
        row = to_row(entry)
        row.pop("seq", None)
        self._insert_rows("timeline", [row])

    def timeline(self, process_id: str) -> list[TimelineEntry]:
        return self._models(
            TimelineEntry, "select * from timeline where process_id = ? order by seq", [process_id]
        )
