"""Persistence behind a narrow interface: one SQL store for SQLite and PostgreSQL
(docs/store.md)."""

from connector.store.base import Store
from connector.store.sqlite import SqliteStore

__all__ = ["SqliteStore", "Store"]
