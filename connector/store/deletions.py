"""Deletion duties: one per delivered copy, on each side."""

from __future__ import annotations

from typing import Any, Protocol

from connector.model.usage import DeletionDuty
from connector.store.core import Statements
from connector.store.dialect import marks


class DeletionRepository(Protocol):
    def put_deletion(self, duty: DeletionDuty) -> None: ...
    def get_deletion(self, duty_id: str) -> DeletionDuty | None: ...
    def lock_deletion(self, duty_id: str) -> DeletionDuty | None:
        """Inside a transaction: the current duty, kept from other writers until commit."""
        ...

    def update_deletion(self, duty_id: str, **fields: Any) -> DeletionDuty: ...
    def list_deletions(
        self,
        *,
        role: str | None = None,
        state: str | None = None,
        agreement_id: str | None = None,
        counterparty_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[DeletionDuty]: ...
    def due_deletions(
        self, role: str, states: tuple[str, ...], before: float
    ) -> list[DeletionDuty]:
        """Duties in one of `states` whose deadline (epoch seconds) is at or before `before`."""
        ...


class Deletions(Statements):
    def put_deletion(self, duty: DeletionDuty) -> None:
        self._insert("deletion_duties", duty, replace=True)

    def get_deletion(self, duty_id: str) -> DeletionDuty | None:
        return self._get("deletion_duties", DeletionDuty, duty_id)

    def lock_deletion(self, duty_id: str) -> DeletionDuty | None:
        return self._get("deletion_duties", DeletionDuty, duty_id, lock=True)

    def update_deletion(self, duty_id: str, **fields: Any) -> DeletionDuty:
        return self._update("deletion_duties", DeletionDuty, duty_id, fields)

    def list_deletions(
        self,
        *,
        role: str | None = None,
        state: str | None = None,
        agreement_id: str | None = None,
        counterparty_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[DeletionDuty]:
        where, args = self._where(
            {
                "role": role,
                "state": state,
                "agreement_id": agreement_id,
                "counterparty_id": counterparty_id,
            }
        )
        sql = f"select * from deletion_duties{where} order by created_at desc limit ? offset ?"
        return self._models(DeletionDuty, sql, [*args, limit, offset])

    def due_deletions(
        self, role: str, states: tuple[str, ...], before: float
    ) -> list[DeletionDuty]:
        if not states:
            return []
        return self._models(
            DeletionDuty,
            f"select * from deletion_duties where role = ? and state in ({marks(states)})"
            " and due_at is not null and due_at <= ? order by due_at",
            [role, *states, before],
        )
