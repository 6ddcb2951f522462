"""Which store a connector opens: PostgreSQL when `database_url` is set, else SQLite."""

from __future__ import annotations

from connector.config import Settings
from connector.store.base import Store


def open_store(settings: Settings, *, migrate: bool = True) -> Store:
    # TODO(h1 merge): migrate=False opens without migrating
    if settings.database_url is not None:
        from connector.store.postgres import PostgresStore

        return PostgresStore(settings.database_url.get_secret_value())
    from connector.store.sqlite import SqliteStore

    return SqliteStore(settings.db_path)
