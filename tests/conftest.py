from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ConnectorProcess


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
