"""Persistence behind a narrow interface (SQLite now; PostgreSQL can implement the same)."""

from connector.store.base import Store
from connector.store.sqlite import SqliteStore

__all__ = ["SqliteStore", "Store"]
