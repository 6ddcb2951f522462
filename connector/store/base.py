"""The storage interface the rest of the connector depends on: one repository protocol per
aggregate (connector/store/<aggregate>.py), composed into `Store`, and the store's errors."""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from typing import Protocol

import psycopg

from connector.errors import ConfigError, ConnectorError
from connector.store.agreements import AgreementRepository
from connector.store.chains import MeteringRepository, UseRepository
from connector.store.datasets import DatasetRepository
from connector.store.decisions import DecisionRepository
from connector.store.deletions import DeletionRepository
from connector.store.jobs import JobRepository
from connector.store.negotiations import NegotiationRepository
from connector.store.replay import ReplayGuard
from connector.store.stats import StatsRepository
from connector.store.timeline import TimelineRepository
from connector.store.transfers import TransferRepository


class Duplicate(ConnectorError):
    """A record with this key (or this unique combination) exists already."""

    status = 409


# What a store raises when it cannot serve a call for now (locked beyond its busy timeout,
# disk full, connection lost): answered 503 at the edge, asked again later.
STORE_FAILURES: tuple[type[Exception], ...] = (sqlite3.OperationalError, psycopg.OperationalError)


class StoreUnavailable(ConfigError):
    """The store cannot be opened at start-up (unreachable database, bad URL or password)."""


class SchemaTooNew(ConfigError):
    """The database was migrated by a newer connector than this one."""


class DatabaseDown(RuntimeError):
    """The shared database went away while running (start-up failures are StoreUnavailable).
    Not a ConnectorError: peers get a bare 500, never the database's address."""


class StoreOnEventLoop(RuntimeError):
    """A store statement ran on a thread that is running an asyncio event loop (with
    `forbid_event_loop`): the loop would wait for the database, and every request with it."""


class Store(
    DatasetRepository,
    NegotiationRepository,
    AgreementRepository,
    TransferRepository,
    TimelineRepository,
    JobRepository,
    DecisionRepository,
    ReplayGuard,
    MeteringRepository,
    UseRepository,
    DeletionRepository,
    StatsRepository,
    Protocol,
):
    # True when several connector processes (replicas) may share this store at once.
    shared: bool

    def transaction(self) -> AbstractContextManager[None]:
        """All writes inside commit together or not at all."""
        ...

    def savepoint(self) -> AbstractContextManager[None]:
        """Inside a transaction: the block's writes are undone alone if it raises."""
        ...

    def close(self) -> None: ...
