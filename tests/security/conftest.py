"""Connectors under attack allow only 127.0.0.1/32 for outbound requests, so the internal
service of tests/security/internal.py (127.0.0.2) stands for the operator's private network."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness import ConnectorProcess
from tests.security.internal import InternalService
from tests.security.peer import HostilePeer
from tests.security.peer_host import PeerHost

PEERS_ONLY = '["127.0.0.1/32"]'
Factory = Callable[..., ConnectorProcess]


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


@pytest.fixture
def mallory() -> Iterator[HostilePeer]:
    """A hostile participant with its own key, DID and DSP endpoint (tests/security/peer.py)."""
    peer = HostilePeer().start()
    yield peer
    peer.stop()


@pytest.fixture
def peer() -> Iterator[PeerHost]:
    """A hostile peer's web server: DID documents and scripted answers (peer_host.py)."""
    host = PeerHost().start()
    yield host
    host.stop()
