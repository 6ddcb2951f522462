"""The storage interface the rest of the connector depends on."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any, Protocol

import psycopg

from connector.errors import ConfigError, ConnectorError
from connector.model.metering import MeteringEntry, MeteringHead
from connector.model.records import (
    Agreement,
    Dataset,
    DecisionRecord,
    Job,
    Negotiation,
    TimelineEntry,
    Transfer,
)
from connector.model.usage import DeletionDuty, UseEntry, UseSummary


class Duplicate(ConnectorError):
    """A record with this key (or this unique combination) exists already."""

    status = 409


# What a store raises when it cannot serve a call for now (locked beyond its busy timeout,
# disk full, connection lost): answered 503 at the edge, asked again later.
STORE_FAILURES: tuple[type[Exception], ...] = (sqlite3.OperationalError, psycopg.OperationalError)


class StoreUnavailable(ConfigError):
    """The store cannot be opened at start-up (unreachable database, bad URL or password)."""


class Store(Protocol):
    # True when several connector processes (replicas) may share this store at once.
    shared: bool

    def transaction(self) -> AbstractContextManager[None]:
        """All writes inside commit together or not at all."""
        ...

    def close(self) -> None: ...

    # datasets
    def put_dataset(self, dataset: Dataset) -> None: ...
    def get_dataset(self, dataset_id: str) -> Dataset | None: ...
    def list_datasets(self) -> list[Dataset]: ...
    def delete_dataset(self, dataset_id: str) -> bool: ...

    # negotiations
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

    # agreements
    def put_agreement(self, record: Agreement) -> None: ...
    def get_agreement(self, agreement_id: str) -> Agreement | None: ...
    def list_agreements(self, limit: int = 100, offset: int = 0) -> list[Agreement]: ...
    def update_agreement(self, agreement_id: str, **fields: Any) -> Agreement: ...
    def lock_agreement(self, agreement_id: str) -> Agreement | None:
        """Inside a transaction: the agreement, kept from other writers until commit. Taken
        before a transfer under it is accepted, so two requests (on two replicas) decide and
        reserve its count and volume one after the other."""
        ...

    # transfers
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

    # timeline
    def add_event(self, entry: TimelineEntry) -> None: ...
    def timeline(self, process_id: str) -> list[TimelineEntry]: ...

    # jobs (the outbox): claimed by one owner (a replica) under a lease it renews while it runs
    def add_job(self, job: Job) -> int: ...
    def claim_jobs(self, now: float, limit: int, owner: str, lease_until: float) -> list[Job]:
        """Due jobs, marked running for `owner` in one step, so no two owners get one job.

        A job is due only after the older unfinished jobs of its process: messages keep their
        order. Data moves ('dp-*') wait for everything before them, but messages never wait
        for a data move, so a stalled stream cannot hold back its transfer's termination."""
        ...

    def update_job(self, job_id: int, *, owner: str | None = None, **fields: Any) -> bool:
        """With `owner`: only while that owner still holds the job (False otherwise)."""
        ...

    def renew_leases(self, owner: str, job_ids: list[int], lease_until: float) -> set[int]:
        """Extend the leases of `owner`'s running jobs; returns the ids it still holds."""
        ...

    def release_jobs(self, owner: str, job_ids: list[int]) -> list[Job]:
        """Hand `owner`'s running jobs back (pending now, the attempt counted); return them."""
        ...

    def reset_running_jobs(self, gone: Callable[[str], bool] | None = None) -> list[Job]:
        """At start-up: make jobs a crash interrupted pending again (counting the attempt).

        SQLite: every running job (one process per file). A shared store: jobs whose lease
        expired, as other replicas are running theirs, and jobs of owners `gone` names (an
        earlier process of this replica, killed: its leases need not be waited out)."""
        ...

    def reclaim_expired_jobs(self, now: float) -> list[Job]:
        """Running jobs whose owner stopped renewing the lease: pending again, attempt counted.
        The returned jobs carry the owner that lost them."""
        ...

    def try_lease(self, name: str, owner: str, until: float, now: float) -> bool:
        """Hold the named lease until `until` if it is free, expired or already ours."""
        ...

    def pending_jobs(self, process_id: str) -> list[Job]: ...

    # decision log
    def add_decisions(self, records: list[DecisionRecord]) -> None: ...
    def list_decisions(self, limit: int = 100, offset: int = 0) -> list[DecisionRecord]: ...

    # replay protection
    def remember_jti(self, jti: str, expires_at: int) -> bool: ...

    # metering chains: append builds the next link from (seq, previous hash) atomically
    def append_metering(
        self, agreement_id: str, make: Callable[[int, str | None], MeteringEntry]
    ) -> MeteringEntry: ...
    def put_metering(self, entries: list[MeteringEntry]) -> None: ...
    def metering_chain(
        self, agreement_id: str | None = None, transfer_id: str | None = None
    ) -> list[MeteringEntry]: ...
    # a stored receipt is final: the update leaves a receipted record as it is
    def set_metering_receipt(
        self, agreement_id: str, seq: int, *, receipt: str | None, refusal: str | None
    ) -> None: ...
    # the newest chain head both parties signed; a shorter one never replaces it
    def put_metering_head(self, head: MeteringHead) -> bool: ...
    def metering_head(self, agreement_id: str) -> MeteringHead | None: ...

    # uses of received data: append builds the next signed record from (seq, previous hash)
    def append_use(
        self, agreement_id: str, make: Callable[[int, str | None], UseEntry]
    ) -> UseEntry: ...
    def put_uses(self, entries: list[UseEntry]) -> None: ...
    def list_uses(self, agreement_id: str, seqs: Iterable[int] | None = None) -> list[UseEntry]: ...
    def use_summary(self, agreement_id: str, transfer_id: str) -> UseSummary: ...
    def mark_uses_reported(self, agreement_id: str, seqs: Iterable[int], at: str) -> None: ...

    # deletion duties (one per delivered copy, on each side)
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
