"""Probes, Prometheus metrics and JSON logs of real connector processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from connector.observability import Health
from tests.harness import ConnectorProcess, negotiate


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def metrics(node: ConnectorProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the node's /metrics, keyed by name and sorted labels."""
    status, headers, body = fetch(
        f"http://127.0.0.1:{node.management_port}/metrics",
        {"X-Api-Key": str(node.settings["api_key"])},
    )
    assert status == 200, body
    assert headers["Content-Type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def test_probes_answer_without_credentials(provider: ConnectorProcess) -> None:
    status, _, body = fetch(provider.base_url + "/healthz")
    assert (status, json.loads(body)) == (200, {"status": "alive"})
    status, _, body = fetch(provider.base_url + "/readyz")
    assert status == 200
    assert json.loads(body) == {
        "status": "ready",
        "checks": {"store": "ok", "policies": "ok", "outbox": "ok", "disk": "ok"},
    }


def test_container_healthcheck_probe(provider: ConnectorProcess) -> None:
    """The image's HEALTHCHECK finds the listener from the same configuration as the server."""

    def probe(path: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "connector.observability.probe", path],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "CONNECTOR_CONFIG": str(provider.config)},
        )

    assert probe("readyz").returncode == 0
    assert json.loads(probe("healthz").stdout) == {"status": "alive"}
    provider.stop()
    down = probe("healthz")
    assert down.returncode == 1
    assert "refused" in down.stderr


def test_metrics_need_the_api_key(provider: ConnectorProcess) -> None:
    status, _, _ = fetch(f"http://127.0.0.1:{provider.management_port}/metrics")
    assert status == 401
    status, _, _ = fetch(provider.base_url + "/metrics")
    assert status == 404  # not on the public listener


def test_metrics_move_with_a_negotiation_and_a_transfer(
    provider: ConnectorProcess, consumer: ConnectorProcess, payload: Path
) -> None:
    finalized = ("connector_negotiations", (("role", "provider"), ("state", "FINALIZED")))
    before = metrics(provider)
    assert before[("connector_store_up", ())] == 1
    assert before[finalized] == 0
    assert before[("connector_transfer_bytes_total", (("role", "provider"),))] == 0
    assert before[("connector_metering_records_total", ())] >= 0
    assert before[("connector_deletion_duties", (("state", "pending"),))] == 0

    provider.publish(payload)
    agreement_id = negotiate(consumer, provider, "ds-1")
    tp = consumer.api.post("/api/v1/transfers", {"agreementId": agreement_id})
    done = consumer.api.wait_state("transfers", tp["id"], {"COMPLETED"}, timeout=30)
    provider.api.wait_state("transfers", done["provider_pid"], {"COMPLETED"}, timeout=30)

    size = payload.stat().st_size
    after = metrics(provider)
    assert after[finalized] == 1
    assert after[("connector_transfers", (("role", "provider"), ("state", "COMPLETED")))] == 1
    assert after[("connector_transfer_bytes_total", (("role", "provider"),))] == size
    allowed = [
        v for (name, labels), v in after.items()
        if name == "connector_policy_decisions_total" and ("result", "allow") in labels
    ]  # fmt: skip
    assert sum(allowed) >= 2  # at least the negotiation and the transfer start
    assert after[("connector_metering_records_total", ())] >= 2  # at least start and complete
    # the store's writer committed what the negotiation and the transfer wrote
    commits = after[("connector_store_commits_total", ())]
    assert commits > before[("connector_store_commits_total", ())]
    assert after[("connector_store_write_units_total", ())] >= commits
    mine = metrics(consumer)
    assert mine[("connector_negotiations", (("role", "consumer"), ("state", "FINALIZED")))] == 1
    assert mine[("connector_transfer_bytes_total", (("role", "consumer"),))] == size
    assert mine[("process_resident_memory_bytes", ())] > 0


def test_json_logs_name_the_process(
    tmp_path: Path, provider: ConnectorProcess, payload: Path
) -> None:
    consumer = ConnectorProcess(tmp_path, "consumer-json")
    consumer.set(log_format="json")
    consumer.env["CONNECTOR_LOG_LEVEL"] = "DEBUG"
    consumer.start()
    try:
        provider.publish(payload)
        agreement_id = negotiate(consumer, provider, "ds-1")
        negotiation_id = consumer.api.get(f"/api/v1/agreements/{agreement_id}")["negotiation_id"]
    finally:
        consumer.stop()
    text = consumer.log_path.read_text().splitlines()
    lines = [json.loads(x) for x in text if x[:1] == "{"]
    assert len(lines) == len([x for x in text if x.strip()]), "every line is JSON"
    assert any(line["message"] == f"ready: {consumer.did}" for line in lines)
    assert any("listening" in line["message"] for line in lines)
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    about = [line for line in lines if line.get("process_id") == negotiation_id]
    assert any("ContractRequestMessage" in line["message"] for line in about)


class _Node:
    """A connector as readiness sees it, before its outbox worker runs."""

    runtime: Any = None
    policy: Any = None
    outbox_running = False


async def test_readyz_says_what_is_missing_and_nothing_more() -> None:
    app = web.Application()
    Health(_Node()).add_to(app)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/readyz")
        assert resp.status == 503
        assert await resp.json() == {
            "status": "not ready",
            "checks": {
                "store": "failing",
                "policies": "failing",
                "outbox": "failing",
                "disk": "failing",
            },
        }
        assert (await client.get("/healthz")).status == 200
