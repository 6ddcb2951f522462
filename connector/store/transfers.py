"""Transfer processes, on either side."""

from __future__ import annotations

from typing import Any, Protocol

from connector.model.records import Transfer
from connector.store.core import Statements


class TransferRepository(Protocol):
    def insert_transfer(self, record: Transfer) -> None: ...
    def get_transfer(self, pid: str) -> Transfer | None: ...
    def lock_transfer(self, pid: str) -> Transfer | None:
        """Inside a transaction: the current record, kept from other writers until commit."""
        ...

    def find_transfer(self, **match: str) -> Transfer | None: ...
    def update_transfer(self, pid: str, **fields: Any) -> Transfer: ...
    def list_transfers(self, limit: int = 100, offset: int = 0) -> list[Transfer]: ...
    def untouched_transfers(self, closed: list[str], before: str, limit: int) -> list[Transfer]:
        """Transfers in none of the `closed` states not updated since `before` (an ISO time
        as in updated_at), oldest first: what the idle watchdog looks at."""
        ...

    def agreement_transfers(self, agreement_id: str, role: str) -> list[Transfer]: ...


class Transfers(Statements):
    def insert_transfer(self, record: Transfer) -> None:
        self._insert("transfers", record)

    def get_transfer(self, pid: str) -> Transfer | None:
        return self._get("transfers", Transfer, pid)

    def lock_transfer(self, pid: str) -> Transfer | None:
        return self._get("transfers", Transfer, pid, lock=True)

    def find_transfer(self, **match: str) -> Transfer | None:
        return self._find("transfers", Transfer, match)

    def update_transfer(self, pid: str, **fields: Any) -> Transfer:
        return self._update("transfers", Transfer, pid, fields)

    def list_transfers(self, limit: int = 100, offset: int = 0) -> list[Transfer]:
        return self._list("transfers", Transfer, limit, offset)

    def untouched_transfers(self, closed: list[str], before: str, limit: int) -> list[Transfer]:
        return self._untouched("transfers", Transfer, closed, before, limit)

    def agreement_transfers(self, agreement_id: str, role: str) -> list[Transfer]:
        return self._models(
            Transfer,
            "select * from transfers where agreement_id = ? and role = ?",
            [agreement_id, role],
        )
