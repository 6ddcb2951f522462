"""The one SQL store: the repositories (one module per aggregate) over one connection, for
SQLite or PostgreSQL as its dialect says.

One connection per store, behind a lock: calls from several threads take turns, and a
transaction holds the lock until it ends. More connections to the same database are more
stores (`open_store(settings, migrate=False)`).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from connector.store.agreements import Agreements
from connector.store.base import DatabaseDown, Duplicate, StoreOnEventLoop, StoreUnavailable
from connector.store.chains import Chains
from connector.store.core import Row
from connector.store.datasets import Datasets
from connector.store.decisions import Decisions
from connector.store.deletions import Deletions
from connector.store.dialect import Dialect, marks
from connector.store.jobs import Jobs
from connector.store.migrations import migrate as apply_migrations
from connector.store.migrations import require_current
from connector.store.negotiations import Negotiations
from connector.store.replay import SeenTokens
from connector.store.stats import Stats
from connector.store.timeline import Timeline
from connector.store.transfers import Transfers


class SqlStore(
    Datasets,
    Negotiations,
    Agreements,
    Transfers,
    Timeline,
    Jobs,
    Decisions,
    SeenTokens,
    Chains,
    Deletions,
    Stats,
):
    def __init__(
        self, dialect: Dialect, *, migrate: bool = True, forbid_event_loop: bool = False
    ) -> None:
        self.dialect = dialect
        self.shared = dialect.shared
        self._forbid_event_loop = forbid_event_loop
        self._lock = threading.RLock()
        self._depth = 0
        self._conn = dialect.connect(create=migrate)
        try:
            if migrate:
                apply_migrations(self)
            else:
                require_current(self)
        except dialect.errors as exc:
            self._conn.close()
            raise StoreUnavailable(
                f"{dialect.where()}: cannot bring the schema up to date: {exc}"
            ) from exc
        except BaseException:
            self._conn.close()
            raise

    def close(self) -> None:
        self._conn.close()

    # statements ---------------------------------------------------------------------------------

    def _guard(self) -> None:
        """With `forbid_event_loop`: no statement on a thread running an event loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        raise StoreOnEventLoop(f"store.{self._entry()} ran on the event loop's thread")

    def _entry(self) -> str:
        """The outermost method of this store on the stack: what the caller called."""
        name, frame = "?", sys._getframe(1)
        while frame is not None:
            if frame.f_locals.get("self") is self:
                name = frame.f_code.co_name
            frame = frame.f_back  # type: ignore[assignment]
        return name

    def _live(self) -> Any:
        """The connection; a broken one is replaced between transactions."""
        if self._depth == 0 and self.dialect.broken(self._conn):
            try:
                self._conn = self.dialect.connect(create=False)
            except StoreUnavailable as exc:
                raise DatabaseDown("the database is unavailable") from exc
        return self._conn

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        if self._forbid_event_loop:
            self._guard()
        with self._lock:
            rows: list[Row] = self._live().execute(self.dialect.prepare(sql), args).fetchall()
            return rows

    def _run(self, sql: str, args: Sequence[Any] = ()) -> int:
        if self._forbid_event_loop:
            self._guard()
        with self._lock:
            count: int = self._live().execute(self.dialect.prepare(sql), args).rowcount
            return count

    def _insert_rows(
        self, table: str, rows: list[Row], conflict_key: tuple[str, ...] | None = None
    ) -> None:
        if not rows:
            return
        columns = list(rows[0])
        sql = f"insert into {table} ({', '.join(columns)}) values ({marks(columns)})"
        if conflict_key is not None:
            updates = [c for c in columns if c not in conflict_key]
            sql += f" on conflict ({', '.join(conflict_key)}) do update set " + ", ".join(
                f"{c} = excluded.{c}" for c in updates
            )
        if self._forbid_event_loop:
            self._guard()
        values = [[r[c] for c in columns] for r in rows]
        try:
            with self._lock:
                conn = self._live()
                if len(values) == 1:
                    conn.execute(self.dialect.prepare(sql), values[0])
                else:
                    with self.transaction():
                        self.dialect.executemany(conn, self.dialect.prepare(sql), values)
        except self.dialect.duplicate_errors as exc:
            raise Duplicate(f"{table}: {self.dialect.describe(exc)}") from exc

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Inside a transaction: the block's writes are undone alone if it raises (the store
        gateway runs each unit of a group commit in one)."""
        with self._lock:
            conn = self._live()
            conn.execute("SAVEPOINT unit")
            try:
                yield
            except BaseException:
                with contextlib.suppress(*self.dialect.errors):
                    conn.execute("ROLLBACK TO SAVEPOINT unit")
                    conn.execute("RELEASE SAVEPOINT unit")
                raise
            conn.execute("RELEASE SAVEPOINT unit")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            if self._forbid_event_loop:
                self._guard()
            conn = self._live()
            conn.execute(self.dialect.begin)
            self._depth = 1
            try:
                yield
            except BaseException:
                self._depth = 0
                # a rollback that fails (connection lost) must not hide why it was needed
                with contextlib.suppress(*self.dialect.errors):
                    conn.execute("ROLLBACK")
                raise
            self._depth = 0
            try:
                conn.execute("COMMIT")
            except BaseException:
                # a COMMIT that fails (disk full, I/O error) may leave the transaction open:
                # end it, so the next one starts clean instead of failing for ever
                with contextlib.suppress(*self.dialect.errors):
                    conn.execute("ROLLBACK")
                raise
