"""The per-table record methods both stores share, written once over five primitives.

Each store implements `_insert/_get/_find/_list/_update` for its database; what a negotiation,
agreement, transfer, dataset or deletion duty maps to is the same for both.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

from connector.model.metering import MeteringHead
from connector.model.records import Agreement, Dataset, Negotiation, Transfer
from connector.model.usage import DeletionDuty

M = TypeVar("M", bound=BaseModel)


class RecordTables:
    # primitives, per store ----------------------------------------------------------------------

    def _insert(self, table: str, record: BaseModel, *, replace: bool = False) -> None:
        raise NotImplementedError

    def _get(self, table: str, model: type[M], key: str, *, lock: bool = False) -> M | None:
        """With `lock`, inside a transaction: kept from other writers until commit."""
        raise NotImplementedError

    def _find(self, table: str, model: type[M], match: dict[str, str]) -> M | None:
        raise NotImplementedError

    def _list(self, table: str, model: type[M], limit: int, offset: int) -> list[M]:
        raise NotImplementedError

    def _count(self, table: str, match: dict[str, str], states_not_in: list[str]) -> int:
        """Rows matching every `match` column whose state is none of `states_not_in`."""
        raise NotImplementedError

    def _update(self, table: str, model: type[M], key: str, fields: dict[str, Any]) -> M:
        raise NotImplementedError

    def _untouched(
        self, table: str, model: type[M], states_not_in: list[str], before: str, limit: int
    ) -> list[M]:
        """Rows in none of `states_not_in` whose updated_at is older than `before`, oldest
        first."""
        raise NotImplementedError

    # datasets -----------------------------------------------------------------------------------

    def put_dataset(self, dataset: Dataset) -> None:
        self._insert("datasets", dataset, replace=True)

    def get_dataset(self, dataset_id: str) -> Dataset | None:
        return self._get("datasets", Dataset, dataset_id)

    # signed metering chain heads ----------------------------------------------------------------

    def put_metering_head(self, head: MeteringHead) -> bool:
        """Keep `head` if it is longer than the one kept (call inside a transaction); a shorter
        or equal one never replaces it. True if kept."""
        current = self._get("metering_heads", MeteringHead, head.id, lock=True)
        if current is not None and current.count >= head.count:
            return False
        self._insert("metering_heads", head, replace=True)
        return True

    def metering_head(self, agreement_id: str) -> MeteringHead | None:
        return self._get("metering_heads", MeteringHead, agreement_id)

    # negotiations -------------------------------------------------------------------------------

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

    # agreements ---------------------------------------------------------------------------------

    def put_agreement(self, record: Agreement) -> None:
        self._insert("agreements", record, replace=True)

    def get_agreement(self, agreement_id: str) -> Agreement | None:
        return self._get("agreements", Agreement, agreement_id)

    def list_agreements(self, limit: int = 100, offset: int = 0) -> list[Agreement]:
        return self._list("agreements", Agreement, limit, offset)

    def update_agreement(self, agreement_id: str, **fields: Any) -> Agreement:
        return self._update("agreements", Agreement, agreement_id, fields)

    def lock_agreement(self, agreement_id: str) -> Agreement | None:
        return self._get("agreements", Agreement, agreement_id, lock=True)

    # transfers ----------------------------------------------------------------------------------

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

    # deletion duties ----------------------------------------------------------------------------

    def put_deletion(self, duty: DeletionDuty) -> None:
        self._insert("deletion_duties", duty, replace=True)

    def get_deletion(self, duty_id: str) -> DeletionDuty | None:
        return self._get("deletion_duties", DeletionDuty, duty_id)

    def lock_deletion(self, duty_id: str) -> DeletionDuty | None:
        return self._get("deletion_duties", DeletionDuty, duty_id, lock=True)

    def update_deletion(self, duty_id: str, **fields: Any) -> DeletionDuty:
        return self._update("deletion_duties", DeletionDuty, duty_id, fields)
