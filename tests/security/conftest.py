"""Connectors under attack allow only 127.0.0.1/32 for outbound requests, so the internal
service of tests/security/internal.py (127.0.0.2) stands for the operator's private network."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness import ConnectorProcess
from tests.security.internal import InternalService

PEERS_ONLY = '["127.0.0.1/32"]'


@pytest.fixture
def internal() -> Iterator[InternalService]:
    service = InternalService().start()
    yield service
    service.stop()


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[Callable[..., ConnectorProcess]]:
    """Factory: a started connector whose egress allows only 127.0.0.1 (plus `env` overrides)."""
    started: list[ConnectorProcess] = []

    def make(name: str, **env: str) -> ConnectorProcess:
        node = ConnectorProcess(tmp_path, name)
        node.set(egress_allow=PEERS_ONLY, **env)
        started.append(node.start())
        return node

    yield make
    for node in started:
        node.stop()
