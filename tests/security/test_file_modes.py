"""Finding 25: what a connector keeps on disk is its own user's only (data_dir 0700; the
database, its WAL and shared-memory files, the key and received data 0600), whatever the
umask; and the timeline the management API shows holds no data-plane bearer token."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ConnectorProcess, negotiate

FORMATS = ("HttpData-PULL", "HttpData-PUSH")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[ConnectorProcess, ConnectorProcess]]:
    """`connector init` and `serve` under umask 000: any file left to the umask is 0666."""
    started: list[ConnectorProcess] = []
    old = os.umask(0)
    try:
        for name in ("provider", "consumer"):
            started.append(ConnectorProcess(tmp_path, name).start())
    finally:
        os.umask(old)
    yield started[0], started[1]
    for node in started:
        node.stop()


def test_files_are_private_and_the_timeline_holds_no_bearer_token(
    nodes: tuple[ConnectorProcess, ConnectorProcess], payload: Path
) -> None:
    provider, consumer = nodes
    provider.publish(payload)
    agreement_id = negotiate(consumer, provider, "ds-1")
    done = []
    for fmt in FORMATS:
        tp = consumer.api.post("/api/v1/transfers", {"agreementId": agreement_id, "format": fmt})
        done.append(consumer.api.wait_state("transfers", tp["id"], {"COMPLETED"}, timeout=30))

    for node in (provider, consumer):
        for directory in (node.dir, node.dir / "keys"):
            assert mode(directory) == 0o700, directory
        files = [node.dir / "connector.toml", node.dir / "keys" / "private.pem"]
        database = node.dir / "connector.db"
        files += [p for p in (database, *database.parent.glob("connector.db-*")) if p.exists()]
        assert database.with_name("connector.db-wal") in files
        for path in files:
            assert mode(path) == 0o600, (path, oct(mode(path)))
    received = consumer.dir / "received"
    assert mode(received) == 0o700
    copies = [Path(record["path"]) for record in done]
    assert len(copies) == 2 and all(path.parent == received for path in copies)
    for path in copies:
        assert mode(path) == 0o600, (path, oct(mode(path)))

    tokens = []
    for record in done:
        props = {p["name"]: p["value"] for p in record["data_address"]["endpointProperties"]}
        tokens.append(props["authorization"])
    assert all(len(token) > 20 for token in tokens)
    timelines = ""
    for record in done:
        mine = consumer.api.get(f"/api/v1/transfers/{record['id']}")
        theirs = provider.api.get(f"/api/v1/transfers/{record['provider_pid']}")
        timelines += json.dumps(mine["timeline"]) + json.dumps(theirs["timeline"])
    assert "[redacted]" in timelines  # the DataAddress is shown, its token is not
    for token in tokens:
        assert token not in timelines
