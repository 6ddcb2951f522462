"""Two provider replicas sharing one PostgreSQL database, behind one URL.

Real `connector serve` processes, a real PostgreSQL server, one key and one public URL for
both replicas. `LoadBalancer` is a test double standing in for the load balancer (or
Kubernetes Service) in front of them: a TCP proxy that hands each new connection to the next
replica that accepts it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.harness import (
    ConnectorProcess,
    GatedSource,
    cli,
    entries,
    file_sha256,
    negotiate,
    received_size,
    sparse_file,
    state_of,
    wait_for,
)
from tests.test_observability import metrics

BIG = 200 * 1024 * 1024
GATED = 4 * 1024 * 1024  # a stream held in its middle by the upstream (GatedSource)
FAST = {"retry_base_seconds": "0.2", "retry_max_seconds": "1"}


class LoadBalancer:
    """Test double for a load balancer: round-robin over the replicas' public ports, skipping
    a replica that refuses connections (killed)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.targets: list[int] = []
        self.served: dict[int, int] = {}
        self._next = 0
        self._closing = False
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _backend(self) -> tuple[socket.socket, int] | None:
        targets = list(self.targets)  # (as `cut` may empty it meanwhile)
        for _ in range(len(targets)):
            port = targets[self._next % len(targets)]
            self._next += 1
            with contextlib.suppress(OSError):
                return socket.create_connection(("127.0.0.1", port), timeout=5), port
        return None

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            found = self._backend()
            if found is None:
                client.close()
                continue
            server, port = found
            with self._lock:
                if port not in self.targets:  # cut meanwhile
                    client.close()
                    server.close()
                    continue
                self._open += [client, server]
            server.settimeout(None)
            self.served[port] = self.served.get(port, 0) + 1
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_RDWR)
            dst.close()

    def cut(self) -> None:
        """No replica reachable through the public URL until `targets` is set again: new
        connections are refused and open ones (kept alive by a client) dropped."""
        with self._lock:
            self.targets = []
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self._open.clear()

    def close(self) -> None:
        self._closing = True
        self.listener.close()


@dataclass
class Cluster:
    """The provider's replicas, the load balancer in front, the database they share."""

    replicas: list[ConnectorProcess]
    balancer: LoadBalancer
    database_url: str

    def jobs(self, where: str = "true") -> list[dict[str, Any]]:
        with psycopg.connect(self.database_url) as conn, conn.cursor() as cur:
            cur.execute(f"select * from jobs where {where} order by id")
            names = [d.name for d in cur.description or []]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def replica_running(self, kind: str) -> ConnectorProcess:
        """The replica whose outbox runs a job of `kind` now (the owner names its pid)."""

        def owner() -> str | None:
            rows = self.jobs(f"kind = '{kind}' and status = 'running'")
            return str(rows[0]["owner"]) if rows else None

        found = str(wait_for(f"a replica to run {kind}", owner))
        pid = int(found.split(":")[1])
        return next(r for r in self.replicas if r.proc is not None and r.proc.pid == pid)


def replicas(
    tmp_path: Path, database_url: str, balancer: LoadBalancer, n: int = 2, **settings: str
) -> list[ConnectorProcess]:
    """`n` replicas: one public URL (the balancer's), one key, one database."""
    nodes = []
    for i in range(n):
        node = ConnectorProcess(
            tmp_path, f"provider-{i}", extra_init=("--public-url", balancer.url)
        )
        node.set(**FAST, database_url=database_url, **settings)
        if nodes:
            node.set(key_file=str(nodes[0].dir / "keys" / "private.pem"))
        nodes.append(node)
    balancer.targets = [node.public_port for node in nodes]
    return nodes


@pytest.fixture
def cluster(tmp_path: Path, database_url: str) -> Iterator[Cluster]:
    balancer = LoadBalancer()
    window = str(1024 * 1024)
    nodes = replicas(
        tmp_path, database_url, balancer, job_lease_seconds="4", metering_window_bytes=window
    )
    for node in nodes:
        node.start()
    yield Cluster(nodes, balancer, database_url)
    for node in nodes:
        node.stop()
    balancer.close()


@pytest.fixture
def consumer(tmp_path: Path) -> Iterator[ConnectorProcess]:
    node = ConnectorProcess(tmp_path, "consumer")
    node.set(**FAST)
    yield node.start()
    node.stop()


@pytest.fixture
def big_file(tmp_path: Path) -> tuple[Path, str]:
    return sparse_file(tmp_path / "big.bin", BIG)


def publish_upstream(provider: ConnectorProcess, consumer: ConnectorProcess, url: str) -> str:
    """Publish an upstream HTTP source as ds-1 and negotiate it; the agreement id."""
    source = {"type": "http", "url": url}
    provider.api.post("/api/v1/datasets", {"id": "ds-1", "title": "gated", "source": source})
    return negotiate(consumer, provider, "ds-1")


def verify_chain_offline(
    tmp_path: Path, provider: ConnectorProcess, consumer: ConnectorProcess, agreement_id: str
) -> str:
    """`connector metering export` from a replica, then `connector metering verify`."""
    chain = tmp_path / "chain.jsonl"
    done = cli("--config", str(provider.config), "metering", "export", "--agreement",
               agreement_id, "--out", str(chain))  # fmt: skip
    assert done.returncode == 0, done.stderr
    keys = []
    for node in (provider, consumer):
        doc = tmp_path / f"{node.name}-did.json"
        with urllib.request.urlopen(f"{node.base_url}/.well-known/did.json", timeout=5) as r:
            doc.write_bytes(r.read())
        keys.append(doc)
    done = cli("metering", "verify", str(chain), "--provider-key", str(keys[0]),
               "--consumer-key", str(keys[1]))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def assert_no_job_ran_twice(cluster: Cluster, allowed: frozenset[int] = frozenset()) -> None:
    """Every job finished, each in one attempt, except those named (taken over)."""
    jobs = wait_for(
        "the provider's outbox to drain",
        lambda: (rows := cluster.jobs()) and all(j["status"] == "done" for j in rows) and rows,
    )
    twice = [j for j in jobs if j["attempts"] != 1 and j["id"] not in allowed]
    assert twice == [], twice


# ------------------------------------------------------------------------------------------


def test_negotiations_and_transfers_across_replicas(
    cluster: Cluster, consumer: ConnectorProcess, payload: Path, tmp_path: Path
) -> None:
    """Messages of several processes reach both replicas at random; every process ends well,
    no job runs twice, and concurrent pulls served by both replicas append to one
    agreement's chain without a gap or a duplicate."""
    provider = cluster.replicas[0]
    provider.publish(payload)
    agreements = []
    negotiations = [
        consumer.api.post(
            "/api/v1/negotiations",
            {
                "counterPartyAddress": provider.dsp,
                "datasetId": "ds-1",
                "offer": consumer.api.post(
                    "/api/v1/catalog/request", {"counterPartyAddress": provider.dsp}
                )["dataset"][0]["hasPolicy"][0],
            },
        )
        for _ in range(4)
    ]
    for neg in negotiations:
        done = state_of(consumer, "negotiations", neg["id"], "FINALIZED")
        agreements.append(done["agreement_id"])

        # each message went out once: the provider's side shows one of each. The provider
        # notes a message as sent after the consumer has answered it, so the consumer can be
        # FINALIZED a moment before the provider's timeline says so: wait for the last entry.
        def sent_by_provider(pid: str = done["provider_pid"]) -> list[str] | None:
            theirs = cluster.replicas[1].api.get(f"/api/v1/negotiations/{pid}")
            sent = [e["message_type"] for e in theirs["timeline"] if e["direction"] == "sent"]
            return sent if "ContractNegotiationEventMessage" in sent else None

        sent = wait_for("the provider to note the FINALIZED event as sent", sent_by_provider)
        assert sent == ["ContractAgreementMessage", "ContractNegotiationEventMessage"]
    # four pulls at once under one agreement
    agreement = agreements[0]
    transfers = [
        consumer.api.post("/api/v1/transfers", {"agreementId": agreement, "format": fmt})
        for fmt in ("HttpData-PULL", "HttpData-PUSH", "HttpData-PULL", "HttpData-PUSH")
    ]
    expected = file_sha256(payload)
    for tp in transfers:
        done = state_of(consumer, "transfers", tp["id"], "COMPLETED")
        assert done["sha256"] == expected
    assert_no_job_ran_twice(cluster)
    owners = {j["owner"].split(":")[1] for j in cluster.jobs()}
    assert owners <= {str(r.proc.pid) for r in cluster.replicas if r.proc}
    assert len(cluster.balancer.served) == 2  # both replicas answered requests
    chain = provider.api.get(f"/api/v1/agreements/{agreement}/metering")["chain"]
    seqs = [line["record"]["seq"] for line in chain]
    assert seqs == list(range(len(seqs))) and len(seqs) >= 4 * 3
    assert len({line["record"]["transfer"] for line in chain}) == 4
    out = verify_chain_offline(tmp_path, provider, consumer, agreement)
    assert f"{len(seqs)} records" in out
    # /metrics counts from the shared database: every replica reports the same totals
    completed = ("connector_transfers", (("role", "provider"), ("state", "COMPLETED")))
    for replica in cluster.replicas:
        samples = metrics(replica)
        assert samples[("connector_store_up", ())] == 1
        assert samples[completed] == 4
        assert samples[("connector_metering_records_total", ())] == len(seqs)


def test_a_replica_killed_mid_push_is_finished_by_the_other(
    cluster: Cluster, consumer: ConnectorProcess, big_file: tuple[Path, str], tmp_path: Path
) -> None:
    path, expected = big_file
    provider = cluster.replicas[0]
    provider.publish(path)
    agreement_id = negotiate(consumer, provider, "ds-1")
    tp = consumer.api.post(
        "/api/v1/transfers", {"agreementId": agreement_id, "format": "HttpData-PUSH"}
    )
    cid = tp["id"]
    pid = state_of(consumer, "transfers", cid, "STARTED")["provider_pid"]
    pusher = cluster.replica_running("dp-push")
    survivor = next(r for r in cluster.replicas if r is not pusher)
    wait_for("data to flow", lambda: received_size(consumer, cid) > BIG // 10)
    assert pusher.proc is not None
    killed_pid = pusher.proc.pid
    pusher.kill()
    assert received_size(consumer, cid) < BIG

    done = state_of(consumer, "transfers", cid, "COMPLETED")
    assert done["bytes"] == BIG and done["sha256"] == expected
    assert file_sha256(Path(done["path"])) == expected
    theirs = state_of(survivor, "transfers", pid, "COMPLETED")
    assert theirs["sha256"] == expected
    [taken] = [
        e
        for e in entries(theirs, "failed", "dp-push")
        if "stopped renewing its lease" in e["detail"]
    ]
    assert f":{killed_pid}:" in taken["detail"]
    assert taken["detail"].startswith("attempt 1 was interrupted (replica ")
    [push_job] = cluster.jobs("kind = 'dp-push'")
    assert (
        push_job["attempts"] == 2
        and str(survivor.proc.pid if survivor.proc else "") in (push_job["owner"])
    )
    assert_no_job_ran_twice(cluster, frozenset({push_job["id"]}))
    out = verify_chain_offline(tmp_path, survivor, consumer, agreement_id)
    assert "verifies" in out


def test_sigterm_hands_a_running_push_to_the_other_replica_at_once(
    tmp_path: Path,
    database_url: str,
    consumer: ConnectorProcess,
) -> None:
    """No grace: the stopping replica releases the job, which the other takes over without
    waiting for its lease (an hour here) to expire. The upstream holds the stream in its
    middle until the replica has stopped, so SIGTERM always cuts a push under way (a stream
    that went out whole before the stop is not pushed again: the next test)."""
    data = os.urandom(GATED)
    gated = GatedSource(data, hold_after=GATED // 4)
    balancer = LoadBalancer()
    nodes = replicas(
        tmp_path, database_url, balancer, job_lease_seconds="3600", shutdown_grace_seconds="0"
    )
    cluster = Cluster(nodes, balancer, database_url)
    try:
        for node in nodes:
            node.start()
        agreement_id = publish_upstream(nodes[0], consumer, gated.url)
        tp = consumer.api.post(
            "/api/v1/transfers", {"agreementId": agreement_id, "format": "HttpData-PUSH"}
        )
        cid = tp["id"]
        pid = state_of(consumer, "transfers", cid, "STARTED")["provider_pid"]
        pusher = cluster.replica_running("dp-push")
        survivor = next(r for r in nodes if r is not pusher)
        wait_for("data to flow", lambda: received_size(consumer, cid) > 0)
        assert pusher.proc is not None
        pusher.proc.send_signal(signal.SIGTERM)
        assert pusher.proc.wait(20) == 0
        gated.release.set()  # the survivor's push gets the whole stream

        done = state_of(consumer, "transfers", cid, "COMPLETED")
        assert done["sha256"] == hashlib.sha256(data).hexdigest()
        theirs = state_of(survivor, "transfers", pid, "COMPLETED")
        handed = [e["detail"] for e in entries(theirs, "failed", "dp-push")]
        assert len(handed) == 1 and "shut down and handed it over" in handed[0]
        assert "stopped renewing" not in handed[0]
        # the stopping replica closed its part of the chain before handing the push over
        chain = survivor.api.get(f"/api/v1/agreements/{agreement_id}/metering")["chain"]
        kinds = [line["record"]["kind"] for line in chain]
        assert kinds.count("start") == 2 and kinds[-1] == "complete", kinds
        stop = kinds.index("interrupted")
        assert stop < kinds.index("start", 1), kinds
        cut = chain[stop]["record"]
        assert 0 < cut["offset"] + cut["length"] <= GATED
        assert all(line["receipt"] for line in chain)
        assert "verifies" in verify_chain_offline(tmp_path, survivor, consumer, agreement_id)
    finally:
        for node in nodes:
            node.stop()
        balancer.close()
        gated.close()


def test_sigterm_after_the_push_went_out_hands_over_without_pushing_again(
    tmp_path: Path, database_url: str
) -> None:
    """SIGTERM (no grace) while the pusher waits for the consumer's receipts, the stream
    having gone out whole: the other replica takes the job over, waits for the receipts and
    completes the transfer; it does not push the whole stream a second time."""
    consumer = ConnectorProcess(tmp_path, "consumer")
    consumer.set(**FAST, retry_max_attempts="1000")  # it keeps asking while no replica answers
    data = os.urandom(GATED)
    gated = GatedSource(data, hold_after=GATED // 4)
    balancer = LoadBalancer()
    nodes = replicas(
        tmp_path, database_url, balancer, job_lease_seconds="3600", shutdown_grace_seconds="0",
        metering_receipt_seconds="120",
    )  # fmt: skip
    cluster = Cluster(nodes, balancer, database_url)
    try:
        consumer.start()
        for node in nodes:
            node.start()
        agreement_id = publish_upstream(nodes[0], consumer, gated.url)
        tp = consumer.api.post(
            "/api/v1/transfers", {"agreementId": agreement_id, "format": "HttpData-PUSH"}
        )
        cid = tp["id"]
        pid = state_of(consumer, "transfers", cid, "STARTED")["provider_pid"]
        pusher = cluster.replica_running("dp-push")
        survivor = next(r for r in nodes if r is not pusher)
        wait_for("data to flow", lambda: received_size(consumer, cid) > 0)
        # the consumer cannot reach any replica now, so its receipts wait; the push (to the
        # consumer's own address) goes on to its end
        balancer.cut()
        gated.release.set()

        def pushed() -> bool:
            record = pusher.api.get(f"/api/v1/transfers/{pid}")
            return any("pushed" in e["detail"] for e in entries(record, "note", "push"))

        wait_for("the stream to go out whole", pushed)
        assert pusher.proc is not None
        pusher.proc.send_signal(signal.SIGTERM)
        assert pusher.proc.wait(20) == 0
        assert cluster.replica_running("dp-push") is survivor  # handed over, not done
        balancer.targets = [survivor.public_port]

        done = state_of(consumer, "transfers", cid, "COMPLETED")
        assert done["sha256"] == hashlib.sha256(data).hexdigest()
        theirs = state_of(survivor, "transfers", pid, "COMPLETED")
        handed = [e["detail"] for e in entries(theirs, "failed", "dp-push")]
        assert len(handed) == 1 and "shut down and handed it over" in handed[0], handed
        # one stream, metered once: the taken-over job only waited for the receipts
        chain = survivor.api.get(f"/api/v1/agreements/{agreement_id}/metering")["chain"]
        kinds = [line["record"]["kind"] for line in chain]
        assert kinds.count("start") == 1 and kinds[-1] == "complete", kinds
        assert sum(line["record"]["length"] for line in chain) == GATED
        assert all(line["receipt"] for line in chain)
        assert len([e for e in entries(theirs, "note", "push") if "pushed" in e["detail"]]) == 1
    finally:
        for node in nodes:
            node.stop()
        consumer.stop()
        balancer.close()
        gated.close()


def test_sigterm_lets_a_running_push_finish_within_the_grace(
    tmp_path: Path,
    database_url: str,
    consumer: ConnectorProcess,
    big_file: tuple[Path, str],
) -> None:
    balancer = LoadBalancer()
    nodes = replicas(tmp_path, database_url, balancer, n=1, shutdown_grace_seconds="120")
    try:
        provider = nodes[0].start()
        path, expected = big_file
        provider.publish(path)
        agreement_id = negotiate(consumer, provider, "ds-1")
        tp = consumer.api.post(
            "/api/v1/transfers", {"agreementId": agreement_id, "format": "HttpData-PUSH"}
        )
        cid = tp["id"]
        wait_for("data to flow", lambda: received_size(consumer, cid) > BIG // 10)
        assert provider.proc is not None
        provider.proc.send_signal(signal.SIGTERM)
        assert provider.proc.wait(120) == 0
        # it finished the push before it exited: the consumer has all of it
        assert received_size(consumer, cid) == BIG
        with psycopg.connect(database_url) as conn:
            [(status, attempts)] = conn.execute(
                "select status, attempts from jobs where kind = 'dp-push'"
            ).fetchall()
        assert (status, attempts) == ("done", 1)
        assert file_sha256(consumer.dir / "received" / f"{cid.rsplit(':', 1)[-1]}.bin") == expected
    finally:
        for node in nodes:
            node.stop()
        balancer.close()


def test_an_unreachable_database_stops_the_start_with_a_clear_error(tmp_path: Path) -> None:
    from connector.ports import free_port

    node = ConnectorProcess(tmp_path, "lonely")
    node.set(database_url=f"postgresql://u:hidden@127.0.0.1:{free_port()}/db")
    with pytest.raises(RuntimeError, match="exited") as err:
        node.start()
    assert node.proc is not None and node.proc.returncode == 1
    text = str(err.value)
    assert "database_url: cannot connect to postgresql://u:***@127.0.0.1" in text
    assert "Traceback" not in text and "hidden" not in text
