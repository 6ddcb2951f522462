"""Contract negotiations, on either side."""

from __future__ import annotations

from typing import Any, Protocol

from connector.model.records import Negotiation
from connector.store.core import Statements


class NegotiationRepository(Protocol):
    def insert_negotiation(self, record: Negotiation) -> None: ...
    def get_negotiation(self, pid: str) -> Negotiation | None: ...
    def lock_negotiation(self, pid: str) -> Negotiation | None:
        """Inside a transaction: the current record, kept from other writers until commit."""
        ...

    def find_negotiation(self, **match: str) -> Negotiation | None: ...
    def update_negotiation(self, pid: str, **fields: Any) -> Negotiation: ...
    def list_negotiations(self, limit: int = 100, offset: int = 0) -> list[Negotiation]: ...
    def untouched_negotiations(
        self, closed: list[str], before: str, limit: int
    ) -> list[Negotiation]:
        """Negotiations in none of the `closed` states not updated since `before`, oldest
        first (the idle watchdog)."""
        ...

    def count_open_negotiations(self, closed: list[str], **match: str) -> int:
        """Negotiations matching `match` whose state is none of `closed`."""
        ...


class Negotiations(Statements):
    def insert_negotiation(self, record: Negotiation) -> None:
        self._insert("negotiations", record)

    def get_negotiation(self, pid: str) -> Negotiation | None:
        return self._get("negotiations", Negotiation, pid)

    def lock_negotiation(self, pid: str) -> Negotiation | None:
        return self._get("negotiations", Negotiation, pid, lock=True)

    def find_negotiation(self, **match: str) -> Negotiation | None:
        return self._find("negotiations", Negotiation, match)

    def update_negotiation(self, pid: str, **fields: Any) -> Negotiation:
        return self._update("negotiations", Negotiation, pid, fields)

    def list_negotiations(self, limit: int = 100, offset: int = 0) -> list[Negotiation]:
        return self._list("negotiations", Negotiation, limit, offset)

    def untouched_negotiations(
        self, closed: list[str], before: str, limit: int
    ) -> list[Negotiation]:
        return self._untouched("negotiations", Negotiation, closed, before, limit)

    def count_open_negotiations(self, closed: list[str], **match: str) -> int:
        """Negotiations matching `match` not in a `closed` state (the per-peer cap)."""
        return self._count("negotiations", match, closed)
