"""Issue 17, blocker 3: a dataset's source file deleted after publishing ends a transfer at
once with "source missing" on both sides (no retries), the provider warns in its log, and the
dataset listing flags the source."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.harness import (
    ConnectorProcess,
    entries,
    free_port,
    negotiate,
    received_size,
    sparse_file,
    state_of,
    wait_for,
    wait_http,
)


def _retries(record: dict[str, Any], since: int = 0) -> list[str]:
    """The retries on a transfer's timeline from entry `since` on."""
    return [str(e["detail"]) for e in record["timeline"][since:] if "retrying" in str(e["detail"])]


def test_a_transfer_of_a_deleted_source_is_refused_at_once_on_both_sides(
    provider: ConnectorProcess, consumer: ConnectorProcess, payload: Path
) -> None:
    provider.publish(payload, "ds-gone")
    assert provider.api.get("/api/v1/datasets")[0]["source_problem"] is None
    agreement_id = negotiate(consumer, provider, "ds-gone")
    payload.unlink()

    listed = {d["id"]: d for d in provider.api.get("/api/v1/datasets")}
    assert listed["ds-gone"]["source_problem"].startswith("source missing: file ")
    assert "source missing" in provider.api.get("/api/v1/datasets/ds-gone")["source_problem"]

    tp = consumer.api.post("/api/v1/transfers", {"agreementId": agreement_id})
    ended = consumer.api.wait_state("transfers", tp["id"], {"TERMINATED", "COMPLETED"}, 15)
    assert ended["state"] == "TERMINATED"
    assert "source missing" in " ".join(ended["reason"])
    assert "publish it again" in " ".join(ended["reason"])
    assert str(payload) not in " ".join(ended["reason"])  # the path is the provider's business
    assert _retries(ended) == []
    assert "source missing" in provider.log_path.read_text()


def test_a_source_deleted_while_a_pull_is_suspended_ends_it_on_resume(
    provider: ConnectorProcess, consumer: ConnectorProcess, tmp_path: Path
) -> None:
    big, _ = sparse_file(tmp_path / "big.bin", 1024 * 1024 * 1024)
    provider.publish(big, "ds-big")
    agreement_id = negotiate(consumer, provider, "ds-big")
    tp = consumer.api.post("/api/v1/transfers", {"agreementId": agreement_id})
    record = state_of(consumer, "transfers", tp["id"], "STARTED")
    pid, cid = record["provider_pid"], tp["id"]
    wait_for("bytes to arrive", lambda: received_size(consumer, cid) > 0)
    provider.api.post(f"/api/v1/transfers/{pid}/suspend", {"reason": "maintenance"})
    state_of(consumer, "transfers", cid, "SUSPENDED")
    for node, t in ((consumer, cid), (provider, pid)):
        wait_for(
            f"{node.name}'s data job to end",
            lambda n=node, t=t: n.api.get(f"/api/v1/transfers/{t}")["pending"] == [],
        )
    big.unlink()
    before = len(consumer.api.get(f"/api/v1/transfers/{cid}")["timeline"])

    consumer.api.post(f"/api/v1/transfers/{cid}/resume")
    mine = consumer.api.wait_state("transfers", cid, {"TERMINATED", "COMPLETED"}, 15)
    theirs = provider.api.wait_state("transfers", pid, {"TERMINATED", "COMPLETED"}, 15)
    assert mine["state"] == theirs["state"] == "TERMINATED"
    assert "source missing" in " ".join(theirs["reason"])
    assert "source missing" in " ".join(mine["reason"])
    assert entries(theirs, "failed", "source")
    assert _retries(mine, before) == []
    assert "source missing" in provider.log_path.read_text()


def test_an_upstream_that_failed_is_flagged_without_being_probed(
    provider: ConnectorProcess, consumer: ConnectorProcess, tmp_path: Path
) -> None:
    root = tmp_path / "upstream"
    root.mkdir()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/")
        url = f"{base}/readings.bin"
        provider.api.post(
            "/api/v1/datasets", {"id": "ds-up", "source": {"type": "http", "url": url}}
        )
        # not probed: nothing is known against it until a transfer reads it
        assert provider.api.get("/api/v1/datasets/ds-up")["source_problem"] is None
        agreement_id = negotiate(consumer, provider, "ds-up")
        tp = consumer.api.post("/api/v1/transfers", {"agreementId": agreement_id})
        consumer.api.wait_state("transfers", tp["id"], {"TERMINATED", "COMPLETED"}, 30)
        problem = provider.api.get("/api/v1/datasets/ds-up")["source_problem"]
        assert problem == "upstream unreachable: the last read answered HTTP 404"
    finally:
        server.terminate()
        server.wait(5)
