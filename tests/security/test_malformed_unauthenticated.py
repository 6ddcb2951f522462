"""Finding 22: malformed requests from anyone (non-UTF-8 header values, a body with a broken
gzip encoding, an offset beyond any integer column, a body that is not JSON) were answered
with 500 and a logged traceback. Each must get a clean 4xx (a DSP error body on DSP paths, a
problem document elsewhere) and cost at most one log line, never a traceback.

Requests go over raw sockets, because HTTP client libraries refuse to send such bytes; each
is read to the end of the connection (Connection: close), so the connector has finished with
it, log line included, when the test looks at the log."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from connector.identity import access
from connector.identity import keys as keyfile
from connector.identity.tokens import TokenIssuer
from tests.harness import ConnectorProcess

DSP = "/dsp/2025-1"
REPEAT = 3


@dataclass
class Nodes:
    provider: ConnectorProcess
    consumer: ConnectorProcess


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nodes]:
    root = tmp_path_factory.mktemp("malformed")
    provider = ConnectorProcess(root, "provider").start()
    consumer = ConnectorProcess(root, "consumer").start()
    yield Nodes(provider, consumer)
    consumer.stop()
    provider.stop()


def exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send `raw`, read until the connector closes the connection; status, headers, body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def request(method: str, path: bytes, headers: dict[str, bytes | str], body: bytes = b"") -> bytes:
    lines = [method.encode() + b" " + path + b" HTTP/1.1", b"Host: 127.0.0.1"]
    for name, value in headers.items():
        lines.append(
            name.encode() + b": " + (value if isinstance(value, bytes) else value.encode())
        )
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}".encode())
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def token(sender: ConnectorProcess, receiver: ConnectorProcess) -> str:
    pair = keyfile.load(sender.dir / "keys" / "private.pem")
    return "Bearer " + TokenIssuer(sender.did, pair, 120).issue(receiver.did)


JSON = {"Content-Type": "application/json"}
GZIP = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
NOT_GZIP = b"\x1f\x8b\x08\x00 this is no deflate stream"
NOT_JSON = b"\xff{not json"
HUGE = "1" + "0" * 40
DEEP = b"[" * 100_000 + b"]" * 100_000


@dataclass
class Case:
    listener: str  # "public" or "management"
    method: str
    path: str | bytes
    headers: dict[str, bytes | str]
    body: bytes
    status: int
    kind: str  # "dsp", "problem" or "any"
    signed: bool = False  # a valid token of the consumer goes in Authorization
    api_key: bool = False
    dcp_access: bool = False  # the provider's own DCP access token, as a verifier presents it


CASES = {
    "dsp-authorization-not-utf8": Case(
        "public", "POST", f"{DSP}/catalog/request",
        {**JSON, "Authorization": b"Bearer \xff\xfe\xfa"}, b"{}", 400, "dsp",
    ),
    "data-plane-authorization-not-utf8": Case(
        "public", "GET", "/data/pull/urn:uuid:x", {"Authorization": b"Bearer \xc3\x28"}, b"",
        400, "problem",
    ),
    "management-api-key-not-utf8": Case(
        "management", "GET", "/api/v1/datasets", {"X-Api-Key": b"\xff\xfe"}, b"", 400, "problem"
    ),
    "dsp-bad-gzip-unauthenticated": Case(
        "public", "POST", f"{DSP}/catalog/request", GZIP, NOT_GZIP, 401, "dsp"
    ),
    "dsp-bad-gzip-signed": Case(
        "public", "POST", f"{DSP}/catalog/request", GZIP, NOT_GZIP, 400, "dsp", signed=True
    ),
    "push-bad-gzip": Case(
        "public", "POST", "/data/push/urn:uuid:x", {"Content-Encoding": "gzip"}, NOT_GZIP, 404,
        "problem",
    ),
    "management-bad-gzip": Case(
        "management", "POST", "/api/v1/datasets", GZIP, NOT_GZIP, 400, "problem", api_key=True
    ),
    "management-offset-1e40": Case(
        "management", "GET", f"/api/v1/negotiations?offset={HUGE}", {}, b"", 400, "problem",
        api_key=True,
    ),
    "management-transfers-offset-1e40": Case(
        "management", "GET", f"/api/v1/transfers?limit=5&offset={HUGE}", {}, b"", 400,
        "problem", api_key=True,
    ),
    "dsp-not-json-unauthenticated": Case(
        "public", "POST", f"{DSP}/catalog/request", JSON, NOT_JSON, 401, "dsp"
    ),
    "dsp-not-json-signed": Case(
        "public", "POST", f"{DSP}/catalog/request", JSON, NOT_JSON, 400, "dsp", signed=True
    ),
    "dcp-not-json": Case(
        "public", "POST", "/dcp/v1/presentations/query", JSON, NOT_JSON, 401, "any"
    ),
    "dcp-not-json-with-access-token": Case(
        "public", "POST", "/dcp/v1/presentations/query", JSON, NOT_JSON, 400, "problem",
        dcp_access=True,
    ),
    "dcp-nested-too-deeply-with-access-token": Case(
        "public", "POST", "/dcp/v1/presentations/query", JSON, DEEP, 400, "problem",
        dcp_access=True,
    ),
    "dsp-nested-too-deeply-signed": Case(
        "public", "POST", f"{DSP}/catalog/request", JSON, DEEP, 400, "dsp", signed=True
    ),
    "management-not-json": Case(
        "management", "POST", "/api/v1/datasets", JSON, NOT_JSON, 400, "problem", api_key=True
    ),
    "raw-byte-in-path": Case(
        "public", "GET", f"{DSP}/negotiations/".encode() + b"\xff\xfe", {}, b"", 400, "any"
    ),
}  # fmt: skip


def _raw(case: Case, nodes: Nodes) -> tuple[int, bytes]:
    headers = dict(case.headers)
    if case.signed:
        headers["Authorization"] = token(nodes.consumer, nodes.provider)
    if case.dcp_access:
        pair = keyfile.load(nodes.provider.dir / "keys" / "private.pem")
        grant = access.issue(pair, nodes.provider.did, nodes.consumer.did, 60)
        headers["Authorization"] = "Bearer " + grant
    if case.api_key:
        headers["X-Api-Key"] = str(nodes.provider.settings["api_key"])
    port = nodes.provider.public_port
    if case.listener == "management":
        port = nodes.provider.management_port
    path = case.path if isinstance(case.path, bytes) else case.path.encode()
    return port, request(case.method, path, headers, case.body)


def _check_body(case: Case, headers: dict[str, str], body: bytes) -> None:
    if case.kind == "any":
        return
    parsed: Any = json.loads(body)
    if case.kind == "dsp":
        assert headers["content-type"].startswith("application/json")
        assert parsed["@type"].endswith("Error") and parsed["code"] == str(case.status)
    else:
        assert headers["content-type"].startswith("application/problem+json")
        assert parsed["status"] == case.status


@pytest.mark.parametrize("name", list(CASES))
def test_malformed_request_gets_a_clean_4xx_and_one_log_line(nodes: Nodes, name: str) -> None:
    case = CASES[name]
    log: Path = nodes.provider.log_path
    before = log.stat().st_size
    for _ in range(REPEAT):
        port, raw = _raw(case, nodes)
        status, headers, body = exchange(port, raw)
        assert status == case.status, (name, body[:300])
        _check_body(case, headers, body)
        assert b"Traceback" not in body
    added = log.read_bytes()[before:].decode("utf-8", "replace")
    assert "Traceback" not in added, added
    assert added.count("\n") <= REPEAT, added
    # the connector still answers normally afterwards
    assert nodes.provider.api.get("/api/v1/datasets") is not None
