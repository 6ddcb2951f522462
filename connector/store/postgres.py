"""PostgreSQL: one database shared by replicas.

Where SQLite relies on being the only writer (one process, BEGIN IMMEDIATE), this dialect
takes row locks (`lock_*`, job claims with FOR UPDATE SKIP LOCKED) and advisory locks (chain
appends, schema migration), so two replicas never apply one change twice.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg.rows import dict_row

from connector.store.base import DatabaseDown, StoreUnavailable
from connector.store.dialect import Dialect
from connector.store.sql import SqlStore

__all__ = ["DatabaseDown", "PostgresDialect", "PostgresStore", "connect", "redact"]

Connection = psycopg.Connection[dict[str, Any]]


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


def connect(url: str, *, timeout: int = 10) -> Connection:
    """An autocommit connection returning dict rows; StoreUnavailable with the reason."""
    try:
        return psycopg.connect(url, autocommit=True, row_factory=dict_row, connect_timeout=timeout)
    except (psycopg.Error, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreUnavailable(f"database_url: cannot connect to {redact(url)}: {reason}") from exc


@lru_cache(maxsize=1024)
def _placeholders(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


class PostgresDialect(Dialect):
    def __init__(self, url: str) -> None:
        super().__init__("postgresql")
        self.url = url

    def connect(self, *, create: bool) -> Connection:
        return connect(self.url)

    def prepare(self, sql: str) -> str:
        return _placeholders(sql)

    def executemany(self, conn: Any, sql: str, rows: list[list[Any]]) -> None:
        with conn.cursor() as cursor:
            cursor.executemany(sql, rows)

    def json_text(self, column: str, key: str) -> str:
        return f"{column}::jsonb ->> '{key}'"

    def serialize(self, namespace: int, key: str) -> tuple[str, list[Any]]:
        return "select pg_advisory_xact_lock(?, hashtext(?))", [namespace, key]

    def broken(self, conn: Any) -> bool:
        return bool(conn.closed or conn.broken)

    def describe(self, exc: Exception) -> str:
        diag = getattr(exc, "diag", None)
        return str(getattr(diag, "message_detail", None) or exc)

    def where(self) -> str:
        return f"database_url {redact(self.url)}"


class PostgresStore(SqlStore):
    def __init__(self, url: str, *, migrate: bool = True, forbid_event_loop: bool = False) -> None:
        super().__init__(PostgresDialect(url), migrate=migrate, forbid_event_loop=forbid_event_loop)
