"""A push destination that accepts the connection and then never reads: aiohttp has no read
timeout while it writes a request body, so without a deadline of our own the provider's push
job (and, with enough of them, its whole outbox) would wait for ever."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness import ConnectorProcess, wait_for
from tests.security.hostile import CONTEXT
from tests.security.peer import HostilePeer, finalize_as_consumer


class Tarpit:
    """A test double: a listener on 127.0.0.1 that accepts and never reads a byte."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.held: list[socket.socket] = []
        self.accepted = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.held.append(conn)
            self.accepted.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/push"

    def close(self) -> None:
        self.listener.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def tarpit() -> Iterator[Tarpit]:
    pit = Tarpit()
    yield pit
    pit.close()


def test_a_push_into_a_destination_that_never_reads_is_cut(
    guarded: Callable[..., ConnectorProcess],
    mallory: HostilePeer,
    tmp_path: Path,
    tarpit: Tarpit,
) -> None:
    big = tmp_path / "big.bin"
    with big.open("wb") as fh:
        fh.truncate(64 * 1024 * 1024)  # more than any socket buffers on the way hold
    provider = guarded("provider", stream_idle_seconds="2", retry_max_attempts="1")
    provider.publish(big)
    _, _, agreement = finalize_as_consumer(provider, mallory)

    request = {
        "@context": CONTEXT,
        "@type": "TransferRequestMessage",
        "consumerPid": "urn:uuid:stalling-consumer",
        "agreementId": agreement["@id"],
        "format": "HttpData-PUSH",
        "callbackAddress": mallory.dsp,
        "dataAddress": {
            "@type": "DataAddress",
            "endpointType": "https://w3id.org/idsa/v4.1/HTTP",
            "endpoint": tarpit.url,
        },
    }
    reply = mallory.send(provider, "/transfers/request", request)
    assert reply.status == 201, reply
    assert tarpit.accepted.wait(30), "the provider never connected to the destination"

    def stalled() -> str | None:
        [tp] = provider.api.get("/api/v1/transfers")
        record = provider.api.get(f"/api/v1/transfers/{tp['id']}")
        lines = [str(e.get("detail") or "") for e in record["timeline"]] + record["reason"]
        return next((line for line in lines if "stalled" in line), None)

    line = wait_for("the stalled push to be cut", stalled, timeout=60)
    assert "took nothing for 2 s" in line
