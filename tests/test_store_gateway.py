"""The store gateway (connector/store/gateway.py) on SQLite and a real PostgreSQL.

Writes queued while a commit is in flight are committed together, each still all-or-nothing
and answered only once durable; reads go on while the writer waits for a lock another
process holds, and the event loop is never the one waiting."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from connector.errors import BadRequest, Unauthorized
from connector.model.records import Negotiation, TimelineEntry
from connector.store.base import Store
from connector.store.gateway import Database
from connector.store.postgres import PostgresStore
from connector.store.sqlite import SqliteStore


@pytest.fixture(params=["sqlite", "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    if request.param == "sqlite":
        return lambda: SqliteStore(tmp_path / "c.db", forbid_event_loop=True)
    url = request.getfixturevalue("database_url")
    return lambda: PostgresStore(url, forbid_event_loop=True)


@pytest.fixture
def db(opener: Callable[[], Store]) -> Iterator[Database]:
    database = Database(opener(), opener)
    yield database
    database.close()


def event(process_id: str, n: int) -> TimelineEntry:
    return TimelineEntry(process_id=process_id, direction="note", message_type=f"m{n}")


def negotiation(pid: str) -> Negotiation:
    return Negotiation(
        id=pid,
        role="provider",
        state="REQUESTED",
        consumer_pid=f"c-{pid}",
        counterparty_id="did:web:peer",
        counterparty_address="http://peer/dsp",
        dataset_id="ds-1",
        offer={"@id": "o1"},
        offer_by="consumer",
    )


async def _hold_writer(db: Database, queued: int) -> tuple[threading.Event, asyncio.Task[None]]:
    """A unit that keeps the writer busy until released, so that `queued` more units are
    waiting when it ends: they then form groups, deterministically."""
    release = threading.Event()
    entered = threading.Event()

    def hold(store: Store) -> None:
        entered.set()
        release.wait(30)

    task = asyncio.ensure_future(db.write(hold))
    await asyncio.to_thread(entered.wait, 30)
    return release, task  # the caller queues its units, then sets `release`


async def _queue_behind(db: Database, release: threading.Event, queued: int) -> None:
    while db.queued < queued:
        await asyncio.sleep(0.001)
    release.set()


def test_waiting_writes_share_one_commit_and_all_are_durable(
    db: Database, opener: Callable[[], Store]
) -> None:
    async def scenario() -> list[int]:
        release, holder = await _hold_writer(db, 200)
        before = db.commits
        writes = [
            asyncio.ensure_future(db.write(lambda s, i=i: s.add_event(event("p-group", i))))
            for i in range(200)
        ]
        await _queue_behind(db, release, 200)
        await asyncio.gather(holder, *writes)
        return [db.commits - before]

    (commits,) = asyncio.run(scenario())
    # the holder's group, then 200 units in groups of at most GROUP_MAX (128): 3 commits,
    # where one commit per unit would have been 201
    assert commits <= 3
    fresh = opener()
    try:
        assert sorted(int(e.message_type[1:]) for e in fresh.timeline("p-group")) == list(
            range(200)
        )
    finally:
        fresh.close()


def test_a_failing_unit_is_rolled_back_alone(db: Database, opener: Callable[[], Store]) -> None:
    def fails(store: Store) -> None:
        store.add_event(event("p-mixed", 1))
        raise ValueError("this unit fails after writing")

    async def scenario() -> list[BaseException | None]:
        release, holder = await _hold_writer(db, 3)
        units = [
            asyncio.ensure_future(db.write(lambda s: s.add_event(event("p-mixed", 0)))),
            asyncio.ensure_future(db.write(fails)),
            asyncio.ensure_future(db.write(lambda s: s.add_event(event("p-mixed", 2)))),
        ]
        await _queue_behind(db, release, 3)
        await holder
        results = await asyncio.gather(*units, return_exceptions=True)
        return [r if isinstance(r, BaseException) else None for r in results]

    outcomes = asyncio.run(scenario())
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], ValueError)
    fresh = opener()
    try:
        assert [e.message_type for e in fresh.timeline("p-mixed")] == ["m0", "m2"]
    finally:
        fresh.close()


def test_a_unit_sees_the_writes_of_the_units_before_it(db: Database) -> None:
    async def scenario() -> Negotiation | None:
        await db.write(lambda s: s.insert_negotiation(negotiation("n-1")))
        return await db.read(lambda s: s.get_negotiation("n-1"))

    found = asyncio.run(scenario())
    assert found is not None and found.id == "n-1"


_HOLD_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
"""


def test_reads_and_the_loop_go_on_while_another_process_holds_the_write_lock(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.db"
    db = Database(
        SqliteStore(path, forbid_event_loop=True),
        lambda: SqliteStore(path, migrate=False, forbid_event_loop=True),
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )

    async def scenario() -> tuple[bool, Negotiation | None, int]:
        await db.write(lambda s: s.insert_negotiation(negotiation("n-1")))
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        blocked = asyncio.ensure_future(db.write(lambda s: s.add_event(event("n-1", 0))))
        ticks = 0
        for _ in range(20):  # the loop runs while the writer waits for the lock
            await asyncio.sleep(0)
            ticks += 1
        found = await db.read(lambda s: s.get_negotiation("n-1"))
        still_waiting = not blocked.done()
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.flush()
        await blocked  # the write goes through once the lock is released
        return still_waiting, found, ticks

    try:
        still_waiting, found, ticks = asyncio.run(scenario())
    finally:
        holder.kill()
        holder.wait()
        db.close()
    assert still_waiting, "the read should answer while the write still waits for the lock"
    assert found is not None and found.id == "n-1"
    assert ticks == 20


def test_later_writes_ride_with_the_next_write_of_the_batch(
    db: Database, opener: Callable[[], Store]
) -> None:
    async def scenario() -> int:
        before = db.commits
        async with db.batch():
            await db.later(lambda s: s.add_event(event("p-later", 0)))
            await db.later(lambda s: s.add_event(event("p-later", 1)))
            await db.write(lambda s: s.insert_negotiation(negotiation("n-later")))
        return db.commits - before

    assert asyncio.run(scenario()) == 1  # the steps and the write: one commit
    fresh = opener()
    try:
        assert [e.message_type for e in fresh.timeline("p-later")] == ["m0", "m1"]
        assert fresh.get_negotiation("n-later") is not None
    finally:
        fresh.close()


def test_a_refusing_step_undoes_the_write_it_rides_with(
    db: Database, opener: Callable[[], Store]
) -> None:
    def replayed(store: Store) -> None:
        raise Unauthorized("token was already used (replay)")

    async def scenario() -> None:
        async with db.batch():
            await db.later(replayed)
            await db.write(lambda s: s.insert_negotiation(negotiation("n-replayed")))

    with pytest.raises(Unauthorized, match="replay"):
        asyncio.run(scenario())
    fresh = opener()
    try:
        assert fresh.get_negotiation("n-replayed") is None
    finally:
        fresh.close()


def test_steps_are_kept_when_the_write_fails_and_left_ones_at_the_end(
    db: Database, opener: Callable[[], Store]
) -> None:
    def fails(store: Store) -> None:
        store.add_event(event("p-kept", 9))
        raise ValueError("the state change is refused")

    async def scenario() -> None:
        async with db.batch():
            await db.later(lambda s: s.add_event(event("p-kept", 0)))
            with pytest.raises(ValueError, match="refused"):
                await db.write(fails)
            await db.later(lambda s: s.add_event(event("p-kept", 1)))  # written at the end

    asyncio.run(scenario())
    fresh = opener()
    try:
        assert [e.message_type for e in fresh.timeline("p-kept")] == ["m0", "m1"]
    finally:
        fresh.close()


def test_a_refusal_at_the_end_of_a_failed_batch_is_the_answer(db: Database) -> None:
    def replayed(store: Store) -> None:
        raise Unauthorized("token was already used (replay)")

    async def scenario() -> None:
        async with db.batch():
            await db.later(replayed)
            raise BadRequest("unknown dataset")  # the request failed before writing

    with pytest.raises(Unauthorized, match="replay"):
        asyncio.run(scenario())
