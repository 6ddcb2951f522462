"""Agreements, signed by both parties."""

from __future__ import annotations

from typing import Any, Protocol

from connector.model.records import Agreement
from connector.store.core import Statements


class AgreementRepository(Protocol):
    def put_agreement(self, record: Agreement) -> None: ...
    def get_agreement(self, agreement_id: str) -> Agreement | None: ...
    def list_agreements(self, limit: int = 100, offset: int = 0) -> list[Agreement]: ...
    def update_agreement(self, agreement_id: str, **fields: Any) -> Agreement: ...
    def lock_agreement(self, agreement_id: str) -> Agreement | None:
        """Inside a transaction: the agreement, kept from other writers until commit. Taken
        before a transfer under it is accepted, so two requests (on two replicas) decide and
        reserve its count and volume one after the other."""
        ...


class Agreements(Statements):
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
