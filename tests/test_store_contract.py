"""The Store contract, run against both stores: SQLite and PostgreSQL (a real server).

Every method of connector/store/base.py is exercised here with the same expectations, so
the two stores behave alike; the PostgreSQL-only cases check what replicas sharing one
database rely on (two connections at once)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from connector.config import Settings
from connector.errors import ConfigError, NotFound
from connector.model.metering import MeteringEntry, MeteringHead
from connector.model.records import (
    Agreement,
    Dataset,
    DecisionRecord,
    Job,
    Negotiation,
    TimelineEntry,
    Transfer,
)
from connector.model.usage import DeletionDuty, UseEntry
from connector.store.base import (
    Duplicate,
    SchemaTooNew,
    Store,
    StoreOnEventLoop,
    StoreUnavailable,
)
from connector.store.migrations import LATEST
from connector.store.open import open_store
from connector.store.postgres import PostgresStore
from connector.store.schema import INDEXES, SCHEMA
from connector.store.sqlite import SqliteStore


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened: Store
    if request.param == "sqlite":
        opened = SqliteStore(tmp_path / "c.db")
    else:
        opened = PostgresStore(request.getfixturevalue("database_url"))
    yield opened
    opened.close()


def negotiation(pid: str, **kw: Any) -> Negotiation:
    values: dict[str, Any] = {
        "id": pid,
        "role": "provider",
        "state": "REQUESTED",
        "consumer_pid": f"c-{pid}",
        "counterparty_id": "did:web:peer",
        "counterparty_address": "http://peer/dsp",
        "dataset_id": "ds-1",
        "offer": {"@id": "o1", "permission": [{"action": "use"}]},
        "offer_by": "consumer",
    }
    return Negotiation(**(values | kw))


def transfer(pid: str, **kw: Any) -> Transfer:
    values: dict[str, Any] = {
        "id": pid,
        "role": "provider",
        "state": "REQUESTED",
        "consumer_pid": f"c-{pid}",
        "agreement_id": "a-1",
        "dataset_id": "ds-1",
        "format": "HttpData-PULL",
        "counterparty_id": "did:web:peer",
        "counterparty_address": "http://peer/dsp",
    }
    return Transfer(**(values | kw))


def metering(agreement: str, seq: int, prev: str | None, transfer_id: str = "t-1") -> MeteringEntry:
    return MeteringEntry(
        agreement_id=agreement,
        seq=seq,
        transfer_id=transfer_id,
        kind="window",
        hash=f"h{seq}",
        record={"seq": seq, "prev": prev},
        signature="sig",
    )


def use(agreement: str, seq: int, prev: str | None, transfer_id: str = "p-1") -> UseEntry:
    record = {"seq": seq, "prev": prev, "at": f"2026-01-0{seq + 1}T00:00:00Z"}
    return UseEntry(
        agreement_id=agreement,
        seq=seq,
        hash=f"u{seq}",
        record={**record, "transfer": transfer_id},
        signature="sig",
    )


def duty(duty_id: str, **kw: Any) -> DeletionDuty:
    values: dict[str, Any] = {
        "id": duty_id,
        "role": "consumer",
        "agreement_id": "a-1",
        "dataset_id": "ds-1",
        "counterparty_id": "did:web:peer",
        "due_at": 100.0,
    }
    return DeletionDuty(**(values | kw))


# records ----------------------------------------------------------------------------------


def test_datasets(store: Store) -> None:
    ds = Dataset(id="b", title="B", source={"type": "file", "path": "/x"}, offers=[{"@id": "o"}])
    store.put_dataset(ds)
    store.put_dataset(Dataset(id="a", source={}, offers=[], keywords=["k"], size=3))
    assert store.get_dataset("b") == ds
    assert [d.id for d in store.list_datasets()] == ["a", "b"]
    store.put_dataset(ds.model_copy(update={"title": "B2"}))  # replaces
    assert (store.get_dataset("b") or ds).title == "B2"
    assert store.delete_dataset("b") is True
    assert store.delete_dataset("b") is False
    assert store.get_dataset("b") is None


def test_negotiations(store: Store) -> None:
    store.insert_negotiation(negotiation("n1", purpose="research"))
    store.insert_negotiation(negotiation("n2", role="consumer", provider_pid="p-2"))
    with pytest.raises(Duplicate):
        store.insert_negotiation(negotiation("n1"))
    got = store.get_negotiation("n1")
    assert got is not None and got.offer["permission"] == [{"action": "use"}]
    assert got.purpose == "research"
    found = store.find_negotiation(role="consumer", provider_pid="p-2")
    assert found is not None and found.id == "n2"
    assert store.find_negotiation(role="consumer", provider_pid="nope") is None
    before = got.updated_at
    time.sleep(0.002)
    updated = store.update_negotiation("n1", state="AGREED", reason=["x", "y"])
    assert updated.state == "AGREED" and updated.reason == ["x", "y"]
    assert updated.updated_at > before
    with store.transaction():
        locked = store.lock_negotiation("n1")
    assert locked is not None and locked.state == "AGREED"
    assert store.lock_negotiation("missing") is None
    with pytest.raises(NotFound):
        store.update_negotiation("missing", state="AGREED")
    assert {n.id for n in store.list_negotiations()} == {"n1", "n2"}
    assert len(store.list_negotiations(limit=1)) == 1
    assert len(store.list_negotiations(limit=10, offset=1)) == 1


def test_count_open_negotiations(store: Store) -> None:
    """The per-peer cap counts a peer's open negotiations it opened (the `initiator`)."""
    closed = ["FINALIZED", "TERMINATED"]
    peer = {"counterparty_id": "did:web:peer", "role": "provider", "initiator": "consumer"}
    assert store.count_open_negotiations(closed, **peer) == 0
    store.insert_negotiation(negotiation("o1", initiator="consumer"))
    store.insert_negotiation(negotiation("o2", initiator="consumer", state="AGREED"))
    store.insert_negotiation(negotiation("o3", initiator="consumer", state="TERMINATED"))
    store.insert_negotiation(negotiation("o4", initiator="consumer", counterparty_id="did:web:x"))
    store.insert_negotiation(negotiation("o5"))  # a record from before `initiator` was kept
    assert store.count_open_negotiations(closed, **peer) == 2
    store.update_negotiation("o2", state="FINALIZED")
    assert store.count_open_negotiations(closed, **peer) == 1
    assert (store.get_negotiation("o1") or negotiation("x")).initiator == "consumer"


def test_agreements(store: Store) -> None:
    a = Agreement(
        id="a-1",
        negotiation_id="n1",
        dataset_id="ds-1",
        provider_id="did:web:p",
        consumer_id="did:web:c",
        body={"@id": "a-1", "permission": [{"action": "use"}]},
        provider_signature="ps",
    )
    store.put_agreement(a)
    assert store.get_agreement("a-1") == a
    store.put_agreement(a.model_copy(update={"consumer_signature": "cs"}))
    assert (store.get_agreement("a-1") or a).consumer_signature == "cs"
    with store.transaction():
        assert (store.lock_agreement("a-1") or a).consumer_signature == "cs"
    done = store.update_agreement("a-1", terminated_at="t", termination_reason="r")
    assert done.terminated_at == "t" and done.termination_reason == "r"
    assert [x.id for x in store.list_agreements()] == ["a-1"]
    assert store.list_agreements(offset=1) == []
    with pytest.raises(NotFound):
        store.update_agreement("nope", terminated_at="t")


def test_transfers(store: Store) -> None:
    store.insert_transfer(transfer("t1", data_address={"endpoint": "http://x"}))
    store.insert_transfer(transfer("t2", role="consumer", agreement_id="a-2"))
    with pytest.raises(Duplicate):
        store.insert_transfer(transfer("t1"))
    got = store.get_transfer("t1")
    assert got is not None and got.data_address == {"endpoint": "http://x"}
    assert (store.find_transfer(consumer_pid="c-t2") or got).id == "t2"
    moved = store.update_transfer("t1", state="STARTED", bytes=10, sha256="abc")
    assert (moved.state, moved.bytes, moved.sha256) == ("STARTED", 10, "abc")
    with store.transaction():
        assert (store.lock_transfer("t1") or got).state == "STARTED"
    assert [t.id for t in store.agreement_transfers("a-1", "provider")] == ["t1"]
    assert store.agreement_transfers("a-1", "consumer") == []
    assert {t.id for t in store.list_transfers()} == {"t1", "t2"}
    with pytest.raises(NotFound):
        store.update_transfer("nope", state="STARTED")


def test_untouched_transfers(store: Store) -> None:
    """What the idle watchdog looks at: open transfers not updated since a time, oldest first."""
    old, older = "2026-01-01T00:00:01.000Z", "2026-01-01T00:00:00.000Z"
    store.insert_transfer(transfer("t1", state="STARTED", updated_at=old))
    store.insert_transfer(transfer("t2", state="SUSPENDED", updated_at=older))
    store.insert_transfer(transfer("t3", state="COMPLETED", updated_at=older))
    store.insert_transfer(transfer("t4", state="STARTED"))  # updated now
    closed = ["COMPLETED", "TERMINATED"]
    cutoff = "2026-06-01T00:00:00.000Z"
    assert [t.id for t in store.untouched_transfers(closed, cutoff, 10)] == ["t2", "t1"]
    assert [t.id for t in store.untouched_transfers(closed, cutoff, 1)] == ["t2"]
    assert store.untouched_transfers(closed, older, 10) == []
    store.update_transfer("t2")  # touched: updated_at is now
    assert [t.id for t in store.untouched_transfers(closed, cutoff, 10)] == ["t1"]


def test_untouched_negotiations(store: Store) -> None:
    store.insert_negotiation(negotiation("n1", state="OFFERED", updated_at="2026-01-01T00:00:00Z"))
    store.insert_negotiation(
        negotiation("n2", state="FINALIZED", updated_at="2026-01-01T00:00:00Z")
    )
    store.insert_negotiation(negotiation("n3", state="OFFERED"))
    closed = ["FINALIZED", "TERMINATED"]
    found = store.untouched_negotiations(closed, "2026-06-01T00:00:00.000Z", 10)
    assert [n.id for n in found] == ["n1"]


def test_timeline(store: Store) -> None:
    store.add_event(TimelineEntry(process_id="p", direction="sent", message_type="A", status=200))
    store.add_event(
        TimelineEntry(process_id="p", direction="received", message_type="B", body={"k": [1]})
    )
    store.add_event(TimelineEntry(process_id="q", direction="note", message_type="C"))
    events = store.timeline("p")
    assert [e.message_type for e in events] == ["A", "B"]
    assert events[0].status == 200 and events[1].body == {"k": [1]}
    assert events[0].seq is not None and events[1].seq is not None
    assert events[0].seq < events[1].seq


def test_transaction_rolls_back_everything(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        store.insert_negotiation(negotiation("n1"))
        with store.transaction():  # nested: part of the outer one
            store.add_event(TimelineEntry(process_id="n1", direction="note", message_type="x"))
        raise RuntimeError("boom")
    assert store.get_negotiation("n1") is None
    assert store.timeline("n1") == []


def test_decisions(store: Store) -> None:
    records = [
        DecisionRecord(
            phase="transfer",
            input_sha256=f"h{i}",
            allow=i % 2 == 0,
            reasons=[] if i % 2 == 0 else ["no"],
            engine="embedded",
            policy_version="v1",
            limits={"bytes_remaining": 5},
        )
        for i in range(3)
    ]
    store.add_decisions(records)
    newest_first = store.list_decisions()
    assert [d.input_sha256 for d in newest_first] == ["h2", "h1", "h0"]
    assert [d.allow for d in newest_first] == [True, False, True]
    assert newest_first[1].reasons == ["no"] and newest_first[0].limits == {"bytes_remaining": 5}
    assert [d.input_sha256 for d in store.list_decisions(limit=1, offset=1)] == ["h1"]


def test_jti_replay(store: Store) -> None:
    later = int(time.time()) + 60
    assert store.remember_jti("j1", later) is True
    assert store.remember_jti("j1", later) is False  # replayed
    assert store.remember_jti("j2", later) is True
    # an expired one is forgotten, so its id may be seen again
    assert store.remember_jti("old", int(time.time()) - 10) is True
    assert store.remember_jti("old", later) is True


# jobs -------------------------------------------------------------------------------------


def job(process: str, kind: str = "cn-send", **kw: Any) -> Job:
    return Job(process_id=process, kind=kind, payload={"type": kind}, **kw)


def test_jobs_are_claimed_in_order_per_process(store: Store) -> None:
    first = store.add_job(job("p1"))
    second = store.add_job(job("p1"))
    data = store.add_job(job("p1", "dp-pull"))
    other = store.add_job(job("p2"))
    later = store.add_job(job("p3", next_at=time.time() + 3600))
    now = time.time()
    claimed = store.claim_jobs(now, 10, "r1", now + 30)
    assert [j.id for j in claimed] == [first, other]
    assert all(j.status == "running" and j.owner == "r1" for j in claimed)
    assert store.claim_jobs(now, 10, "r2", now + 30) == []  # nothing twice
    assert store.update_job(first, owner="r2", status="done") is False  # not r2's
    assert store.update_job(first, owner="r1", status="done", attempts=1) is True
    # the message after it runs, the data move waits for it
    assert [j.id for j in store.claim_jobs(now, 10, "r2", now + 30)] == [second]
    # ... but a message never waits for a data move
    after_data = store.add_job(job("p1"))
    store.update_job(second, status="done")
    claimed = store.claim_jobs(now, 10, "r1", now + 30)
    assert [j.id for j in claimed] == [data, after_data]
    assert [j.id for j in store.pending_jobs("p1")] == [data, after_data]
    assert [j.id for j in store.pending_jobs("p3")] == [later]
    assert store.claim_jobs(now, 10, "r1", now + 30) == []


def test_job_leases(store: Store) -> None:
    a = store.add_job(job("p1"))
    b = store.add_job(job("p2"))
    now = time.time()
    store.claim_jobs(now, 10, "r1", now + 1)
    assert store.renew_leases("r1", [a, b], now + 5) == {a, b}
    assert store.renew_leases("r2", [a, b], now + 5) == set()
    # r1 stops renewing: once the lease expired, the job is pending again, attempt counted
    assert store.reclaim_expired_jobs(now + 1) == []
    [lost, lost2] = store.reclaim_expired_jobs(now + 6)
    assert {lost.id, lost2.id} == {a, b} and lost.owner == "r1" and lost.attempts == 0
    assert store.renew_leases("r1", [a, b], now + 10) == set()  # r1 no longer holds them
    retaken = store.claim_jobs(now + 6, 10, "r2", now + 36)
    assert {j.id for j in retaken} == {a, b} and all(j.attempts == 1 for j in retaken)
    # a graceful hand-over: pending again at once
    [handed] = store.release_jobs("r2", [a])
    assert handed.id == a
    assert store.release_jobs("r1", [b]) == []  # not r1's
    assert [j.id for j in store.claim_jobs(now + 6, 10, "r3", now + 36)] == [a]
    assert store.pending_jobs("p1")[0].attempts == 2


def test_reset_running_jobs_at_start(store: Store) -> None:
    a = store.add_job(job("p1"))
    now = time.time()
    store.claim_jobs(now, 10, "r1", now + 3600)  # a live lease
    reset = store.reset_running_jobs()
    if store.shared:
        assert reset == []  # another replica may be running it
    else:
        assert [j.id for j in reset] == [a]  # one process per file: it was ours
        assert store.pending_jobs("p1")[0].status == "pending"


def test_reset_running_jobs_takes_back_a_killed_earlier_process_s_jobs(store: Store) -> None:
    """A restarted replica need not wait out the leases its killed predecessor held."""
    mine, alive = store.add_job(job("p1")), store.add_job(job("p2"))
    now = time.time()
    store.claim_jobs(now, 1, "host:1:killed", now + 3600)
    store.claim_jobs(now, 1, "host:2:running", now + 3600)
    reset = store.reset_running_jobs(lambda owner: owner == "host:1:killed")
    assert [j.id for j in reset] == ([mine] if store.shared else [mine, alive])
    assert store.pending_jobs("p1")[0].status == "pending"


def test_named_leases(store: Store) -> None:
    assert store.try_lease("x", "r1", 110, 100) is True
    assert store.try_lease("x", "r2", 120, 105) is False
    assert store.try_lease("x", "r1", 130, 105) is True  # renewed by its holder
    assert store.try_lease("x", "r2", 200, 131) is True  # expired: taken over
    assert store.try_lease("y", "r1", 200, 131) is True


# chains -----------------------------------------------------------------------------------


def test_metering_chain(store: Store) -> None:
    for _ in range(3):
        store.append_metering("a-1", lambda seq, prev: metering("a-1", seq, prev))
    store.append_metering("a-2", lambda seq, prev: metering("a-2", seq, prev, "t-2"))
    chain = store.metering_chain("a-1")
    assert [(e.seq, e.record["prev"]) for e in chain] == [(0, None), (1, "h0"), (2, "h1")]
    assert [e.agreement_id for e in store.metering_chain()] == ["a-1"] * 3 + ["a-2"]
    assert [e.seq for e in store.metering_chain(transfer_id="t-2")] == [0]
    store.set_metering_receipt("a-1", 1, receipt="r1", refusal=None)
    store.set_metering_receipt("a-1", 2, receipt=None, refusal="bad hash")
    chain = store.metering_chain("a-1")
    assert (chain[1].receipt, chain[2].refusal) == ("r1", "bad hash")
    # a stored receipt is final; a refusal may still become a receipt
    store.set_metering_receipt("a-1", 1, receipt=None, refusal="never mind")
    store.set_metering_receipt("a-1", 2, receipt="r2", refusal=None)
    chain = store.metering_chain("a-1")
    assert [(e.receipt, e.refusal) for e in chain[1:]] == [("r1", None), ("r2", None)]
    # the consumer's copy: put (again) replaces
    store.put_metering([metering("a-9", 0, None), metering("a-9", 1, "h0")])
    store.put_metering([metering("a-9", 1, "h0").model_copy(update={"receipt": "x"})])
    assert [e.receipt for e in store.metering_chain("a-9")] == [None, "x"]


def test_metering_heads_keep_the_longest(store: Store) -> None:
    def head(count: int) -> MeteringHead:
        body = {"count": count, "head": f"h{count - 1}"}
        return MeteringHead(id="a-1", count=count, body=body, signature="s", receipt="r")

    assert store.metering_head("a-1") is None
    with store.transaction():
        assert store.put_metering_head(head(3))
    with store.transaction():
        assert not store.put_metering_head(head(2))
        assert not store.put_metering_head(head(3))
    kept = store.metering_head("a-1")
    assert kept is not None and kept.count == 3 and kept.body == {"count": 3, "head": "h2"}
    with store.transaction():
        assert store.put_metering_head(head(5))
    assert (store.metering_head("a-1") or head(0)).count == 5


def test_a_failing_append_leaves_no_link(store: Store) -> None:
    def broken(seq: int, prev: str | None) -> MeteringEntry:
        raise ValueError("signing failed")

    with pytest.raises(ValueError):
        store.append_metering("a-1", broken)
    store.append_metering("a-1", lambda seq, prev: metering("a-1", seq, prev))
    assert [e.seq for e in store.metering_chain("a-1")] == [0]


def test_uses(store: Store) -> None:
    for _ in range(2):
        store.append_use("a-1", lambda seq, prev: use("a-1", seq, prev))
    store.append_use("a-1", lambda seq, prev: use("a-1", seq, prev, "p-2"))
    assert [u.seq for u in store.list_uses("a-1")] == [0, 1, 2]
    assert [u.seq for u in store.list_uses("a-1", [2, 0])] == [0, 2]
    assert store.list_uses("a-1", []) == []
    summary = store.use_summary("a-1", "p-2")
    assert summary == (3, "2026-01-01T00:00:00Z", True)
    assert store.use_summary("a-1", "p-9").of_transfer is False
    assert store.use_summary("none", "p-1") == (0, None, False)
    store.mark_uses_reported("a-1", [0, 2], "2026-02-01T00:00:00Z")
    assert [u.reported_at for u in store.list_uses("a-1")] == [
        "2026-02-01T00:00:00Z",
        None,
        "2026-02-01T00:00:00Z",
    ]
    store.put_uses([use("a-5", 0, None), use("a-5", 1, "u0")])
    assert [u.record["prev"] for u in store.list_uses("a-5")] == [None, "u0"]


def test_deletions(store: Store) -> None:
    store.put_deletion(duty("d1", due_at=50.0))
    store.put_deletion(duty("d2", due_at=150.0, role="provider", counterparty_id="did:web:x"))
    store.put_deletion(duty("d3", due_at=None))
    assert (store.get_deletion("d1") or duty("x")).due_at == 50.0
    done = store.update_deletion("d1", state="fulfilled", receipt={"r": 1}, notes=["n"])
    assert done.receipt == {"r": 1} and done.notes == ["n"] and done.state == "fulfilled"
    with pytest.raises(NotFound):
        store.update_deletion("nope", state="fulfilled")
    assert {d.id for d in store.list_deletions()} == {"d1", "d2", "d3"}
    assert [d.id for d in store.list_deletions(role="provider")] == ["d2"]
    assert [d.id for d in store.list_deletions(state="fulfilled")] == ["d1"]
    assert [d.id for d in store.list_deletions(counterparty_id="did:web:x")] == ["d2"]
    assert store.list_deletions(agreement_id="a-2") == []
    assert len(store.list_deletions(limit=2)) == 2
    due = store.due_deletions("consumer", ("pending", "fulfilled"), 100)
    assert [d.id for d in due] == ["d1"]
    assert store.due_deletions("consumer", ("pending",), 100) == []
    assert [d.id for d in store.due_deletions("provider", ("pending",), 200)] == ["d2"]


def test_record_counts(store: Store) -> None:
    """What /metrics reports: the same group-by counts from both databases."""
    empty = store.record_counts()
    assert (empty.negotiations, empty.transfers, empty.metering_records) == ({}, {}, 0)
    store.insert_negotiation(negotiation("n1"))
    store.insert_negotiation(negotiation("n2"))
    store.insert_negotiation(negotiation("n3", role="consumer", state="FINALIZED"))
    store.insert_transfer(transfer("t1", state="COMPLETED", bytes=100))
    store.insert_transfer(transfer("t2", state="COMPLETED", bytes=20))
    store.insert_transfer(transfer("t3", role="consumer", bytes=7))
    store.add_decisions(
        [
            DecisionRecord(
                phase="transfer",
                input_sha256=f"h{i}",
                allow=i != 1,
                engine="embedded",
                policy_version="v1",
            )
            for i in range(3)
        ]
    )
    for _ in range(2):
        store.append_metering("a-1", lambda seq, prev: metering("a-1", seq, prev))
    store.put_deletion(duty("d1"))
    store.put_deletion(duty("d2", state="fulfilled"))
    counts = store.record_counts()
    assert counts.negotiations == {("provider", "REQUESTED"): 2, ("consumer", "FINALIZED"): 1}
    assert counts.transfers == {("provider", "COMPLETED"): 2, ("consumer", "REQUESTED"): 1}
    assert counts.transfer_bytes == {"provider": 120, "consumer": 7}
    assert counts.decisions == {("transfer", "allow"): 2, ("transfer", "deny"): 1}
    assert counts.metering_records == 2
    assert counts.deletion_duties == {"pending": 1, "fulfilled": 1}


# PostgreSQL: two connections at once, as two replicas have ---------------------------------


@pytest.fixture
def two(database_url: str) -> Iterator[tuple[PostgresStore, PostgresStore]]:
    a, b = PostgresStore(database_url), PostgresStore(database_url)
    yield a, b
    a.close()
    b.close()


def test_concurrent_appends_from_two_replicas_make_one_gap_free_chain(
    two: tuple[PostgresStore, PostgresStore],
) -> None:
    errors: list[BaseException] = []

    def append(store: PostgresStore, n: int) -> None:
        try:
            for _ in range(n):
                store.append_metering("a-1", lambda seq, prev: metering("a-1", seq, prev))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(s, 40)) for s in two]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    chain = two[0].metering_chain("a-1")
    assert [e.seq for e in chain] == list(range(80))
    assert all(e.record["prev"] == (f"h{e.seq - 1}" if e.seq else None) for e in chain)


def test_a_job_is_claimed_by_one_replica_only(two: tuple[PostgresStore, PostgresStore]) -> None:
    for i in range(60):
        two[0].add_job(job(f"p{i}"))
    claimed: dict[str, list[int]] = {"a": [], "b": []}

    def claim(name: str, store: PostgresStore) -> None:
        while True:
            now = time.time()
            got = store.claim_jobs(now, 3, name, now + 30)
            if not got:
                return
            claimed[name] += [j.id or 0 for j in got]

    threads = [threading.Thread(target=claim, args=(n, s)) for n, s in zip("ab", two, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    both = claimed["a"] + claimed["b"]
    assert len(both) == 60 and len(set(both)) == 60


def test_jti_replayed_at_the_other_replica(two: tuple[PostgresStore, PostgresStore]) -> None:
    later = int(time.time()) + 60
    assert two[0].remember_jti("j", later) is True
    assert two[1].remember_jti("j", later) is False


def second_replica_waits(
    two: tuple[PostgresStore, PostgresStore],
    read: Callable[[PostgresStore], str],
    write: Callable[[PostgresStore], object],
) -> list[str]:
    """The first store locks and reads a row, then changes it; what both read, the second
    locking the same row meanwhile from another thread (it must wait for the commit)."""
    a, b = two
    seen: list[str] = []
    with a.transaction():
        seen.append(read(a))

        def other() -> None:
            with b.transaction():
                seen.append(read(b))

        thread = threading.Thread(target=other)
        thread.start()
        thread.join(0.5)
        assert len(seen) == 1  # blocked by the row lock
        write(a)
    thread.join(10)
    return seen


def test_a_locked_process_waits_for_the_other_replica(
    two: tuple[PostgresStore, PostgresStore],
) -> None:
    """The second replica reads the state only after the first committed its transition."""
    two[0].insert_negotiation(negotiation("n1"))
    seen = second_replica_waits(
        two,
        lambda s: (s.lock_negotiation("n1") or negotiation("x")).state,
        lambda s: s.update_negotiation("n1", state="AGREED"),
    )
    assert seen == ["REQUESTED", "AGREED"]


def test_a_transfer_accepted_under_the_agreement_lock_is_seen_by_the_other_replica(
    two: tuple[PostgresStore, PostgresStore],
) -> None:
    """Deciding a transfer request locks its agreement: the other replica reads the transfers
    (and their reservations) only after the first has written the one it accepted."""
    two[0].put_agreement(
        Agreement(
            id="a-1",
            negotiation_id="n1",
            dataset_id="ds-1",
            provider_id="did:web:p",
            consumer_id="did:web:c",
            body={},
        )
    )

    def read(s: PostgresStore) -> str:
        assert s.lock_agreement("a-1") is not None
        return str(len(s.agreement_transfers("a-1", "provider")))

    seen = second_replica_waits(two, read, lambda s: s.insert_transfer(transfer("t1")))
    assert seen == ["0", "1"]


def test_a_receipt_committed_by_one_replica_is_seen_by_the_others_overdue_check(
    two: tuple[PostgresStore, PostgresStore],
) -> None:
    """The overdue check re-reads the duty under its row lock: a receipt committed meanwhile
    wins instead of being overwritten by a stale 'pending'."""
    two[0].put_deletion(duty("d1", due_at=50.0, role="provider"))
    seen = second_replica_waits(
        two,
        lambda s: (s.lock_deletion("d1") or duty("x")).state,
        lambda s: s.update_deletion("d1", state="fulfilled"),
    )
    assert seen == ["pending", "fulfilled"]


def test_a_second_start_runs_no_schema_statements(database_url: str) -> None:
    """Replicas restarting on an up-to-date schema take no table locks (schema_version)."""
    PostgresStore(database_url).close()
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("alter table negotiations add column probe text")
    PostgresStore(database_url).close()  # same schema version: the probe column stays
    with psycopg.connect(database_url, autocommit=True) as conn:
        cols = [r[0] for r in conn.execute(
            "select column_name from information_schema.columns where table_name = 'negotiations'"
        )]  # fmt: skip
    assert "probe" in cols and "counterparty_credentials" in cols


def test_schema_created_by_replicas_starting_at_once(database_url: str) -> None:
    stores: list[PostgresStore] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            stores.append(PostgresStore(database_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(stores) == 4
    stores[0].insert_negotiation(negotiation("n1"))
    assert stores[3].get_negotiation("n1") is not None
    for s in stores:
        s.close()


def test_unreachable_database_is_a_clear_error(postgres: Any) -> None:
    from connector.ports import free_port

    url = f"postgresql://someone:secret@127.0.0.1:{free_port()}/db"
    with pytest.raises(StoreUnavailable) as err:
        PostgresStore(url)
    assert "cannot connect to postgresql://someone:***@127.0.0.1" in str(err.value)
    assert "secret" not in str(err.value)


# one schema, one migration history ----------------------------------------------------------


class Database:
    """One empty database of either kind: stores opened on it, and plain SQL run on it as the
    code before one store (or another program) would."""

    def __init__(self, kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
        self.kind = kind
        self.url = request.getfixturevalue("database_url") if kind == "postgres" else ""
        self.settings = Settings(
            data_dir=tmp_path, api_key="k" * 24, database_url=self.url or None
        )  # fmt: skip
        self.path = self.settings.db_path

    def open(self, **kw: Any) -> Store:
        return open_store(self.settings, **kw)

    def execute(self, script: str) -> list[tuple[Any, ...]]:
        """Each statement of `script`; the rows of the last."""
        rows: list[tuple[Any, ...]] = []
        statements = [s for s in script.split(";\n") if s.strip()]
        if self.kind == "sqlite":
            with contextlib.closing(sqlite3.connect(self.path, isolation_level=None)) as conn:
                for statement in statements:
                    rows = conn.execute(statement).fetchall()
            return rows
        with psycopg.connect(self.url, autocommit=True) as pg:
            for statement in statements:
                cursor = pg.execute(statement.replace("%", "%%"))  # type: ignore[arg-type]
                rows = cursor.fetchall() if cursor.description else []
        return rows

    def indexes(self) -> set[str]:
        if self.kind == "sqlite":
            sql = "select name from sqlite_master where type = 'index' and sql is not null"
        else:
            sql = "select indexname from pg_indexes where schemaname = current_schema()"
        return {r[0] for r in self.execute(sql)}


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    return Database(request.param, tmp_path, request)


# The DDL the code before one store ran (commit 13282c8), copied here: what a database made by
# it holds. SQLite (sqlite-utils), at PRAGMA user_version 2:
OLD_SQLITE_DDL = """
CREATE TABLE "datasets" ("id" TEXT PRIMARY KEY, "title" TEXT, "description" TEXT,
 "keywords" TEXT, "themes" TEXT, "media_type" TEXT, "source" TEXT, "offers" TEXT,
 "classification" TEXT, "size" INTEGER, "sha256" TEXT, "created_at" TEXT);
CREATE TABLE "negotiations" ("id" TEXT PRIMARY KEY, "role" TEXT, "state" TEXT,
 "provider_pid" TEXT, "consumer_pid" TEXT, "counterparty_id" TEXT, "counterparty_address" TEXT,
 "dataset_id" TEXT, "offer" TEXT, "offer_by" TEXT, "initiator" TEXT, "agreement_id" TEXT,
 "purpose" TEXT, "reason" TEXT, "counterparty_credentials" TEXT, "created_at" TEXT,
 "updated_at" TEXT);
CREATE TABLE "agreements" ("id" TEXT PRIMARY KEY, "negotiation_id" TEXT, "dataset_id" TEXT,
 "provider_id" TEXT, "consumer_id" TEXT, "body" TEXT, "provider_signature" TEXT,
 "consumer_signature" TEXT, "policy_version" TEXT, "terminated_at" TEXT,
 "termination_reason" TEXT, "created_at" TEXT);
CREATE TABLE "transfers" ("id" TEXT PRIMARY KEY, "role" TEXT, "state" TEXT,
 "provider_pid" TEXT, "consumer_pid" TEXT, "agreement_id" TEXT, "dataset_id" TEXT,
 "format" TEXT, "counterparty_id" TEXT, "counterparty_address" TEXT, "data_address" TEXT,
 "bytes" INTEGER, "sha256" TEXT, "path" TEXT, "purpose" TEXT, "limit_bytes" INTEGER,
 "reason" TEXT, "created_at" TEXT, "updated_at" TEXT);
CREATE TABLE "deletion_duties" ("id" TEXT PRIMARY KEY, "role" TEXT, "agreement_id" TEXT,
 "dataset_id" TEXT, "counterparty_id" TEXT, "peer_transfer_id" TEXT, "deadline" TEXT,
 "due_at" REAL, "fixed_by" TEXT, "state" TEXT, "path" TEXT, "receipt" TEXT, "signature" TEXT,
 "fulfilled_at" TEXT, "delivered_at" TEXT, "delivered_bytes" INTEGER, "delivered_sha256" TEXT,
 "notes" TEXT, "created_at" TEXT, "updated_at" TEXT);
CREATE TABLE "metering_heads" ("id" TEXT PRIMARY KEY, "count" INTEGER, "body" TEXT,
 "signature" TEXT, "receipt" TEXT);
CREATE TABLE "decisions" ("seq" INTEGER PRIMARY KEY, "at" TEXT, "phase" TEXT,
 "process_id" TEXT, "dataset_id" TEXT, "consumer_id" TEXT, "input_sha256" TEXT,
 "allow" INTEGER, "reasons" TEXT, "obligations" TEXT, "limits" TEXT, "engine" TEXT,
 "policy_version" TEXT);
CREATE TABLE "timeline" ("seq" INTEGER PRIMARY KEY, "process_id" TEXT, "direction" TEXT,
 "message_type" TEXT, "state" TEXT, "status" INTEGER, "detail" TEXT, "body" TEXT, "at" TEXT);
CREATE INDEX "idx_timeline_process_id" ON "timeline" ("process_id");
CREATE TABLE "jobs" ("id" INTEGER PRIMARY KEY, "process_id" TEXT, "kind" TEXT,
 "payload" TEXT, "attempts" INTEGER, "next_at" REAL, "status" TEXT, "last_error" TEXT,
 "owner" TEXT, "lease_until" REAL);
CREATE INDEX "idx_jobs_status_process_id" ON "jobs" ("status", "process_id");
CREATE TABLE "leases" ("name" TEXT PRIMARY KEY, "owner" TEXT, "until" REAL);
CREATE TABLE "metering" ("agreement_id" TEXT, "seq" INTEGER, "transfer_id" TEXT, "kind" TEXT,
 "hash" TEXT, "record" TEXT, "signature" TEXT, "receipt" TEXT, "refusal" TEXT,
 PRIMARY KEY ("agreement_id", "seq"));
CREATE INDEX "idx_metering_transfer_id" ON "metering" ("transfer_id");
CREATE TABLE "uses" ("agreement_id" TEXT, "seq" INTEGER, "hash" TEXT, "record" TEXT,
 "signature" TEXT, "reported_at" TEXT, PRIMARY KEY ("agreement_id", "seq"));
CREATE TABLE "seen_tokens" ("jti" TEXT PRIMARY KEY, "expires_at" INTEGER);
CREATE INDEX "idx_negotiations_consumer_pid" ON "negotiations" ("consumer_pid");
CREATE INDEX "idx_negotiations_provider_pid" ON "negotiations" ("provider_pid");
CREATE INDEX "idx_transfers_consumer_pid" ON "transfers" ("consumer_pid");
CREATE INDEX "idx_transfers_provider_pid" ON "transfers" ("provider_pid");
CREATE INDEX "idx_transfers_agreement_id" ON "transfers" ("agreement_id");
CREATE INDEX "idx_deletion_duties_role_state_due_at"
 ON "deletion_duties" ("role", "state", "due_at");
CREATE INDEX "idx_deletion_duties_agreement_id" ON "deletion_duties" ("agreement_id");
CREATE INDEX "idx_negotiations_role_state" ON "negotiations" ("role", "state");
CREATE INDEX "idx_transfers_role_state_bytes" ON "transfers" ("role", "state", "bytes");
CREATE INDEX "idx_decisions_phase_allow" ON "decisions" ("phase", "allow");
CREATE INDEX "idx_seen_tokens_expires_at" ON "seen_tokens" ("expires_at");
PRAGMA user_version=2
"""

# PostgreSQL: the tables as its create-then-add-columns DDL left them, its indexes, and the
# fingerprint of that DDL in schema_meta.
OLD_POSTGRES_DDL = """
create table datasets (id text primary key, title text, description text, keywords text,
 themes text, media_type text, source text, offers text, classification text, size bigint,
 sha256 text, created_at text);
create table negotiations (id text primary key, role text, state text, provider_pid text,
 consumer_pid text, counterparty_id text, counterparty_address text, dataset_id text,
 offer text, offer_by text, initiator text, agreement_id text, purpose text, reason text,
 counterparty_credentials text, created_at text, updated_at text);
create table agreements (id text primary key, negotiation_id text, dataset_id text,
 provider_id text, consumer_id text, body text, provider_signature text,
 consumer_signature text, policy_version text, terminated_at text, termination_reason text,
 created_at text);
create table transfers (id text primary key, role text, state text, provider_pid text,
 consumer_pid text, agreement_id text, dataset_id text, format text, counterparty_id text,
 counterparty_address text, data_address text, bytes bigint, sha256 text, path text,
 purpose text, limit_bytes bigint, reason text, created_at text, updated_at text);
create table deletion_duties (id text primary key, role text, agreement_id text,
 dataset_id text, counterparty_id text, peer_transfer_id text, deadline text,
 due_at double precision, fixed_by text, state text, path text, receipt text, signature text,
 fulfilled_at text, delivered_at text, delivered_bytes bigint, delivered_sha256 text,
 notes text, created_at text, updated_at text);
create table metering_heads (id text primary key, count bigint, body text, signature text,
 receipt text);
create table decisions (seq bigint generated by default as identity primary key,
 allow integer, at text, phase text, process_id text, dataset_id text, consumer_id text,
 input_sha256 text, reasons text, obligations text, limits text, engine text,
 policy_version text);
create table timeline (seq bigint generated by default as identity primary key,
 process_id text, direction text, message_type text, state text, status bigint, detail text,
 body text, at text);
create table jobs (id bigint generated by default as identity primary key, process_id text,
 kind text, payload text, attempts bigint, next_at double precision, status text,
 last_error text, owner text, lease_until double precision);
create table metering (agreement_id text, seq bigint, transfer_id text, kind text, hash text,
 record text, signature text, receipt text, refusal text, primary key (agreement_id, seq));
create table uses (agreement_id text, seq bigint, hash text, record text, signature text,
 reported_at text, primary key (agreement_id, seq));
create table seen_tokens (jti text primary key, expires_at bigint);
create table leases (name text primary key, owner text, until double precision);
create index timeline_process_id_idx on timeline (process_id);
create index jobs_status_process_id_idx on jobs (status, process_id);
create index metering_transfer_id_idx on metering (transfer_id);
create index negotiations_role_state_idx on negotiations (role, state);
create index transfers_role_state_bytes_idx on transfers (role, state, bytes);
create index decisions_phase_allow_idx on decisions (phase, allow);
create index seen_tokens_expires_at_idx on seen_tokens (expires_at);
create index deletion_duties_role_state_due_at_idx on deletion_duties (role, state, due_at);
create index negotiations_consumer_pid_idx on negotiations (consumer_pid);
create index negotiations_provider_pid_idx on negotiations (provider_pid);
create index transfers_consumer_pid_idx on transfers (consumer_pid);
create index transfers_provider_pid_idx on transfers (provider_pid);
create index transfers_agreement_id_idx on transfers (agreement_id);
create index deletion_duties_agreement_id_idx on deletion_duties (agreement_id);
create unique index negotiations_provider_once on negotiations (counterparty_id, consumer_pid)
 where role = 'provider';
create unique index transfers_provider_once on transfers (counterparty_id, consumer_pid)
 where role = 'provider';
create table schema_meta (id int primary key, ddl text);
insert into schema_meta (id, ddl) values (1, 'a3f1')
"""

# What the code before left in those tables: a negotiation, a job, two chain links.
OLD_ROWS = """
insert into negotiations (id, role, state, consumer_pid, counterparty_id, counterparty_address,
 dataset_id, offer, offer_by, reason, counterparty_credentials, created_at, updated_at)
 values ('n-old', 'provider', 'REQUESTED', 'c-old', 'did:web:peer', 'http://peer/dsp', 'ds-1',
 '{"@id": "o1"}', 'consumer', '[]', '{}', '2026-01-01T00:00:00.000Z',
 '2026-01-01T00:00:00.000Z');
insert into jobs (process_id, kind, payload, attempts, next_at, status)
 values ('n-old', 'cn-send', '{"type": "x"}', 0, 0, 'pending');
insert into metering (agreement_id, seq, transfer_id, kind, hash, record, signature)
 values ('a-1', 0, 't-1', 'window', 'h0', '{"seq": 0, "prev": null}', 'sig');
insert into metering (agreement_id, seq, transfer_id, kind, hash, record, signature)
 values ('a-1', 1, 't-1', 'window', 'h1', '{"seq": 1, "prev": "h0"}', 'sig')
"""


def test_a_database_made_by_the_code_before_opens_and_is_upgraded(database: Database) -> None:
    old = OLD_SQLITE_DDL if database.kind == "sqlite" else OLD_POSTGRES_DDL
    database.execute(old + ";\n" + OLD_ROWS)
    store = database.open()
    try:
        assert (store.get_negotiation("n-old") or negotiation("x")).offer == {"@id": "o1"}
        assert [j.kind for j in store.pending_jobs("n-old")] == ["cn-send"]
        assert store.add_job(job("n-old")) > (store.pending_jobs("n-old")[0].id or 0)
        store.append_metering("a-1", lambda seq, prev: metering("a-1", seq, prev))
        assert [e.record["prev"] for e in store.metering_chain("a-1")] == [None, "h0", "h1"]
        # the provider-once index now holds on both databases
        with pytest.raises(Duplicate):
            store.insert_negotiation(negotiation("n-new", consumer_pid="c-old"))
    finally:
        store.close()
    assert database.execute("select version from schema_version") == [(LATEST,)]
    indexes = database.indexes()
    assert {"negotiations_provider_once", "transfers_provider_once"} <= indexes
    assert {i.name for i in INDEXES} <= indexes
    assert not {i for i in indexes if i.startswith("idx_")}  # no index kept twice
    if database.kind == "postgres":  # the DDL fingerprint gave way to the version
        assert database.execute("select to_regclass('schema_meta')") == [(None,)]
    again = database.open()  # the second start finds nothing to do
    assert again.get_negotiation("n-old") is not None
    again.close()


def test_a_new_database_has_every_declared_column(database: Database) -> None:
    database.open().close()
    for table in SCHEMA.values():
        rows = database.execute(f"select * from {table.name} where 1 = 0")  # the table is there
        assert rows == []
    if database.kind == "sqlite":
        columns = {
            (t, r[1])
            for t in SCHEMA
            for r in database.execute(f"select * from pragma_table_info('{t}')")
        }
    else:
        columns = set(
            database.execute(
                "select table_name, column_name from information_schema.columns"
                " where table_schema = current_schema()"
            )
        )
    for table in SCHEMA.values():
        assert {(table.name, name) for name, _ in table.columns} <= columns


def test_a_store_newer_than_the_code_is_refused(database: Database) -> None:
    database.open().close()
    database.execute(f"update schema_version set version = {LATEST + 5}")
    with pytest.raises(SchemaTooNew) as err:
        database.open()
    assert f"schema version {LATEST + 5}" in str(err.value)
    assert f"newer than the {LATEST} this connector knows" in str(err.value)
    assert isinstance(err.value, ConfigError)
    with pytest.raises(SchemaTooNew):
        database.open(migrate=False)


def test_one_more_connection_needs_a_migrated_store(database: Database) -> None:
    with pytest.raises(StoreUnavailable):
        database.open(migrate=False)
    if database.kind == "sqlite":
        assert not database.path.exists()  # nothing made by a connection that only reads
    first = database.open()
    first.insert_negotiation(negotiation("n1"))
    second = database.open(migrate=False)
    assert (second.get_negotiation("n1") or negotiation("x")).id == "n1"
    second.update_negotiation("n1", state="AGREED")
    assert (first.get_negotiation("n1") or negotiation("x")).state == "AGREED"
    second.close()
    first.close()


def test_provider_once_on_both_databases(store: Store) -> None:
    """Of two provider-side records for one consumer process, the second is refused."""
    store.insert_negotiation(negotiation("n1", consumer_pid="c-x"))
    with pytest.raises(Duplicate):
        store.insert_negotiation(negotiation("n2", consumer_pid="c-x"))
    store.insert_negotiation(negotiation("n3", consumer_pid="c-x", counterparty_id="did:web:o"))
    store.insert_negotiation(negotiation("n4", consumer_pid="c-x", role="consumer"))
    store.insert_transfer(transfer("t1", consumer_pid="c-x"))
    with pytest.raises(Duplicate):
        store.insert_transfer(transfer("t2", consumer_pid="c-x"))


WRITER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
conn.execute("update negotiations set state = 'UNCOMMITTED'")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
"""


def test_a_sqlite_reader_does_not_wait_for_a_writer_in_another_process(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    SqliteStore(path).close()
    writer = SqliteStore(path)
    writer.insert_negotiation(negotiation("n1"))
    reader = SqliteStore(path, migrate=False)
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        # the reader's busy timeout would end in "database is locked" if it waited
        assert (reader.get_negotiation("n1") or negotiation("x")).state == "REQUESTED"
        assert [n.id for n in reader.list_negotiations()] == ["n1"]
    finally:
        assert proc.stdin is not None
        proc.stdin.write("\n")
        proc.stdin.close()
        proc.wait(30)
    reader.close()
    writer.close()


def test_forbid_event_loop_refuses_statements_on_the_loop_thread(database: Database) -> None:
    guarded = database.open(forbid_event_loop=True)
    plain = database.open(migrate=False)
    guarded.insert_negotiation(negotiation("n1"))  # no loop on this thread: allowed

    async def on_loop() -> None:
        with pytest.raises(StoreOnEventLoop) as err:
            guarded.get_negotiation("n1")
        assert "get_negotiation" in str(err.value)
        with pytest.raises(StoreOnEventLoop) as err:
            guarded.update_negotiation("n1", state="AGREED")
        assert "update_negotiation" in str(err.value)
        with pytest.raises(StoreOnEventLoop) as err, guarded.transaction():
            pass
        assert "transaction" in str(err.value)
        # on a worker thread it runs
        found = await asyncio.to_thread(guarded.get_negotiation, "n1")
        assert found is not None and found.state == "REQUESTED"
        # without the guard (the default) nothing changes
        assert plain.get_negotiation("n1") is not None

    asyncio.run(on_loop())
    assert (guarded.get_negotiation("n1") or negotiation("x")).state == "REQUESTED"
    plain.close()
    guarded.close()
