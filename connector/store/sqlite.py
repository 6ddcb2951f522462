"""SQLite: one file per connector (WAL, synchronous=FULL), safe across crashes."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from connector.files import private_file
from connector.store.base import StoreUnavailable
from connector.store.dialect import Dialect
from connector.store.sql import SqlStore


def _dict_row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    return dict(zip([d[0] for d in cursor.description], row, strict=True))


class SqliteDialect(Dialect):
    def __init__(self, path: Path, *, busy_timeout_ms: int = 5000) -> None:
        super().__init__("sqlite")
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms

    def connect(self, *, create: bool) -> sqlite3.Connection:
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # SQLite creates the WAL and shared-memory files with the database file's mode
                private_file(self.path)
                for side in ("-wal", "-shm"):
                    beside = self.path.with_name(self.path.name + side)
                    if beside.exists():
                        private_file(beside)
                target, uri = str(self.path), False
            else:
                # one more connection to a store that exists: never make an empty file
                target, uri = self.path.resolve().as_uri() + "?mode=rw", True
            conn = sqlite3.connect(target, isolation_level=None, check_same_thread=False, uri=uri)
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"{self.path}: cannot open the store: {exc}") from exc
        conn.row_factory = _dict_row
        try:
            if create:  # kept in the file: the connections after it find it set
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
        except sqlite3.Error as exc:
            conn.close()
            raise StoreUnavailable(f"{self.path}: cannot open the store: {exc}") from exc
        return conn

    def json_text(self, column: str, key: str) -> str:
        return f"json_extract({column}, '$.{key}')"

    def where(self) -> str:
        return str(self.path)


class SqliteStore(SqlStore):
    def __init__(
        self, path: Path, *, migrate: bool = True, forbid_event_loop: bool = False
    ) -> None:
        super().__init__(SqliteDialect(path), migrate=migrate, forbid_event_loop=forbid_event_loop)
