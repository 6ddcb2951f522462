from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ConnectorProcess
from tests.postgres_server import PostgresServer


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[ConnectorProcess]:
    node = ConnectorProcess(tmp_path, "provider").start()
    yield node
    node.stop()


@pytest.fixture
def consumer(tmp_path: Path) -> Iterator[ConnectorProcess]:
    node = ConnectorProcess(tmp_path, "consumer").start()
    yield node
    node.stop()


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    """3 MiB of random bytes: several chunks, so streaming is exercised."""
    path = tmp_path / "payload.bin"
    path.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    return path


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL cluster for the session (Debian's server, started here)."""
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture
def database_url(postgres: PostgresServer) -> str:
    """A fresh, empty database on the session's cluster."""
    return postgres.new_database()
