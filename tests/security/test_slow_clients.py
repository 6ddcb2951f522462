"""Finding 14: slow clients were never timed out (10 of 10 partial requests still open after
130 s). Both listeners must close a connection whose headers do not arrive in time, answer 408
to a body that stops arriving, and cap the connections one client address may hold, while
other clients are still served.

Each wait is a read of the socket with a bounded timeout: the connector closing the
connection is the condition, never the passing of time."""

from __future__ import annotations

import select
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ConnectorProcess, wait_for
from tests.test_tls import make_pki, tls_node

TIMEOUT = 1.5  # the configured header and body timeouts
BOUND = 15.0  # far longer than TIMEOUT, far shorter than aiohttp's default 3630 s
CAP = 4


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConnectorProcess]:
    node = ConnectorProcess(tmp_path_factory.mktemp("slow"), "provider")
    node.set(
        http_header_timeout_seconds=str(TIMEOUT),
        http_body_timeout_seconds=str(TIMEOUT),
        max_connections_per_client=str(CAP),
    )
    node.start()
    yield node
    node.stop()


def port_of(node: ConnectorProcess, listener: str) -> int:
    return node.public_port if listener == "public" else node.management_port


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=BOUND, source_address=(source, 0))
    return sock


def closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Read until the peer closes the connection or `seconds` pass; (closed, bytes read)."""
    deadline = time.monotonic() + seconds
    received = b""
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([sock], [], [], left)
        if not readable:
            break
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return True, received
        if not chunk:
            return True, received
        received += chunk
    return False, received


@pytest.mark.parametrize("listener", ["public", "management"])
def test_headers_sent_one_byte_at_a_time_are_cut(strict: ConnectorProcess, listener: str) -> None:
    head = (
        f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: {'x' * 400}\r\n"
        "Accept: */*\r\n\r\n"
    ).encode()
    started = time.monotonic()
    with connect(port_of(strict, listener)) as sock:
        for i in range(len(head) - 2):  # never the final CRLF
            try:
                sock.sendall(head[i : i + 1])
            except (BrokenPipeError, ConnectionResetError):
                break
            # the client's pace: one byte per 0.1 s, stopping as soon as the connector closes
            closed, _ = closed_within(sock, 0.1)
            if closed:
                break
            assert time.monotonic() - started < BOUND, "a slow header was never cut"
        else:
            raise AssertionError("the whole header went out without the connection closing")
    assert time.monotonic() - started >= TIMEOUT * 0.9


@pytest.mark.parametrize("listener", ["public", "management"])
def test_a_stalled_body_gets_408_and_is_cut(strict: ConnectorProcess, listener: str) -> None:
    if listener == "public":
        path, auth = "/dsp/2025-1/catalog/request", ""
    else:
        path, auth = "/api/v1/datasets", f"X-Api-Key: {strict.settings['api_key']}\r\n"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\n"
        "Content-Length: 100000\r\n\r\n"
    ).encode()
    started = time.monotonic()
    with connect(port_of(strict, listener)) as sock:
        sock.sendall(head + b'{"@context": ')
        closed, answer = closed_within(sock, BOUND)
    assert closed, "a stalled body was never cut"
    status = int(answer.split(b" ", 2)[1]) if answer else None
    if listener == "management":
        assert status == 408, answer[:300]  # the handler was waiting for the body
    else:
        assert status == 401, answer[:300]  # refused before the body; the rest not awaited
    assert time.monotonic() - started < BOUND


def _served(sock: socket.socket, request: bytes) -> bool:
    sock.sendall(request)
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(4096)
        if not chunk:
            return False
        answer += chunk
    return answer.startswith(b"HTTP/1.1 200")


@pytest.fixture
def capped(tmp_path: Path) -> Iterator[ConnectorProcess]:
    # the default header timeout: the held connections stay open for the whole test
    node = ConnectorProcess(tmp_path, "provider")
    node.set(max_connections_per_client=str(CAP))
    node.start()
    yield node
    node.stop()


@pytest.mark.parametrize("listener", ["public", "management"])
def test_one_client_over_the_cap_is_refused_another_is_served(
    capped: ConnectorProcess, listener: str
) -> None:
    port = port_of(capped, listener)
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    if listener == "management":
        key = str(capped.settings["api_key"]).encode()
        request = (
            b"GET /api/v1/datasets HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Api-Key: " + key + b"\r\n\r\n"
        )
    held = [connect(port) for _ in range(CAP)]
    try:
        # each held connection is known to the connector: it answered a request on it
        for sock in held:
            assert _served(sock, request)
        with connect(port) as extra:
            closed, answer = closed_within(extra, BOUND)
        assert closed and answer.startswith(b"HTTP/1.1 503"), answer[:200]
        # another client address is still served
        with connect(port, source="127.0.0.2") as other:
            assert _served(other, request)
        # and a connection freed lets the first client in again
        held.pop().close()

        def admitted() -> bool:
            with connect(port) as again:
                try:
                    return _served(again, request)
                except (ConnectionResetError, BrokenPipeError):
                    return False

        wait_for("a connection after one was freed", admitted)
    finally:
        for sock in held:
            sock.close()


def test_the_https_listener_cuts_a_stalled_handshake_and_a_slow_header(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    node = tls_node(tmp_path, "provider", pki)
    node.set(http_header_timeout_seconds=str(TIMEOUT), http_body_timeout_seconds=str(TIMEOUT))
    node.start()
    try:
        # a TCP connection that never starts its TLS handshake
        started = time.monotonic()
        with connect(node.public_port) as sock:
            closed, _ = closed_within(sock, BOUND)
        assert closed, "a stalled TLS handshake was never cut"
        assert TIMEOUT * 0.9 <= time.monotonic() - started < BOUND
        # a finished handshake, then headers that never end
        context = ssl.create_default_context(cafile=str(pki.ca))
        started = time.monotonic()
        with context.wrap_socket(connect(node.public_port), server_hostname="127.0.0.1") as tls:
            tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            closed, _ = closed_within(tls, BOUND)
        assert closed, "a slow header over HTTPS was never cut"
        assert TIMEOUT * 0.9 <= time.monotonic() - started < BOUND
    finally:
        node.stop()
