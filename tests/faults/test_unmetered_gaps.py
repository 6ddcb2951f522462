"""Issue 14, F1-F3: a pull cut off by a crash, a shutdown or a store that takes no writes must
leave no byte the consumer holds outside a signed, receipted metering record.

Real processes on loopback; the kills are real signals. Where a kill must fall at a chosen
byte, the provider's dataset is an upstream HTTP source held at a gate (tests/harness
GatedSource, a test double for the upstream): the consumer holds exactly the bytes before the
gate, more than the last closed window, when the provider is killed.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from connector.model.metering import merge_ranges
from tests.faults.invariants import violations
from tests.faults.pair import Pair
from tests.harness import (
    ConnectorProcess,
    GatedSource,
    entries,
    file_sha256,
    negotiate,
    received_size,
    sparse_file,
    state_of,
    wait_for,
)
from tests.postgres_server import PostgresServer

MIB = 1024 * 1024
WINDOW = MIB
FAST = {
    "retry_base_seconds": "0.2",
    "retry_max_seconds": "1",
    "metering_window_bytes": str(WINDOW),
    "metering_window_seconds": "3600",  # windows close by bytes only: the gap is exact
}


@pytest.fixture
def pair(make_pair: Callable[..., Pair]) -> tuple[ConnectorProcess, ConnectorProcess]:
    """A provider (with no shutdown grace) and a consumer, on SQLite and on PostgreSQL."""
    both = make_pair(**FAST, shutdown_grace_seconds="0")
    return both.provider, both.consumer


def receipted(node: ConnectorProcess, agreement_id: str, transfer: str) -> list[tuple[int, int]]:
    """The merged byte ranges of `transfer` that records the consumer receipted cover."""
    chain = node.api.get(f"/api/v1/agreements/{agreement_id}/metering")["chain"]
    return merge_ranges(
        [
            (r["offset"], r["offset"] + r["length"])
            for line in chain
            if (r := line["record"])["transfer"] == transfer and line["receipt"] and r["length"]
        ]
    )


def assert_all_metered(
    provider: ConnectorProcess, consumer: ConnectorProcess, agreement_id: str, cid: str
) -> dict[str, Any]:
    """Both sides COMPLETED with the same data, and every byte the consumer holds lies in a
    record it receipted, as both sides keep the chain."""
    done = state_of(consumer, "transfers", cid, "COMPLETED")
    pid = done["provider_pid"]
    theirs = state_of(provider, "transfers", pid, "COMPLETED")
    assert theirs["sha256"] == done["sha256"] == file_sha256(Path(done["path"]))
    held = Path(done["path"]).stat().st_size
    for node in (provider, consumer):
        covered = wait_for(
            f"{node.name} to hold the receipts",
            lambda n=node: (got := receipted(n, agreement_id, pid)) == [(0, held)] and got,
            timeout=30,
        )
        assert covered == [(0, held)]
    invoice = provider.api.get(f"/api/v1/agreements/{agreement_id}/invoice?period=" + _month())
    assert invoice["usage"]["bytes"] == held  # each byte billed once
    # and the same with the offline tools: export, verify with both keys, invoice
    found = violations(provider, consumer, str(done["sha256"]), settle_seconds=5)
    assert found == [], "\n".join(found)
    return done


def _month() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y-%m")


def _pull(consumer: ConnectorProcess, agreement_id: str) -> tuple[str, str]:
    tp = consumer.api.post(
        "/api/v1/transfers", {"agreementId": agreement_id, "format": "HttpData-PULL"}
    )
    started = state_of(consumer, "transfers", tp["id"], "STARTED")
    return tp["id"], started["provider_pid"]


def test_provider_sigkilled_mid_pull_meters_what_the_consumer_holds(
    pair: tuple[ConnectorProcess, ConnectorProcess],
) -> None:
    """F1: the bytes delivered after the last closed window were in no record (the open
    window lived in memory). Now the resumed pull's Range shows what the consumer holds and
    the provider meters that gap from the source before it sends the rest."""
    provider, consumer = pair
    gate = 2 * WINDOW + 300_000  # two windows closed, 300,000 bytes in the open one
    source = GatedSource(os.urandom(4 * WINDOW + 12_345), gate)
    try:
        provider.publish(Path("/dev/null"), source={"type": "http", "url": source.url})
        agreement_id = negotiate(consumer, provider, "ds-1")
        cid, pid = _pull(consumer, agreement_id)
        wait_for("the bytes before the gate", lambda: received_size(consumer, cid) == gate)
        provider.kill()
        source.release.set()
        provider.start()
        assert_all_metered(provider, consumer, agreement_id, cid)
        record = provider.api.get(f"/api/v1/transfers/{pid}")
        notes = [e["detail"] for e in entries(record, "note", "metering")]
        assert any(f"bytes {2 * WINDOW}-{gate - 1} reached the consumer" in n for n in notes)
    finally:
        source.close()


class SlowLink:
    """Test double for a slow network in front of the provider's public port: answers flow at
    about `rate` bytes a second, so a pull is still being written when a shutdown cancels it
    (on loopback the whole file would be gone before the grace ends)."""

    def __init__(self, target: int, rate: int) -> None:
        self.target, self.rate = target, rate
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            try:
                server = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                client.close()  # the provider is down: the connection is refused
                continue
            server.settimeout(None)
            threading.Thread(target=self._pump, args=(client, server, 0), daemon=True).start()
            threading.Thread(
                target=self._pump, args=(server, client, self.rate), daemon=True
            ).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, rate: int) -> None:
        try:
            while data := src.recv(16384):
                dst.sendall(data)
                if rate:
                    time.sleep(len(data) / rate)  # the pacing itself, not a wait for a condition
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()


def test_provider_sigtermed_past_the_grace_mid_pull(
    store_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """F2: a shutdown cancels the stream inside a write: that chunk reached the consumer but
    not the meter. The consumer's resume makes the provider meter it."""
    provider = ConnectorProcess(tmp_path, "provider")
    link = SlowLink(provider.public_port, 30 * MIB)
    # peers reach the provider only through the link: its URL (and so its DID) names the link
    provider.settings["public_url"] = f"http://127.0.0.1:{link.port}"
    provider.set(**FAST, shutdown_grace_seconds="0", public_url=provider.base_url)
    consumer = ConnectorProcess(tmp_path, "consumer")
    consumer.set(**FAST)
    if store_kind == "postgres":
        server: PostgresServer = request.getfixturevalue("postgres")
        provider.set(database_url=server.new_database())
        consumer.set(database_url=server.new_database())
    try:
        provider.start()
        consumer.start()
        path, expected = sparse_file(tmp_path / "big.bin", 120 * MIB)
        provider.publish(path)
        agreement_id = negotiate(consumer, provider, "ds-1")
        cid, _ = _pull(consumer, agreement_id)
        wait_for("data to flow", lambda: received_size(consumer, cid) > 8 * MIB)
        provider.stop()  # SIGTERM; the grace ends while the stream is still being written
        assert received_size(consumer, cid) < 120 * MIB
        provider.start()
        done = assert_all_metered(provider, consumer, agreement_id, cid)
        assert done["sha256"] == expected
    finally:
        consumer.stop()
        provider.stop()
        link.close()


def _hold_write_lock(db: Path, release: threading.Event, held: threading.Event) -> None:
    """Another process's writer, as a backup tool or an operator's sqlite3 shell would be:
    it holds the database's write lock until released."""
    conn = sqlite3.connect(str(db), isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    held.set()
    release.wait(120)
    conn.execute("ROLLBACK")
    conn.close()


@pytest.mark.parametrize("store_kind", ["sqlite"], indirect=True)
def test_provider_store_locked_mid_pull(
    pair: tuple[ConnectorProcess, ConnectorProcess],
) -> None:
    """F3: a metering record the store refuses (locked beyond its busy timeout) stops the
    stream at once; the transfer says why; once the store is back, the pull resumes and every
    byte the consumer holds is metered and receipted."""
    provider, consumer = pair
    gate = WINDOW + 200_000
    source = GatedSource(os.urandom(3 * WINDOW), gate)
    release, held = threading.Event(), threading.Event()
    locker = threading.Thread(
        target=_hold_write_lock, args=(provider.dir / "connector.db", release, held)
    )
    try:
        provider.publish(Path("/dev/null"), source={"type": "http", "url": source.url})
        agreement_id = negotiate(consumer, provider, "ds-1")
        cid, pid = _pull(consumer, agreement_id)
        wait_for("the bytes before the gate", lambda: received_size(consumer, cid) == gate)
        locker.start()
        assert held.wait(10)
        source.release.set()  # the next window closes while the store takes no writes
        wait_for(
            "the consumer to see the pull cut",
            lambda: entries(consumer.api.get(f"/api/v1/transfers/{cid}"), "failed", "dp-pull"),
            timeout=60,
        )
        # nothing beyond one window and one chunk past the last record went out
        assert received_size(consumer, cid) < 2 * WINDOW + 256 * 1024
        release.set()
        locker.join(10)
        assert_all_metered(provider, consumer, agreement_id, cid)
        record = provider.api.get(f"/api/v1/transfers/{pid}")
        why = [e["detail"] for e in entries(record, "failed", "pull")]
        assert any("could not be written" in d for d in why), why
    finally:
        release.set()
        source.close()
