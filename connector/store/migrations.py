"""One numbered migration history for both databases, and the schema version read at open.

A database keeps the number of the last migration it had in `schema_version`. Opening a store
reads it: what is missing is applied in one transaction (replicas starting at once take turns:
the dialect's schema lock), a version newer than this code knows is refused.

History:
- 1, 2: the SQLite store's `PRAGMA user_version` before one store (PostgreSQL kept a DDL
  fingerprint in `schema_meta` instead). Neither is read any more: such a database reads as
  version 0, and migration 3 is written to find its tables and columns already there.
- 3: one layout for both: every table and column of connector/store/schema.py, the indexes
  under one name (SQLite's old `idx_*` copies dropped), `schema_meta` dropped.
- 4: the provider-once unique index, now on SQLite too (it was on PostgreSQL only).
- 5: `decisions.input`: the decision log keeps each input for a while, to replay it.

Every migration checks for what it adds (`if not exists`, missing columns only), so one that
finds its change made already does nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from connector.store.base import SchemaTooNew, StoreUnavailable
from connector.store.core import Statements
from connector.store.schema import (
    INDEXES,
    PROVIDER_ONCE,
    SCHEMA,
    TABLE_LIST,
    VERSION_TABLE,
    Table,
)

# First key of the two-key lock migrations hold (PostgreSQL: an advisory lock).
LOCK_SCHEMA = 7301


def ensure_table(db: Statements, table: Table) -> None:
    """Create the table, or add the columns it lacks."""
    existing = {r["name"] for r in db._rows(db.dialect.columns_sql, [table.name])}
    if not existing:
        db._run(table.create(db.dialect))
        return
    for name, _ in table.columns:
        if name not in existing:
            db._run(table.add_column(db.dialect, name))


def _one_layout(db: Statements) -> None:
    for table in TABLE_LIST:
        ensure_table(db, table)
    for index in INDEXES:
        db._run(index.create())
        # sqlite-utils named its indexes idx_<table>_<columns>: the same index twice
        db._run(f"drop index if exists idx_{index.table}_{'_'.join(index.columns)}")
    db._run("drop table if exists schema_meta")


def _provider_once(db: Statements) -> None:
    for index in PROVIDER_ONCE:
        db._run(index.create())


def _decision_inputs(db: Statements) -> None:
    ensure_table(db, SCHEMA["decisions"])


MIGRATIONS: list[tuple[int, str, Callable[[Statements], None]]] = [
    (3, "one layout for both databases", _one_layout),
    (4, "the provider-once unique index on both databases", _provider_once),
    (5, "the decision log keeps inputs (decisions.input)", _decision_inputs),
]
LATEST = MIGRATIONS[-1][0]


def schema_version(db: Statements) -> int:
    """The version the database is at (0: none kept, a new or a pre-migrations database)."""
    if not db._rows(db.dialect.columns_sql, [VERSION_TABLE.name]):
        return 0
    rows = db._rows(f"select version from {VERSION_TABLE.name} where id = 1")
    return int(rows[0]["version"]) if rows else 0


def _checked(db: Statements) -> int:
    version = schema_version(db)
    if version > LATEST:
        raise SchemaTooNew(
            f"the store at {db.dialect.where()} is at schema version {version}, newer than the"
            f" {LATEST} this connector knows: run the newer connector (or restore a backup)"
        )
    return version


def migrate(db: Statements) -> int:
    """Bring the schema to LATEST; returns the version it was at."""
    if (version := _checked(db)) == LATEST:
        return version  # the usual start: no lock, no DDL
    with db.transaction():
        lock = db.dialect.serialize(LOCK_SCHEMA, "schema")
        if lock is not None:
            db._run(*lock)
        version = _checked(db)  # another replica may have migrated meanwhile
        for number, _, step in MIGRATIONS:
            if number > version:
                step(db)
        ensure_table(db, VERSION_TABLE)
        db._run(
            f"insert into {VERSION_TABLE.name} (id, version) values (1, ?)"
            " on conflict (id) do update set version = excluded.version",
            [LATEST],
        )
    return version


def require_current(db: Statements) -> None:
    """For one more connection to a store opened (and migrated) elsewhere."""
    if (version := _checked(db)) != LATEST:
        raise StoreUnavailable(
            f"the store at {db.dialect.where()} is at schema version {version}, not {LATEST}:"
            " open it with migrations first"
        )
