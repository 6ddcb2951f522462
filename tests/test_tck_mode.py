"""TCK mode: seeded data for the TCK, its consumer webhooks, loopback only, off by default."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.harness import ConnectorProcess, cli

TCK_AUTH = "tck-test-authorization-value"
DSP_CONTEXT = ["https://w3id.org/dspace/2025/1/context.jsonld"]


def _post(url: str, body: Any, authorization: str | None = TCK_AUTH) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    req = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


@pytest.fixture
def tck_node(tmp_path: Path) -> Iterator[ConnectorProcess]:
    node = ConnectorProcess(tmp_path, "cut")
    node.set(tck_mode="true", tck_authorization=TCK_AUTH)
    node.start()
    yield node
    node.stop()


class FakeTck:
    """Stands in for the TCK as provider: records DSP messages, acknowledges requests."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.received.append((self.path, body))
                ack = {
                    "@context": DSP_CONTEXT,
                    "@type": "ContractNegotiation",
                    "providerPid": "urn:uuid:tck-provider-1",
                    "consumerPid": body.get("consumerPid", ""),
                    "state": "REQUESTED",
                }
                data = json.dumps(ack).encode()
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_seeded_catalog_for_the_tck_authorization(tck_node: ConnectorProcess) -> None:
    msg = {"@context": DSP_CONTEXT, "@type": "CatalogRequestMessage"}
    status, catalog = _post(tck_node.dsp + "/catalog/request", msg)
    assert status == 200, catalog
    datasets = {d["@id"]: d for d in catalog["dataset"]}
    assert {"ACN0101", "ACN0304", "CAT0101", "CAT0102"} <= set(datasets)
    assert datasets["ACN0101"]["hasPolicy"][0]["@id"] == "CD123:ACN0101:456"
    assert "CAT0103" not in datasets  # the TCK's "unknown dataset" case

    status, _ = _post(tck_node.dsp + "/catalog/request", msg, authorization="someone-else")
    assert status == 401


def test_webhook_starts_a_negotiation_as_consumer(tck_node: ConnectorProcess) -> None:
    tck = FakeTck()
    try:
        body = {
            "providerId": "TCK_PARTICIPANT",
            "offerId": "urn:offer:ACNC0201",
            "datasetId": "ACNC0201",
            "connectorAddress": tck.url,
        }
        status, _ = _post(tck_node.base_url + "/tck/negotiations/requests", body, "wrong")
        assert status == 404
        status, started = _post(tck_node.base_url + "/tck/negotiations/requests", body)
        assert status == 201, started

        deadline = time.monotonic() + 10
        while not tck.received and time.monotonic() < deadline:
            time.sleep(0.05)
        path, request = tck.received[0]
        assert path == "/negotiations/request"
        assert request["@type"] == "ContractRequestMessage"
        assert request["consumerPid"] == started["id"]
        assert request["offer"]["@id"] == "urn:offer:ACNC0201"
        assert request["offer"]["target"] == "ACNC0201"
        assert request["callbackAddress"] == tck_node.dsp

        neg = tck_node.api.wait_state("negotiations", started["id"], {"REQUESTED"}, timeout=10)
        deadline = time.monotonic() + 10
        while neg.get("provider_pid") is None and time.monotonic() < deadline:
            time.sleep(0.05)
            neg = tck_node.api.get(f"/api/v1/negotiations/{started['id']}")
        assert neg["provider_pid"] == "urn:uuid:tck-provider-1"
        assert neg["counterparty_id"] == "TCK_PARTICIPANT"
    finally:
        tck.close()


def test_tck_mode_refuses_a_non_loopback_bind(tmp_path: Path) -> None:
    done = cli(
        "init",
        "--dir",
        str(tmp_path / "open"),
        "--public-host",
        "0.0.0.0",
        "--public-url",
        "http://127.0.0.1:8181",
        "--dev",
    )
    assert done.returncode == 0, done.stderr
    config = str(tmp_path / "open" / "connector.toml")
    env = {"CONNECTOR_TCK_MODE": "true", "CONNECTOR_TCK_AUTHORIZATION": TCK_AUTH}
    served = cli("--config", config, "serve", env=env)
    assert served.returncode != 0
    assert "tck_mode binds loopback only" in served.stderr
    assert "public_host" in served.stderr

    missing = cli("--config", config, "serve", env={"CONNECTOR_TCK_MODE": "true"})
    assert missing.returncode != 0
    assert "tck_authorization" in missing.stderr


def test_tck_mode_is_off_by_default(tmp_path: Path) -> None:
    node = ConnectorProcess(tmp_path, "plain")
    node.set(tck_authorization=TCK_AUTH)  # a value alone does not turn TCK mode on
    node.start()
    try:
        msg = {"@context": DSP_CONTEXT, "@type": "CatalogRequestMessage"}
        status, body = _post(node.dsp + "/catalog/request", msg)
        assert status == 401, body
        assert node.api.get("/api/v1/datasets") == []
        status, _ = _post(node.base_url + "/tck/negotiations/requests", {})
        assert status == 404
    finally:
        node.stop()
