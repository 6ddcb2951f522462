"""Finding 19: a sender is not trusted to stop at the agreed volume. The consumer caps what it
writes by the agreement's byte limits and the disk space it keeps free: a push past the cap
gets 413, a pull past it is aborted, and the partial copy is removed either way."""

from __future__ import annotations

import contextlib
import http.client
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.harness import ConnectorProcess, negotiate, received_files, state_of, wait_for
from tests.security.hostile import PROVIDER_PID, HostileProvider

Guarded = Callable[..., ConnectorProcess]
KIB = 1024
AGREED = 256 * KIB
MORE = 4 * AGREED
PER_TRANSFER = {
    "permission": [
        {
            "action": "use",
            "constraint": [
                {
                    "leftOperand": "https://w3id.org/tdsc/v1/transferBytes",
                    "operator": "lteq",
                    "rightOperand": AGREED,
                }
            ],
        }
    ]
}


@pytest.fixture
def agreed(
    guarded: Guarded, tmp_path: Path
) -> Iterator[tuple[ConnectorProcess, ConnectorProcess, str]]:
    """An agreement granting AGREED bytes per transfer of a dataset with MORE bytes."""
    provider = guarded("provider")
    consumer = guarded("consumer")
    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(MORE))
    provider.publish(data, offers=[PER_TRANSFER])
    yield provider, consumer, negotiate(consumer, provider, "ds-1")


def push(endpoint: str, token: str, chunks: Iterator[bytes], length: int | None) -> int:
    """POST `chunks` to a push endpoint (chunked unless `length` is announced); the status."""
    where = urlsplit(endpoint)
    conn = http.client.HTTPConnection(where.hostname or "", where.port, timeout=30)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"}
    if length is not None:
        headers["Content-Length"] = str(length)
    # cut off mid-body is expected: the answer was already sent
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        conn.request(
            "POST", where.path, body=chunks, headers=headers, encode_chunked=length is None
        )
    try:
        return conn.getresponse().status
    finally:
        conn.close()


def blocks(total: int, size: int = 64 * KIB) -> Iterator[bytes]:
    for _ in range(total // size):
        yield os.urandom(size)


@pytest.mark.parametrize("announced", [False, True], ids=["chunked", "content-length"])
def test_a_push_past_the_agreed_bytes_gets_413_and_leaves_nothing(
    agreed: tuple[ConnectorProcess, ConnectorProcess, str], announced: bool
) -> None:
    provider, consumer, agreement_id = agreed
    # The provider goes quiet; whoever holds the push token sends more than was agreed.
    provider.stop()
    tp = consumer.api.post(
        "/api/v1/transfers", {"agreementId": agreement_id, "format": "HttpData-PUSH"}
    )
    address = tp["data_address"]
    props: dict[str, Any] = {p["name"]: p["value"] for p in address["endpointProperties"]}

    status = push(
        address["endpoint"], props["authorization"], blocks(MORE), MORE if announced else None
    )

    assert status == 413
    record = consumer.api.get(f"/api/v1/transfers/{tp['id']}")
    assert record["bytes"] == 0 and record["sha256"] is None and record["path"] is None
    wait_for("the partial copy to be removed", lambda: not received_files(consumer, tp["id"]))
    refused = [e["detail"] for e in record["timeline"] if e["direction"] == "refused"]
    assert refused and "agreed bytes per transfer" in refused[0]


def test_a_pull_past_the_agreed_bytes_is_aborted_and_removed(
    agreed: tuple[ConnectorProcess, ConnectorProcess, str],
) -> None:
    provider, consumer, agreement_id = agreed
    hostile = HostileProvider.take_over(provider)
    hostile.data_body = os.urandom(MORE)
    try:
        cid = consumer.api.post("/api/v1/transfers", {"agreementId": agreement_id})["id"]
        wait_for(
            "the consumer to learn the provider's pid",
            lambda: consumer.api.get(f"/api/v1/transfers/{cid}")["provider_pid"] == PROVIDER_PID,
        )
        status, body = hostile.start_pull(consumer, cid, hostile.data_url)
        assert status == 200, body
        record = state_of(consumer, "transfers", cid, "TERMINATED")
        assert "agreed bytes per transfer" in record["reason"][0]
        assert record["bytes"] == 0 and record["path"] is None
        assert not received_files(consumer, cid)
    finally:
        hostile.stop()


def test_a_push_that_would_fill_the_disk_gets_413(guarded: Guarded, tmp_path: Path) -> None:
    """The free-disk bound: a consumer that must keep more free than any disk has refuses even
    a push within the agreed bytes, naming the disk."""
    provider = guarded("provider")
    consumer = guarded("consumer", receive_free_disk_bytes=str(10**18))
    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(MORE))
    provider.publish(data, offers=[PER_TRANSFER])
    agreement_id = negotiate(consumer, provider, "ds-1")
    provider.stop()  # the test pushes itself, with the token the consumer hands out
    tp = consumer.api.post(
        "/api/v1/transfers", {"agreementId": agreement_id, "format": "HttpData-PUSH"}
    )
    address = tp["data_address"]
    props: dict[str, Any] = {p["name"]: p["value"] for p in address["endpointProperties"]}

    status = push(address["endpoint"], props["authorization"], blocks(64 * KIB), None)

    assert status == 413
    record = consumer.api.get(f"/api/v1/transfers/{tp['id']}")
    refused = [e["detail"] for e in record["timeline"] if e["direction"] == "refused"]
    assert refused and "disk space kept free" in refused[0], refused
    wait_for("the partial copy to be removed", lambda: not received_files(consumer, tp["id"]))
