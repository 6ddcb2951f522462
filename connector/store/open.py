"""Which store a connector opens: PostgreSQL when `database_url` is set, else SQLite."""

from __future__ import annotations

from connector.config import Settings
from connector.store.base import Store


def open_store(
    settings: Settings, *, migrate: bool = True, forbid_event_loop: bool = False
) -> Store:
    """The store; `migrate=False`: one more connection to a store opened (and migrated) before,
    e.g. a pool of read connections on other threads (SQLite in WAL mode: readers never wait
    for a writer, also one in another process). `forbid_event_loop`: any statement run on a
    thread running an asyncio event loop raises StoreOnEventLoop."""
    if settings.database_url is not None:
        from connector.store.postgres import PostgresStore

        return PostgresStore(
            settings.database_url.get_secret_value(),
            migrate=migrate,
            forbid_event_loop=forbid_event_loop,
        )
    from connector.store.sqlite import SqliteStore

    return SqliteStore(settings.db_path, migrate=migrate, forbid_event_loop=forbid_event_loop)
