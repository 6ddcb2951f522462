"""Another process holds the SQLite write lock: reads that need no write still answer.

A real connector on its real SQLite file; a second process (an operator's `sqlite3` shell, a
backup, a migration) takes the write lock with `BEGIN IMMEDIATE` and keeps it. WAL lets
readers through, so liveness and management reads of existing records must answer while the
lock is held. A store write waiting for the lock on the event loop (outbox polling, timeline
lines, ...) stalls every request for up to the busy timeout; this is what the test catches.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.harness import ConnectorProcess, negotiate

# connector/store/sqlite.py: PRAGMA busy_timeout=5000. A request served after a write that
# waited for the lock on the event loop takes at least this long.
BUSY_TIMEOUT = 5.0
DEADLINE = 20.0  # the lock is given up by then at the latest

HOLDER = """
import select, sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
db.execute("BEGIN IMMEDIATE")
print("held", flush=True)
told, _, _ = select.select([sys.stdin], [], [], float(sys.argv[2]))
print("released" if told else "deadline", time.time(), flush=True)
db.execute("ROLLBACK")
"""


class WriteLockHolder:
    """A separate process holding the SQLite write lock on `db` until `release()` (or the
    deadline: then `released_on_request` is False)."""

    def __init__(self, db: Path, deadline: float = DEADLINE) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(db), str(deadline)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()  # once BEGIN IMMEDIATE has succeeded
        if line != "held":
            self.proc.kill()
            raise RuntimeError(f"the lock holder did not take the lock: {line!r}")
        self.released_on_request: bool | None = None
        self.released_at: float | None = None

    @property
    def holding(self) -> bool:
        return self.proc.poll() is None

    def release(self) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            self.proc.stdin.write("go\n")
            self.proc.stdin.flush()
        assert self.proc.stdout is not None
        words = self.proc.stdout.readline().split()
        self.proc.wait(10)
        if words:
            self.released_on_request = words[0] == "released"
            self.released_at = float(words[1])


def get(url: str, key: str | None = None) -> tuple[int, float]:
    """Status and seconds of one GET (a generous client timeout: the wait is measured)."""
    request = urllib.request.Request(url)
    if key:
        request.add_header("X-Api-Key", key)
    t0 = time.monotonic()
    with urllib.request.urlopen(request, timeout=DEADLINE + 10) as resp:
        resp.read()
        return resp.status, time.monotonic() - t0


def reads(node: ConnectorProcess, negotiation_id: str, transfer_id: str) -> dict[str, str]:
    """Liveness and management reads of existing records: none of them needs a write."""
    api = f"http://127.0.0.1:{node.management_port}/api/v1"
    return {
        "GET /healthz": f"{node.base_url}/healthz",
        "GET /negotiations": f"{api}/negotiations",
        "GET /negotiations/{id}": f"{api}/negotiations/{negotiation_id}",
        "GET /transfers/{id}": f"{api}/transfers/{transfer_id}",
        "GET /datasets": f"{api}/datasets",
        "GET /agreements": f"{api}/agreements",
    }


@pytest.mark.parametrize("side", ["consumer", "provider"])
def test_reads_answer_while_another_process_holds_the_write_lock(
    provider: ConnectorProcess, consumer: ConnectorProcess, payload: Path, side: str
) -> None:
    provider.publish(payload)
    agreement = negotiate(consumer, provider, "ds-1")
    started = consumer.api.post(
        "/api/v1/transfers", {"agreementId": agreement, "format": "HttpData-PULL"}
    )
    done = consumer.api.wait_state("transfers", started["id"], {"COMPLETED"}, 30)
    node = consumer if side == "consumer" else provider
    negotiation_id = node.api.get("/api/v1/negotiations")[0]["id"]
    transfer_id = done["id"] if node is consumer else str(done["provider_pid"])
    urls = reads(node, negotiation_id, transfer_id)
    key = str(node.settings["api_key"])
    db = node.dir / "connector.db"

    holder = WriteLockHolder(db)
    answered: dict[str, list[float]] = {name: [] for name in urls}
    holding_at_each_answer: list[bool] = []
    try:
        # the lock is really held: a writer that will not wait is refused
        other = sqlite3.connect(str(db), isolation_level=None, timeout=0)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        other.close()
        # reads back to back for one busy timeout: any store write the connector makes on
        # its own (the outbox polls every fraction of a second) is attempted meanwhile
        window_ends = time.monotonic() + BUSY_TIMEOUT
        while time.monotonic() < window_ends and holder.holding:
            for name, url in urls.items():
                status, seconds = get(url, None if name == "GET /healthz" else key)
                assert status == 200, (name, status)
                answered[name].append(seconds)
                holding_at_each_answer.append(holder.holding)
    finally:
        holder.release()

    slow = {
        name: f"{max(times):.2f} s (slowest of {len(times)})"
        for name, times in answered.items()
        if max(times) >= BUSY_TIMEOUT / 2
    }
    assert slow == {}, f"reads stalled behind the write lock: {slow}"
    assert holder.released_on_request, "the lock holder gave up (deadline) before the reads"
    assert all(holding_at_each_answer)
