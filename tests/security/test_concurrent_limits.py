"""Concurrent transfer requests under one agreement cannot exceed its count or its volume.

Issue 13, finding 6: with `count lteq 1` or a 1 MiB lifetime volume, five concurrent transfer
requests were all accepted and 5 MiB went out. The provider now decides a transfer and
records it, with the bytes it reserves, atomically per agreement (TransferService.on_request
under the agreement's row lock), so the second request sees the first one's reservation: on
SQLite, on PostgreSQL, and across two replicas sharing one PostgreSQL database.

The count race is played by a consumer that sends raw TransferRequestMessages itself, all
released at once by a barrier (with the real consumer's key and DID), so each answer is seen
directly; the volume race goes through the real consumer's management API, so the data
really moves and the provider's records show how many bytes went out.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from connector.dataplane.streams import STATE_CHECK_SECONDS
from tests.harness import ConnectorProcess, GatedSource, negotiate, received_size, wait_for
from tests.test_bad_input import Reply, assert_dsp_error, http, token, tp_request
from tests.test_replicas import FAST, LoadBalancer, replicas

TDSC = "https://w3id.org/tdsc/v1/"
MIB = 1024 * 1024
RACERS = 6
ONCE = {"leftOperand": "count", "operator": "lteq", "rightOperand": 1}
ONE_MIB_IN_TOTAL = {"leftOperand": TDSC + "volumeBytes", "operator": "lteq", "rightOperand": MIB}
ENDS = ("COMPLETED", "TERMINATED")

T = TypeVar("T")


def _offer(constraint: dict[str, Any]) -> dict[str, Any]:
    return {"permission": [{"action": "use", "constraint": [constraint]}]}


def race(n: int, call: Callable[[int], T]) -> list[T]:
    """`call(0..n-1)` in n threads released at the same moment; their results in order."""
    barrier = threading.Barrier(n)
    results: dict[int, T] = {}
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait(timeout=30)
        try:
            results[i] = call(i)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert len(results) == n, "a racer did not finish"
    return [results[i] for i in range(n)]


def one_mib_file(tmp_path: Path) -> Path:
    path = tmp_path / "one-mib.bin"
    path.write_bytes(os.urandom(MIB))
    return path


def request_at_once(
    consumer: ConnectorProcess, provider: ConnectorProcess, urls: list[str], agreement: str
) -> list[Reply]:
    """RACERS raw TransferRequestMessages of the consumer, sent at once (round-robin over
    `urls`, the provider's DSP request endpoints); tokens and bodies are made beforehand."""
    tokens = [token(consumer, provider) for _ in range(RACERS)]
    bodies = [
        tp_request(agreement, f"urn:uuid:{uuid.uuid4()}", consumer.dsp) for _ in range(RACERS)
    ]
    return race(
        RACERS,
        lambda i: http(
            "POST", urls[i % len(urls)], bodies[i], headers={"Authorization": tokens[i]}
        ),
    )


def provider_transfers(provider: ConnectorProcess, agreement: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = provider.api.get("/api/v1/transfers?limit=1000")
    return [t for t in rows if t["agreement_id"] == agreement and t["role"] == "provider"]


def assert_one_accepted_by_count(replies: list[Reply]) -> None:
    accepted = [r for r in replies if r.status == 201]
    assert len(accepted) == 1, [(r.status, r.body) for r in replies]
    for reply in replies:
        if reply.status != 201:
            assert_dsp_error(reply, 400, "TransferError", "at most 1 transfer")


def assert_at_most_one_mib_went_out(
    consumer: ConnectorProcess, provider: ConnectorProcess, agreement: str
) -> None:
    """RACERS transfers through the consumer's management API at once (pull and push): one is
    accepted and delivers the whole MiB, the others are refused with the reason, and the
    provider's records (transfers and the signed metering chain) show at most 1 MiB sent."""
    formats = ("HttpData-PULL", "HttpData-PUSH")
    mine = race(
        RACERS,
        lambda i: consumer.api.post(
            "/api/v1/transfers", {"agreementId": agreement, "format": formats[i % 2]}
        ),
    )

    def ended(pid: str) -> dict[str, Any] | None:
        record: dict[str, Any] = consumer.api.get(f"/api/v1/transfers/{pid}")
        return record if record["state"] in ENDS else None

    done = [
        wait_for(f"consumer transfer {t['id']} to end", lambda t=t: ended(t["id"])) for t in mine
    ]
    completed = [t for t in done if t["state"] == "COMPLETED"]
    assert len(completed) == 1, [(t["state"], t["reason"]) for t in done]
    assert completed[0]["bytes"] == MIB
    for refused in (t for t in done if t["state"] != "COMPLETED"):
        assert refused["provider_pid"] is None, refused  # never accepted
        assert "volume" in " ".join(refused["reason"]), refused["reason"]

    theirs = wait_for(
        "the provider's transfers to end",
        lambda: (
            (rows := provider_transfers(provider, agreement))
            and all(t["state"] in ENDS for t in rows)
            and rows
        ),
    )
    assert len(theirs) == 1, theirs
    assert sum(t["bytes"] for t in theirs) == MIB
    chain = provider.api.get(f"/api/v1/agreements/{agreement}/metering")["chain"]
    # every record of the signed chain carries the length of the window it closes
    assert sum(line["record"]["length"] for line in chain) == MIB


# one provider, on SQLite or on PostgreSQL -------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def provider(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ConnectorProcess]:
    node = ConnectorProcess(tmp_path, "provider")
    if request.param == "postgresql":
        node.set(database_url=request.getfixturevalue("database_url"))
    yield node.start()
    node.stop()


def test_concurrent_requests_get_one_transfer_of_count_one(
    provider: ConnectorProcess, consumer: ConnectorProcess, payload: Path
) -> None:
    provider.publish(payload, "ds-once", offers=[_offer(ONCE)])
    agreement = negotiate(consumer, provider, "ds-once")
    url = f"{provider.dsp}/transfers/request"

    replies = request_at_once(consumer, provider, [url], agreement)

    assert_one_accepted_by_count(replies)
    assert len(provider_transfers(provider, agreement)) == 1
    # and later, one at a time, still none
    again = request_at_once(consumer, provider, [url], agreement)
    assert all(r.status == 400 for r in again), again


def test_concurrent_transfers_send_at_most_the_agreed_volume(
    provider: ConnectorProcess, consumer: ConnectorProcess, tmp_path: Path
) -> None:
    provider.publish(one_mib_file(tmp_path), "ds-volume", offers=[_offer(ONE_MIB_IN_TOTAL)])
    agreement = negotiate(consumer, provider, "ds-volume")

    assert_at_most_one_mib_went_out(consumer, provider, agreement)


# two provider replicas sharing one PostgreSQL database -----------------------------------------


@pytest.fixture
def cluster(tmp_path: Path, database_url: str) -> Iterator[list[ConnectorProcess]]:
    balancer = LoadBalancer()
    nodes = replicas(tmp_path, database_url, balancer)
    for node in nodes:
        node.start()
    yield nodes
    for node in nodes:
        node.stop()
    balancer.close()


@pytest.fixture
def replica_consumer(tmp_path: Path) -> Iterator[ConnectorProcess]:
    node = ConnectorProcess(tmp_path, "consumer")
    node.set(**FAST)
    yield node.start()
    node.stop()


def test_limits_hold_across_replicas(
    cluster: list[ConnectorProcess],
    replica_consumer: ConnectorProcess,
    payload: Path,
    tmp_path: Path,
) -> None:
    """Requests reach both replicas at once (raw ones addressed to each replica in turn, the
    consumer's through the load balancer); the shared database keeps both limits."""
    provider, consumer = cluster[0], replica_consumer
    provider.publish(payload, "ds-once", offers=[_offer(ONCE)])
    provider.publish(one_mib_file(tmp_path), "ds-volume", offers=[_offer(ONE_MIB_IN_TOTAL)])
    once = negotiate(consumer, provider, "ds-once")
    volume = negotiate(consumer, provider, "ds-volume")
    urls = [f"http://127.0.0.1:{r.public_port}/dsp/2025-1/transfers/request" for r in cluster]

    replies = request_at_once(consumer, provider, urls, once)

    assert_one_accepted_by_count(replies)
    assert len(provider_transfers(cluster[1], once)) == 1
    assert_at_most_one_mib_went_out(consumer, provider, volume)


# a stream broken off still counts ---------------------------------------------------------------


@pytest.fixture
def upstream() -> Iterator[GatedSource]:
    double = GatedSource(os.urandom(2 * MIB), MIB)
    yield double
    double.close()


@pytest.mark.parametrize("provider", ["sqlite"], indirect=True)
def test_a_pull_terminated_midway_still_counts_against_the_volume(
    provider: ConnectorProcess, consumer: ConnectorProcess, upstream: GatedSource
) -> None:
    """A consumer pulls half of a 2 MiB lifetime volume, terminates the transfer and asks
    again: the second transfer may send only the other half, as the provider records the
    bytes of a stream that broke off (it used to record none, and 3 MiB went out)."""
    volume = {"leftOperand": TDSC + "volumeBytes", "operator": "lteq", "rightOperand": 2 * MIB}
    provider.api.post(
        "/api/v1/datasets",
        {"id": "ds-up", "source": {"type": "http", "url": upstream.url},
         "offers": [_offer(volume)]},
    )  # fmt: skip
    agreement = negotiate(consumer, provider, "ds-up")
    first = consumer.api.post("/api/v1/transfers", {"agreementId": agreement})
    wait_for("the first MiB to arrive", lambda: received_size(consumer, first["id"]) >= MIB)
    arrived = time.monotonic()
    consumer.api.post(f"/api/v1/transfers/{first['id']}/terminate", {"reason": "enough"})
    theirs = wait_for(
        "the provider to stop serving",
        lambda: (
            (rows := provider_transfers(provider, agreement))
            and rows[0]["state"] == "TERMINATED"
            and rows
        ),
    )
    # The provider's stream looks at the transfer's state between chunks, at most every
    # STATE_CHECK_SECONDS (its last look was before the first MiB went out): once that long
    # has passed, the next chunk is checked, so the stream stops at exactly 1 MiB.
    wait_for(
        "the provider's next state check to be due",
        lambda: time.monotonic() - arrived > STATE_CHECK_SECONDS,
    )
    upstream.release.set()  # the provider's stream goes on and notices the termination
    pid = theirs[0]["id"]
    stopped = wait_for(
        "the provider to note where the pull stopped",
        lambda: (
            (tp := provider.api.get(f"/api/v1/transfers/{pid}"))
            and any("stopped serving" in e["detail"] for e in tp["timeline"])
            and tp
        ),
    )
    assert stopped["bytes"] == MIB

    second = consumer.api.post("/api/v1/transfers", {"agreementId": agreement})
    mine = wait_for(
        "the second transfer to be accepted",
        lambda: consumer.api.get(f"/api/v1/transfers/{second['id']}")["provider_pid"],
    )
    cut = wait_for(
        "the provider's second transfer to end",
        lambda: (tp := provider.api.get(f"/api/v1/transfers/{mine}"))["state"] in ENDS and tp,
    )
    assert cut["state"] == "TERMINATED" and cut["bytes"] == MIB, cut
    assert "volume limit" in " ".join(cut["reason"]), cut["reason"]
    chain = provider.api.get(f"/api/v1/agreements/{agreement}/metering")["chain"]
    assert sum(line["record"]["length"] for line in chain) == 2 * MIB
