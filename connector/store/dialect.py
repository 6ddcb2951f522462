"""What differs between SQLite and PostgreSQL, and nothing else: the store's operations are
written once (connector/store/*.py repositories) over this small object.

Why a hand-written dialect and not SQLAlchemy Core: the two databases differ in about a dozen
places (listed as the attributes below); every other statement is plain SQL both accept
(`on conflict ... do update`, `returning`, partial indexes). A dialect object keeps the hot
path at one `str.replace` (cached) and a driver call per statement, with no expression
compilation, and keeps the schema a short declaration (connector/store/schema.py) instead of
an ORM metadata layer plus an Alembic tree for two tables' worth of differences.

Statements are written with `?` placeholders; `prepare` turns them into the driver's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def marks(values: Sequence[Any]) -> str:
    """`?, ?, ?` for an `in (...)` list."""
    return ", ".join("?" * len(values))


def member(column: str, values: Sequence[Any], *, negate: bool = False) -> str:
    """`column [not] in (?, ...)`, also right for an empty list (where SQL has no `in ()`)."""
    if not values:
        return "1 = 1" if negate else "1 = 0"
    return f"{column} {'not in' if negate else 'in'} ({marks(values)})"


class Dialect:
    """One database's spelling of what the store needs; subclasses fill the attributes."""

    name: str
    # True when several connector processes (replicas) may share this store at once.
    shared: bool
    # How a writing transaction starts: SQLite takes the write lock at once (BEGIN IMMEDIATE),
    # so a read-then-write inside never meets a busy database half-way.
    begin: str
    # Appended to a select that must keep the rows from other writers until commit (SQLite:
    # nothing, BEGIN IMMEDIATE already keeps every other writer out).
    for_update: str
    # Appended to the job claim's select: a job another replica is claiming is left to it.
    skip_locked: str
    # Column types by the Python type of a field, and an integer key the database numbers.
    types: dict[type, str]
    identity_key: str
    # Errors that mean "a row with this key exists" (mapped to Duplicate).
    duplicate_errors: tuple[type[Exception], ...]
    # Any error of the driver (what fails a migration; what a rollback may raise and hide).
    errors: tuple[type[Exception], ...]
    # The columns a table has (empty: no such table); one `?`, the table's name.
    columns_sql: str

    def connect(self, *, create: bool) -> Any:
        """A new connection in autocommit mode whose rows are dicts; StoreUnavailable if the
        database cannot be reached. `create`: also make a database that does not exist."""
        raise NotImplementedError

    def prepare(self, sql: str) -> str:
        """The statement with the driver's placeholders."""
        return sql

    def executemany(self, conn: Any, sql: str, rows: list[list[Any]]) -> None:
        conn.executemany(sql, rows)

    def json_text(self, column: str, key: str) -> str:
        """An expression: the text of `key` in the JSON object kept as text in `column`."""
        raise NotImplementedError

    def serialize(self, namespace: int, key: str) -> tuple[str, list[Any]] | None:
        """A statement that, inside a transaction, keeps other writers naming the same key
        waiting until commit; None when the transaction alone does it (SQLite)."""
        return None

    def broken(self, conn: Any) -> bool:
        """True when the connection is lost and should be replaced between transactions."""
        return False

    def describe(self, exc: Exception) -> str:
        """A short text for a Duplicate."""
        return str(exc)

    def where(self) -> str:
        """Where the database is, for messages (no password)."""
        raise NotImplementedError
