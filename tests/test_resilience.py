"""Crashes (SIGKILL) and restarts of either side, mid-negotiation and mid-transfer.

The durable outbox must carry every process to its end: messages are retried with
backoff while the peer is down, interrupted jobs resume at start-up, and a transfer
cut off half-way is delivered whole. Timing is made deterministic by waiting for
evidence (timeline entries, bytes on disk) before each kill, and by a small TCP proxy
that can refuse connections or swallow answers.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import (
    ConnectorProcess,
    entries,
    file_sha256,
    negotiate,
    received_size,
    sparse_file,
    state_of,
    wait_for,
)

FAST_RETRY = {"retry_base_seconds": "0.2", "retry_max_seconds": "1"}
USE = {"action": "use"}
PURPOSE = {
    "action": "use",
    "constraint": [{"leftOperand": "purpose", "operator": "eq", "rightOperand": "research"}],
}
BIG = 300 * 1024 * 1024


def timeline_has(
    node: ConnectorProcess, kind: str, pid: str, direction: str, message_type: str
) -> Callable[[], list[dict[str, Any]]]:
    return lambda: entries(node.api.get(f"/api/v1/{kind}/{pid}"), direction, message_type)


def node(tmp_path: Path, name: str, *extra_init: str) -> ConnectorProcess:
    process = ConnectorProcess(tmp_path, name, extra_init=extra_init)
    process.set(**FAST_RETRY)
    return process


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[ConnectorProcess, ConnectorProcess]]:
    provider = node(tmp_path, "provider").start()
    consumer = node(tmp_path, "consumer").start()
    yield provider, consumer
    consumer.stop()
    provider.stop()


class Proxy:
    """A TCP proxy in front of one connector's public port.

    mode "pass" forwards both ways; "refuse" cuts every connection (the peer looks down);
    "hold" forwards requests but swallows the answers (a reply lost on the way back).
    """

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.target = 0
        self.mode = "pass"
        self.lock = threading.Lock()
        self.open: list[socket.socket] = []
        self.closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def set(self, mode: str) -> None:
        with self.lock:
            self.mode = mode
            if mode == "refuse":
                for s in self.open:
                    self._shut(s)
                self.open.clear()

    @staticmethod
    def _shut(s: socket.socket) -> None:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        s.close()

    def _accept(self) -> None:
        while not self.closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                if self.mode == "refuse":
                    self._shut(client)
                    continue
                try:
                    server = socket.create_connection(("127.0.0.1", self.target), timeout=5)
                except OSError:
                    self._shut(client)
                    continue
                server.settimeout(None)
                self.open += [client, server]
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, answers: bool) -> None:
        try:
            while data := src.recv(65536):
                if answers and self.mode == "hold":
                    continue
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self._shut(dst)

    def close(self) -> None:
        self.closing = True
        self.listener.close()
        self.set("refuse")


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    p = Proxy()
    yield p
    p.close()


# negotiation --------------------------------------------------------------------------------


def test_provider_down_when_the_negotiation_starts(
    nodes: tuple[ConnectorProcess, ConnectorProcess], payload: Path
) -> None:
    provider, consumer = nodes
    provider.publish(payload)
    catalog = consumer.api.post("/api/v1/catalog/request", {"counterPartyAddress": provider.dsp})
    offer = catalog["dataset"][0]["hasPolicy"][0]
    provider.kill()

    neg = consumer.api.post(
        "/api/v1/negotiations",
        {"counterPartyAddress": provider.dsp, "datasetId": "ds-1", "offer": offer},
    )
    cid = neg["id"]
    failures = timeline_has(consumer, "negotiations", cid, "failed", "ContractRequestMessage")
    failed = wait_for("two failed attempts", lambda: len(f := failures()) >= 2 and f)
    record = consumer.api.get(f"/api/v1/negotiations/{cid}")
    assert record["state"] == "REQUESTED"
    assert record["pending"] == ["ContractRequestMessage"]
    assert failed[0]["detail"].startswith("attempt 1 failed, retrying in ")
    assert failed[1]["detail"].startswith("attempt 2 failed, retrying in ")
    assert f"POST {provider.dsp}/negotiations/request" in failed[0]["detail"]

    provider.start()
    done = state_of(consumer, "negotiations", cid, "FINALIZED")
    theirs = state_of(provider, "negotiations", done["provider_pid"], "FINALIZED")
    assert done["reason"] == []
    wait_for(
        "the consumer's jobs to finish",
        lambda: consumer.api.get(f"/api/v1/negotiations/{cid}")["pending"] == [],
    )
    assert done["agreement_id"] == theirs["agreement_id"]
    # The timeline keeps the outage: failed attempts, then the delivery.
    attempts = [
        e["direction"] for e in done["timeline"] if e["message_type"] == "ContractRequestMessage"
    ]
    assert len(attempts) >= 3
    assert attempts == ["failed"] * (len(attempts) - 1) + ["sent"]
    agreement = consumer.api.get(f"/api/v1/agreements/{done['agreement_id']}")
    assert agreement["verification"] == {"provider": "valid", "consumer": "valid"}


def test_consumer_killed_after_its_request(tmp_path: Path, proxy: Proxy, payload: Path) -> None:
    """The provider's agreement finds the consumer down; it is delivered after the restart."""
    provider = node(tmp_path, "provider")
    # retries must outlast the consumer's restart, which takes seconds on a loaded machine
    provider.set(retry_max_attempts="200")
    provider.start()
    consumer = node(tmp_path, "consumer", "--public-url", proxy.url)
    proxy.target = consumer.public_port
    consumer.start()
    try:
        provider.publish(payload)
        # The catalog request makes the provider resolve (and cache) the consumer's DID.
        catalog = consumer.api.post(
            "/api/v1/catalog/request", {"counterPartyAddress": provider.dsp}
        )
        offer = catalog["dataset"][0]["hasPolicy"][0]
        proxy.set("refuse")

        neg = consumer.api.post(
            "/api/v1/negotiations",
            {"counterPartyAddress": provider.dsp, "datasetId": "ds-1", "offer": offer},
        )
        cid = neg["id"]
        wait_for(
            "the request to be sent",
            timeline_has(consumer, "negotiations", cid, "sent", "ContractRequestMessage"),
        )
        pid = consumer.api.get(f"/api/v1/negotiations/{cid}")["provider_pid"]
        wait_for(
            "the agreement to fail",
            timeline_has(provider, "negotiations", pid, "failed", "ContractAgreementMessage"),
        )
        consumer.kill()
        theirs = provider.api.get(f"/api/v1/negotiations/{pid}")
        assert theirs["state"] == "AGREED"
        assert theirs["pending"] == ["ContractAgreementMessage"]

        consumer.start()
        proxy.set("pass")
        done = state_of(consumer, "negotiations", cid, "FINALIZED")
        state_of(provider, "negotiations", pid, "FINALIZED")
        # the provider notes the event as sent once the consumer has answered it
        wait_for(
            "the provider to note the FINALIZED event as sent",
            timeline_has(provider, "negotiations", pid, "sent", "ContractNegotiationEventMessage"),
        )
        theirs = provider.api.get(f"/api/v1/negotiations/{pid}")
        assert done["agreement_id"] == theirs["agreement_id"]
        failed = entries(theirs, "failed", "ContractAgreementMessage")
        assert failed[0]["detail"].startswith("attempt 1 failed, retrying in ")
        assert f"POST {consumer.dsp}/negotiations/{cid}/agreement" in failed[0]["detail"]
        delivered = [e["message_type"] for e in theirs["timeline"] if e["direction"] == "sent"]
        assert delivered == [
            "ContractAgreementMessage",
            "ContractNegotiationEventMessage",
        ]
        assert entries(done, "received", "ContractAgreementMessage")
    finally:
        consumer.stop()
        provider.stop()


def test_consumer_killed_before_the_answer_to_its_accept(
    tmp_path: Path, proxy: Proxy, payload: Path
) -> None:
    """The provider applied the consumer's ACCEPTED but the answer was lost and the consumer
    crashed: after the restart it sends ACCEPTED again, which must not break the deal."""
    # The provider is reached through the proxy, so that is its public URL (and its DID's
    # host): a token for the provider goes only to the provider's own host.
    provider = node(tmp_path, "provider", "--public-url", proxy.url)
    proxy.target = provider.public_port
    provider.start()
    consumer = node(tmp_path, "consumer").start()
    via = provider.dsp
    try:
        provider.publish(payload, offers=[{"permission": [USE]}])
        catalog = consumer.api.post(
            "/api/v1/catalog/request", {"counterPartyAddress": via, "counterPartyId": provider.did}
        )
        offer = {**catalog["dataset"][0]["hasPolicy"][0], "permission": [PURPOSE]}
        neg = consumer.api.post(
            "/api/v1/negotiations",
            {
                "counterPartyAddress": via,
                "counterPartyId": provider.did,
                "datasetId": "ds-1",
                "offer": offer,
            },
        )
        cid = neg["id"]
        pid = state_of(consumer, "negotiations", cid, "OFFERED")["provider_pid"]

        proxy.set("hold")
        consumer.api.post(f"/api/v1/negotiations/{cid}/accept")
        # The provider got ACCEPTED and agreed; the consumer got the agreement, but still
        # waits for the answer to ACCEPTED, so its reaction (verify) waits behind it.
        state_of(provider, "negotiations", pid, "AGREED")
        state_of(consumer, "negotiations", cid, "AGREED")
        wait_for(
            "the agreement to be delivered",
            timeline_has(provider, "negotiations", pid, "sent", "ContractAgreementMessage"),
        )
        consumer.kill()
        proxy.set("pass")
        consumer.start()

        done = state_of(consumer, "negotiations", cid, "FINALIZED")
        theirs = state_of(provider, "negotiations", pid, "FINALIZED")
        assert done["reason"] == [] and theirs["reason"] == []
        assert done["agreement_id"] == theirs["agreement_id"]
        # The restarted consumer says what happened to the message it was sending.
        [interrupted] = entries(done, "failed", "ContractNegotiationEventMessage")
        assert interrupted["detail"] == ("attempt 1 was interrupted by a restart; running it again")
        [again] = entries(done, "note", "ContractNegotiationEventMessage")
        assert again["detail"] == "delivered earlier (peer state)"
        assert not entries(theirs, "received", "ContractNegotiationTerminationMessage")
    finally:
        consumer.stop()
        provider.stop()


# transfers ----------------------------------------------------------------------------------


@pytest.fixture
def big_file(tmp_path: Path) -> tuple[Path, str]:
    return sparse_file(tmp_path / "big.bin", BIG)


# (format, who is killed) -> (whose timeline, message type, text) showing the cut: the
# surviving side's, written while the other is down, and the restarted side's.
CUTS = {
    ("HttpData-PULL", "provider"): [
        ("consumer", "dp-pull", "attempt 1 failed, retrying in"),
        ("consumer", "dp-pull", "failed: the answer broke off"),
    ],
    ("HttpData-PULL", "consumer"): [
        ("provider", "pull", "stopped serving after"),
        ("consumer", "dp-pull", "attempt 1 was interrupted by a restart"),
    ],
    ("HttpData-PUSH", "provider"): [
        ("consumer", "push", "interrupted after"),
        ("provider", "dp-push", "attempt 1 was interrupted by a restart"),
    ],
    ("HttpData-PUSH", "consumer"): [
        ("provider", "dp-push", "attempt 1 failed, retrying in"),
        ("provider", "dp-push", "push to http://127.0.0.1:"),
    ],
}


@pytest.mark.parametrize(("fmt", "victim"), list(CUTS))
def test_killed_mid_transfer_and_restarted(
    nodes: tuple[ConnectorProcess, ConnectorProcess],
    big_file: tuple[Path, str],
    fmt: str,
    victim: str,
) -> None:
    provider, consumer = nodes
    path, expected = big_file
    provider.publish(path)
    agreement_id = negotiate(consumer, provider, "ds-1")
    tp = consumer.api.post("/api/v1/transfers", {"agreementId": agreement_id, "format": fmt})
    cid = tp["id"]
    pid = state_of(consumer, "transfers", cid, "STARTED")["provider_pid"]
    ids = {"consumer": (consumer, cid), "provider": (provider, pid)}

    # Kill once a tenth has arrived: the stream is under way and far from its end.
    wait_for("data to flow", lambda: received_size(consumer, cid) > BIG // 10)
    killed = consumer if victim == "consumer" else provider
    killed.kill()
    assert received_size(consumer, cid) < BIG

    # The surviving side notices the cut and records it with the error.
    survivor, message_type, text = CUTS[(fmt, victim)][0]
    where, pid_there = ids[survivor]
    [cut, *_] = wait_for(
        f"{survivor} to record the cut",
        timeline_has(where, "transfers", pid_there, "failed", message_type),
    )
    assert text in cut["detail"]
    assert where.api.get(f"/api/v1/transfers/{pid_there}")["state"] == "STARTED"

    killed.start()
    done = state_of(consumer, "transfers", cid, "COMPLETED")
    theirs = state_of(provider, "transfers", pid, "COMPLETED")
    assert done["bytes"] == BIG
    assert done["sha256"] == expected
    assert file_sha256(Path(done["path"])) == expected
    assert theirs["sha256"] == expected
    assert theirs["bytes"] == BIG
    for name, message_type, text in CUTS[(fmt, victim)]:
        where, pid_there = ids[name]
        record = where.api.get(f"/api/v1/transfers/{pid_there}")
        details = [e["detail"] for e in entries(record, "failed", message_type)]
        assert any(text in d for d in details), (name, details)
    for where, pid_there in ids.values():
        wait_for(
            "the outbox to drain",
            lambda w=where, p=pid_there: w.api.get(f"/api/v1/transfers/{p}")["pending"] == [],
        )
