"""Data plane: upstream HTTP sources, transfer-bound tokens, OpenAPI document."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from openapi_spec_validator import validate

from tests.harness import ConnectorProcess, free_port, negotiate, wait_http


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Test double for a participant's own backend: a plain HTTP file server."""
    root = tmp_path / "upstream"
    root.mkdir()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/")
    yield base, root
    proc.terminate()
    proc.wait(5)


@pytest.mark.parametrize("fmt", ["HttpData-PULL", "HttpData-PUSH"])
def test_upstream_http_source_streams_through(
    provider: ConnectorProcess,
    consumer: ConnectorProcess,
    upstream: tuple[str, Path],
    fmt: str,
) -> None:
    base, root = upstream
    blob = bytes(range(256)) * 9000
    (root / "readings.bin").write_bytes(blob)
    provider.api.post(
        "/api/v1/datasets",
        {"id": "ds-http", "source": {"type": "http", "url": f"{base}/readings.bin"}},
    )
    agreement_id = negotiate(consumer, provider, "ds-http")
    tp = consumer.api.post("/api/v1/transfers", {"agreementId": agreement_id, "format": fmt})
    done = consumer.api.wait_state("transfers", tp["id"], {"COMPLETED"}, timeout=30)
    assert done["bytes"] == len(blob)
    assert done["sha256"] == hashlib.sha256(blob).hexdigest()
    assert Path(done["path"]).read_bytes() == blob


def _pull(url: str, token: str) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_pull_token_is_bound_to_its_transfer_and_state(
    provider: ConnectorProcess, consumer: ConnectorProcess, payload: Path
) -> None:
    provider.publish(payload)
    agreement_id = negotiate(consumer, provider, "ds-1")
    first = consumer.api.post("/api/v1/transfers", {"agreementId": agreement_id})
    first = consumer.api.wait_state("transfers", first["id"], {"COMPLETED"}, timeout=30)
    second = consumer.api.post("/api/v1/transfers", {"agreementId": agreement_id})
    second = consumer.api.wait_state("transfers", second["id"], {"COMPLETED"}, timeout=30)

    def token_of(record: dict[str, object]) -> tuple[str, str]:
        address = record["data_address"]
        assert isinstance(address, dict)
        props = {p["name"]: p["value"] for p in address["endpointProperties"]}
        return str(address["endpoint"]), props["authorization"]

    url1, token1 = token_of(first)
    url2, _ = token_of(second)
    # A completed transfer serves no more data, even with its own valid token.
    status, body = _pull(url1, token1)
    assert status == 400 and b"COMPLETED" in body
    # A token of one transfer opens no other transfer.
    status, body = _pull(url2, token1)
    assert status == 401 and b"another transfer" in body
    status, _ = _pull(url1, token1[:-4] + "AAAA")
    assert status == 401
    status, _ = _pull(url1, "")
    assert status == 401


def test_openapi_document_is_valid_and_lists_routes(provider: ConnectorProcess) -> None:
    with urllib.request.urlopen(
        f"http://127.0.0.1:{provider.management_port}/api/v1/openapi.json", timeout=5
    ) as resp:
        doc = json.loads(resp.read())
    validate(doc)
    assert "/api/v1/negotiations/{id}" in doc["paths"]
    assert "requestBody" in doc["paths"]["/api/v1/transfers"]["post"]


def test_a_push_left_behind_by_a_crash_is_removed_at_start(consumer: ConnectorProcess) -> None:
    """A push stopped by a crash leaves its staged file; the next start removes it once it
    has not grown for ten minutes, and leaves a recent one (another push may still write it)."""
    consumer.stop()
    received = consumer.dir / "received"
    received.mkdir(exist_ok=True)
    stale, recent = received / "a.bin.1.part", received / "b.bin.2.part"
    for part in (stale, recent):
        part.write_bytes(b"x" * 1000)
    old = time.time() - 3600
    os.utime(stale, (old, old))
    consumer.start()
    assert not stale.exists() and recent.exists()
