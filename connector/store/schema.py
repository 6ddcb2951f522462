"""The store's schema, declared once for both databases: tables, columns, keys and indexes.

Record tables take their columns from their models (nested values as JSON text, see rows.py);
the dialect only names the column types. Changing what is declared here needs a migration
(connector/store/migrations.py) so that existing databases get it too.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from connector.model.metering import MeteringEntry
from connector.model.records import DecisionRecord, Job, TimelineEntry
from connector.model.usage import UseEntry
from connector.store.dialect import Dialect
from connector.store.rows import TABLES, column_type


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[tuple[str, type], ...]
    key: tuple[str, ...]
    identity: bool = False  # the key is an integer the database numbers

    def create(self, dialect: Dialect) -> str:
        cols = []
        for name, kind in self.columns:
            if self.identity and (name,) == self.key:
                cols.append(f"{name} {dialect.identity_key}")
            else:
                cols.append(f"{name} {dialect.types[kind]}")
        if not self.identity:
            cols.append(f"primary key ({', '.join(self.key)})")
        return f"create table {self.name} ({', '.join(cols)})"

    def add_column(self, dialect: Dialect, name: str) -> str:
        kind = dict(self.columns)[name]
        return f"alter table {self.name} add column {name} {dialect.types[kind]}"


@dataclass(frozen=True)
class Index:
    table: str
    columns: tuple[str, ...]
    unique: bool = False
    where: str | None = None
    label: str | None = None  # the name, when not table_columns_idx

    @property
    def name(self) -> str:
        return self.label or f"{self.table}_{'_'.join(self.columns)}_idx"

    def create(self) -> str:
        sql = (
            f"create {'unique ' if self.unique else ''}index if not exists {self.name}"
            f" on {self.table} ({', '.join(self.columns)})"
        )
        return sql + (f" where {self.where}" if self.where else "")


def _model(
    name: str, model: type[BaseModel], key: tuple[str, ...], identity: bool = False, **as_: type
) -> Table:
    columns = tuple((n, as_.get(n, column_type(model, n))) for n in model.model_fields)
    return Table(name, columns, key, identity)


TABLE_LIST: list[Table] = [
    *(_model(name, model, (pk,)) for name, (model, pk) in TABLES.items()),
    _model("decisions", DecisionRecord, ("seq",), identity=True, allow=int),
    _model("timeline", TimelineEntry, ("seq",), identity=True),
    _model("jobs", Job, ("id",), identity=True),
    Table("leases", (("name", str), ("owner", str), ("until", float)), ("name",)),
    _model("metering", MeteringEntry, ("agreement_id", "seq")),
    _model("uses", UseEntry, ("agreement_id", "seq")),
    Table("seen_tokens", (("jti", str), ("expires_at", int)), ("jti",)),
]
SCHEMA: dict[str, Table] = {t.name: t for t in TABLE_LIST}

INDEXES: list[Index] = [
    Index("timeline", ("process_id",)),
    Index("jobs", ("status", "process_id")),
    Index("metering", ("transfer_id",)),
    Index("negotiations", ("consumer_pid",)),
    Index("negotiations", ("provider_pid",)),
    Index("transfers", ("consumer_pid",)),
    Index("transfers", ("provider_pid",)),
    Index("transfers", ("agreement_id",)),
    Index("deletion_duties", ("role", "state", "due_at")),
    Index("deletion_duties", ("agreement_id",)),
    # /metrics counts by these on every scrape: index scans, not table scans
    Index("negotiations", ("role", "state")),
    Index("transfers", ("role", "state", "bytes")),
    Index("decisions", ("phase", "allow")),
    # expired token ids are purged on every accepted token: keep that a range scan
    Index("seen_tokens", ("expires_at",)),
]

# One provider-side process per consumer process: a request two replicas (or two tasks of one
# process) receive at once, a retry racing the original, creates it once.
PROVIDER_ONCE: list[Index] = [
    Index(
        table,
        ("counterparty_id", "consumer_pid"),
        True,
        "role = 'provider'",
        f"{table}_provider_once",
    )
    for table in ("negotiations", "transfers")
]

# The table that keeps which migrations a database has had.
VERSION_TABLE = Table("schema_version", (("id", int), ("version", int)), ("id",))
