"""Counts of the records by role and state: what the metrics scrape reports
(connector/observability/metrics.py), read on a reader connection."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from connector.store.core import Statements


@dataclass
class RecordCounts:
    negotiations: Counter[tuple[str, str]] = field(default_factory=Counter)  # (role, state)
    transfers: Counter[tuple[str, str]] = field(default_factory=Counter)  # (role, state)
    transfer_bytes: Counter[str] = field(default_factory=Counter)  # role
    decisions: Counter[tuple[str, str]] = field(default_factory=Counter)  # (phase, allow|deny)
    metering_records: int = 0
    deletion_duties: Counter[str] = field(default_factory=Counter)  # state


class StatsRepository(Protocol):
    def record_counts(self) -> RecordCounts: ...


class Stats(Statements):
    def record_counts(self) -> RecordCounts:
        counts = RecordCounts()
        for r in self._rows("select role, state, count(*) as n from negotiations group by 1, 2"):
            counts.negotiations[(r["role"], r["state"])] = int(r["n"])
        for r in self._rows(
            "select role, state, count(*) as n, coalesce(sum(bytes), 0) as moved"
            " from transfers group by 1, 2"
        ):
            counts.transfers[(r["role"], r["state"])] = int(r["n"])
            counts.transfer_bytes[r["role"]] += int(r["moved"])
        for r in self._rows("select phase, allow, count(*) as n from decisions group by 1, 2"):
            counts.decisions[(r["phase"], "allow" if r["allow"] else "deny")] = int(r["n"])
        counts.metering_records = int(self._rows("select count(*) as n from metering")[0]["n"])
        for r in self._rows("select state, count(*) as n from deletion_duties group by 1"):
            counts.deletion_duties[r["state"]] = int(r["n"])
        return counts
