"""The invariant checker itself (tests/faults/invariants.py), on both stores: clean transfers
pass it, and a broken invariant is reported, so a fault test built on it can fail."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import psycopg

from tests.faults.pair import MIB, Pair, sigkill
from tests.harness import GatedSource, wait_for

SIZE = 3 * MIB + 17  # three full windows and a short one


def payload(tmp_path: Path) -> Path:
    path = tmp_path / "payload.bin"
    path.write_bytes(os.urandom(SIZE))
    return path


def drop_receipt(pair: Pair, seq: int) -> None:
    """Tamper with the provider's own store (stopped): record `seq` loses its receipt."""
    pair.provider.stop()
    sql = "update metering set receipt = null where seq = {}"
    if pair.database_urls:
        with psycopg.connect(pair.database_urls[0]) as conn:
            assert conn.execute(sql.format("%s"), [seq]).rowcount == 1
    else:
        with sqlite3.connect(pair.provider.dir / "connector.db") as db:
            assert db.execute(sql.format("?"), [seq]).rowcount == 1
    pair.provider.start()


def test_a_clean_pull_and_push_hold_the_invariant(pair: Pair, tmp_path: Path) -> None:
    source = payload(tmp_path)
    agreement_id = pair.offer(source)
    started = [pair.transfer(agreement_id), pair.transfer(agreement_id, push=True)]
    for tp in started:
        assert pair.terminal(tp["id"])["state"] == "COMPLETED"

    outcome = pair.check(source)
    assert outcome.violations == []
    assert outcome.transfers == 2 and outcome.held_bytes == 2 * SIZE
    assert outcome.receipted_bytes == outcome.billed_bytes == 2 * SIZE


def test_the_checker_reports_a_broken_invariant(pair: Pair, tmp_path: Path) -> None:
    source = payload(tmp_path)
    agreement_id = pair.offer(source)
    tp = pair.terminal(pair.transfer(agreement_id)["id"])
    assert tp["state"] == "COMPLETED"
    assert pair.violations(source) == []

    # another source than the one delivered
    found = pair.violations("0" * 64, settle_seconds=0)
    assert found == [f"consumer pull {tp['id']} COMPLETED with sha256 {tp['sha256']}, the"
                     f" source's is {'0' * 64}"]  # fmt: skip

    # a window the consumer holds loses its receipt: unverifiable, uncovered, underbilled
    drop_receipt(pair, 2)  # bytes [1 MiB, 2 MiB)
    found = pair.violations(source, settle_seconds=1)
    assert len(found) == 3, found
    assert "does not verify (exit 1): record 2: unreceipted: no receipt" in found[0]
    assert found[1] == (
        f"the consumer holds {SIZE} bytes of provider transfer {tp['provider_pid']}, but bytes"
        f" [{MIB}, {2 * MIB}) are not covered by a receipted metering record"
    )
    assert (
        found[2]
        == f"the invoices of {agreement_id} bill {SIZE - MIB} bytes, but the consumer holds {SIZE}"
    )


def test_a_provider_killed_mid_pull_leaves_no_byte_unmetered(pair: Pair) -> None:
    """A real fault the checker must catch: the provider is SIGKILLed while a window is open
    (1.5 MiB delivered, 1 MiB windows), restarted, and the pull resumes with Range."""
    data = os.urandom(SIZE)
    source = GatedSource(data, hold_after=MIB + MIB // 2)
    try:
        agreement_id = pair.offer(source.url)
        cid = pair.transfer(agreement_id)["id"]
        wait_for("the open window's bytes to arrive", lambda: pair.held(cid) >= MIB + MIB // 2)
        sigkill(pair.provider)
        source.release.set()
        pair.provider.start()
        assert pair.terminal(cid)["state"] == "COMPLETED"
        found = pair.violations(hashlib.sha256(data).hexdigest(), settle_seconds=5)
    finally:
        source.close()
    assert found == [], "\n".join(found)
