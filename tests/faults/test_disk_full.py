"""The consumer's disk fills up during a pull (finding F4 of issue 14).

A real full disk, not a simulated one: the consumer runs in its own mount namespace with a
small tmpfs over its received-data directory (`unshare -m`, root only), and the test fills
that tmpfs with a filler file (through /proc/<pid>/root, which reaches the consumer's mount
namespace) while the pull is held half-way by a gated upstream source. The next write then
fails with ENOSPC. The pull must say so at once, be retried with backoff keeping what
arrived, resume and complete when space comes back, or give up after the configured
attempts with the transfer TERMINATED, and the reason, on both sides; /readyz says the disk
is low meanwhile.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.harness import (
    ConnectorProcess,
    GatedSource,
    entries,
    negotiate,
    received_size,
    state_of,
    wait_for,
)

MIB = 1024 * 1024
DISK = 4 * MIB  # the consumer's received-data tmpfs
DATA = os.urandom(3 * MIB + 17)  # fits the empty disk, not a disk with the filler on it
GATE = 1 * MIB  # the upstream holds the stream here until the filler is written
WINDOW = 256 * 1024  # metering windows: the copy kept when the pull is given up ends at one
FILLER = DISK - GATE - MIB // 2  # leaves half a MiB: the write fails before the data ends
RESERVE = 64 * 1024  # receive_free_disk_bytes: small, so the real write is what fails
FAST_RETRY = {"retry_base_seconds": "0.2", "retry_max_seconds": "1"}

pytestmark = pytest.mark.skipif(
    subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0,
    reason="needs a private mount namespace (unshare -m, as root) for a small real disk",
)


@dataclass
class Nodes:
    provider: ConnectorProcess
    consumer: ConnectorProcess
    upstream: GatedSource

    def disk(self) -> Path:
        """The consumer's received-data directory as its own mount namespace sees it."""
        assert self.consumer.proc is not None
        received = (self.consumer.dir / "received").relative_to("/")
        return Path(f"/proc/{self.consumer.proc.pid}/root") / received


def small_disk(node: ConnectorProcess, size: int) -> None:
    """Run `node` with a tmpfs of `size` bytes over its received-data directory, mounted in
    a mount namespace of its own (the host's directory stays as it is)."""
    received = node.dir / "received"
    received.mkdir(mode=0o700, exist_ok=True)
    mount = f'mount -t tmpfs -o size={size},mode=0700 tmpfs "$1" && shift && exec "$@"'
    node.wrapper = ["unshare", "-m", "sh", "-c", mount, "sh", str(received)]


def start(tmp_path: Path, attempts: int) -> Nodes:
    provider = ConnectorProcess(tmp_path, "provider")
    provider.set(**FAST_RETRY, metering_window_bytes=str(WINDOW))
    consumer = ConnectorProcess(tmp_path, "consumer")
    consumer.set(
        **FAST_RETRY,
        receive_free_disk_bytes=str(RESERVE),
        receive_retry_attempts=str(attempts),
    )
    small_disk(consumer, DISK)
    upstream = GatedSource(DATA, GATE)
    provider.start()
    consumer.start()
    nodes = Nodes(provider, consumer, upstream)
    assert shutil.disk_usage(nodes.disk()).total == DISK  # the consumer does see the tmpfs
    return nodes


@pytest.fixture
def nodes_factory(tmp_path: Path) -> Iterator[Callable[[int], Nodes]]:
    """Starts the provider, the consumer on its small disk (`attempts`: receive_retry_attempts)
    and the gated upstream; stops them after the test."""
    started: list[Nodes] = []

    def make(attempts: int) -> Nodes:
        nodes = start(tmp_path, attempts)
        started.append(nodes)
        return nodes

    yield make
    for nodes in started:
        nodes.consumer.stop()
        nodes.provider.stop()
        nodes.upstream.close()


def pull_into_full_disk(nodes: Nodes) -> tuple[str, str]:
    """Start a pull of DATA, fill the consumer's disk while the stream is held at GATE, let
    the stream go on; the consumer's and the provider's transfer ids."""
    provider, consumer = nodes.provider, nodes.consumer
    source = {"type": "http", "url": nodes.upstream.url}
    provider.api.post("/api/v1/datasets", {"id": "ds-1", "title": "data", "source": source})
    agreement_id = negotiate(consumer, provider, "ds-1")
    tp = consumer.api.post(
        "/api/v1/transfers", {"agreementId": agreement_id, "format": "HttpData-PULL"}
    )
    cid = tp["id"]
    pid = state_of(consumer, "transfers", cid, "STARTED")["provider_pid"]
    # the host's directory is not the consumer's: read its size in the consumer's namespace
    copy = nodes.disk() / f"{cid.rsplit(':', 1)[-1]}.bin"
    # (the writer's buffer may hold back a few KiB until the stream goes on)
    held = GATE - 64 * 1024
    wait_for("the first MiB to arrive", lambda: copy.exists() and copy.stat().st_size >= held)
    assert received_size(consumer, cid) == 0  # nothing lands on the host's disk
    (nodes.disk() / "filler").write_bytes(b"\0" * FILLER)
    assert shutil.disk_usage(nodes.disk()).free < len(DATA) - GATE
    nodes.upstream.release.set()
    return cid, pid


def disk_failures(node: ConnectorProcess, cid: str) -> list[str]:
    record = node.api.get(f"/api/v1/transfers/{cid}")
    return [
        e["detail"]
        for e in entries(record, "failed", "dp-pull")
        if "no space left" in e["detail"].lower()
    ]


def readyz(node: ConnectorProcess) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(node.base_url + "/readyz", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_full_disk_is_reported_retried_and_given_up_on_both_sides(
    nodes_factory: Callable[[int], Nodes],
) -> None:
    nodes = nodes_factory(3)
    consumer, provider = nodes.consumer, nodes.provider
    cid, pid = pull_into_full_disk(nodes)

    # at once: the timeline names the disk and the write that found no space (ENOSPC)
    [first, *_] = wait_for("the disk error on the timeline", lambda: disk_failures(consumer, cid))
    assert "attempt 1 failed, retrying in" in first
    assert f"no space left on the disk of {consumer.dir / 'received'}" in first
    assert os.strerror(28) in first  # "No space left on device": the real write failed

    # readiness names the low disk while it is full
    status, body = readyz(consumer)
    assert status == 503
    assert body["checks"]["disk"] == "failing"
    assert {k: v for k, v in body["checks"].items() if k != "disk"} == {
        "store": "ok",
        "policies": "ok",
        "outbox": "ok",
    }

    # retried with backoff, then given up after the configured 3 attempts, on both sides
    mine = state_of(consumer, "transfers", cid, "TERMINATED")
    failures = disk_failures(consumer, cid)
    assert [f.split(" failed")[0] for f in failures[:2]] == ["attempt 1", "attempt 2"]
    [reason] = mine["reason"]
    assert reason.startswith("data transfer failed: gave up after 3 attempts: no space left")
    assert str(consumer.dir) not in reason  # the peer learns no local path
    [sent] = wait_for(
        "the TransferTerminationMessage to go out",
        lambda: entries(
            consumer.api.get(f"/api/v1/transfers/{cid}"), "sent", "TransferTerminationMessage"
        ),
    )
    assert sent["body"]["reason"] == [reason]
    theirs = state_of(provider, "transfers", pid, "TERMINATED")
    assert theirs["reason"] == [reason]

    # what did arrive is kept as it arrived, a prefix of the data, cut back to the end of the
    # last window that arrived whole: the bytes past it no record can meter, so none are kept
    copy = nodes.disk() / f"{cid.rsplit(':', 1)[-1]}.bin"
    kept = copy.read_bytes()
    assert GATE <= len(kept) < len(DATA)
    assert len(kept) % WINDOW == 0
    assert kept == DATA[: len(kept)]
    # and it is recorded and metered as delivered: the windows it holds are receipted
    record = consumer.api.get(f"/api/v1/transfers/{cid}")
    assert record["bytes"] == len(kept)
    settled = [
        e["detail"] for e in entries(record, "note", "metering") if "receipted" in e["detail"]
    ]
    assert settled and not settled[0].startswith("metering: 0 receipted"), settled


def test_pull_resumes_and_completes_when_space_comes_back(
    nodes_factory: Callable[[int], Nodes],
) -> None:
    nodes = nodes_factory(50)
    consumer, provider = nodes.consumer, nodes.provider
    cid, pid = pull_into_full_disk(nodes)
    # a retry too finds the disk full (the free disk is then below receive_free_disk_bytes):
    # it must wait for space like the first, not refuse the data for good
    wait_for("a retry on the full disk", lambda: len(disk_failures(consumer, cid)) >= 2)
    assert consumer.api.get(f"/api/v1/transfers/{cid}")["state"] == "STARTED"
    copy = nodes.disk() / f"{cid.rsplit(':', 1)[-1]}.bin"
    kept = copy.stat().st_size
    assert GATE <= kept < len(DATA)

    (nodes.disk() / "filler").unlink()  # the operator frees space
    done = state_of(consumer, "transfers", cid, "COMPLETED")
    theirs = state_of(provider, "transfers", pid, "COMPLETED")
    assert copy.read_bytes() == DATA
    assert done["bytes"] == theirs["bytes"] == len(DATA)
    assert done["sha256"] == hashlib.sha256(DATA).hexdigest()
    # resumed from what the file held: the provider served only the rest
    served = [
        e["detail"]
        for e in entries(provider.api.get(f"/api/v1/transfers/{pid}"), "note", "pull")
        if e["detail"].startswith("served bytes")
    ]
    start = int(served[-1].removeprefix("served bytes ").split("-")[0])
    assert start == kept
    assert readyz(consumer)[0] == 200
