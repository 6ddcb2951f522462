"""The event loop's way to the store: every call runs on a store thread, never on the loop.

The store itself is synchronous (sqlite3, psycopg). A call made on the event loop would stop
the whole process while the database waits — for a lock another process holds, for an
fsync, for the network — so the loop hands work to threads and awaits the result:

- `read(fn)` runs `fn(store)` on one of a few reader threads, each with its own connection.
  SQLite in WAL mode lets readers go on while another connection (or process) writes.
- `write(fn)` runs `fn(store)` as one transaction on the single writer thread. Units that
  queue up while a commit is in flight are committed together (group commit): each runs
  inside its own savepoint, so one that raises is rolled back alone, and none is answered
  before the COMMIT that makes it durable has returned. Concurrent processes share one fsync
  instead of queueing for one each; synchronous=FULL is kept.

`fn` is ordinary synchronous code using the store it is given (and may call helpers that use
the runtime's writer store: they run on the writer thread too). It must not touch the event
loop.

Within `batch()` (a DSP request, an outbox job), `later(fn)` writes ride along with the next
`write` of the same task instead of a commit of their own: the token id a request came with
(replay guard) and the decision log go into the transaction of the state change they led to.
They are kept even when that change fails, and written at the end of the batch at the latest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from connector.errors import ConnectorError
from connector.store.base import Store

log = logging.getLogger(__name__)

T = TypeVar("T")

# How many units one commit takes at most: bounds how long a group holds the write lock.
GROUP_MAX = 128

Step = Callable[[Store], None]
# the `later` writes of the current task's batch (None: not in a batch)
_later: ContextVar[list[Step] | None] = ContextVar("store_later", default=None)


@dataclass
class _Raised:
    """A unit whose own part raised after its `later` steps were written."""

    error: BaseException


@dataclass
class _Unit:
    fn: Callable[[Store], Any]
    done: Future[Any] = field(default_factory=Future)


class Database:
    """Async access to one store: a writer thread with group commit and a reader pool."""

    def __init__(
        self,
        writer: Store,
        open_reader: Callable[[], Store] | None = None,
        *,
        readers: int = 4,
    ) -> None:
        self.store = writer
        self._open_reader = open_reader
        self._queue: queue.SimpleQueue[_Unit | None] = queue.SimpleQueue()
        self._local = threading.local()
        self._reader_stores: list[Store] = []
        self._reader_lock = threading.Lock()
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="store-read")
        self._writer = threading.Thread(target=self._write_loop, name="store-write", daemon=True)
        self._writer.start()
        self.commits = 0  # groups committed (with `units`: how well commits are shared)
        self.units = 0

    # the event loop's side -------------------------------------------------------------------

    async def write(self, fn: Callable[[Store], T]) -> T:
        """`fn(store)` in one transaction on the writer thread, answered once it is durable."""
        pending = _later.get()
        if not pending:
            return await self._submit(fn)
        steps = list(pending)
        pending.clear()

        def with_steps(store: Store) -> T | _Raised:
            for step in steps:  # one that raises (a replayed token) undoes the whole unit
                step(store)
            try:
                with store.savepoint():
                    return fn(store)
            except Exception as exc:  # the steps are kept; the caller gets the error
                return _Raised(exc)

        result = await self._submit(with_steps)
        if isinstance(result, _Raised):
            raise result.error
        return result

    async def later(self, step: Step) -> None:
        """Write `step` with this task's next `write` (inside `batch`), else at once."""
        pending = _later.get()
        if pending is None:
            await self._submit(step)
        else:
            pending.append(step)

    @contextlib.asynccontextmanager
    async def batch(self) -> AsyncIterator[None]:
        """A scope (a request, a job) whose `later` writes wait for its next `write`; what is
        left is written when it ends, also when it ends with an error."""
        token = _later.set([])
        try:
            yield
        except Exception as exc:
            try:
                await self._flush()
            except ConnectorError as refused:  # a replayed token: that is the answer
                raise refused from exc
            except Exception:
                log.exception("could not write what a failed request left to write")
            raise
        else:
            await self._flush()
        finally:
            _later.reset(token)

    async def _flush(self) -> None:
        if _later.get():
            await self.write(lambda store: None)

    async def _submit(self, fn: Callable[[Store], T]) -> T:
        unit = _Unit(fn)
        self._queue.put(unit)
        return await asyncio.wrap_future(unit.done)

    async def read(self, fn: Callable[[Store], T]) -> T:
        """`fn(store)` on a reader connection: sees what was committed before it started."""
        if self._open_reader is None:
            return await self.write(fn)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._read, fn)

    @property
    def queued(self) -> int:
        """Units waiting for the writer (approximate, as any queue size)."""
        return self._queue.qsize()

    def close(self) -> None:
        """Finish what is queued, then close the writer's and the readers' connections."""
        self._queue.put(None)
        self._writer.join()
        self._readers.shutdown(wait=True)
        for store in self._reader_stores:
            with contextlib.suppress(Exception):
                store.close()
        self.store.close()

    # the store threads' side -----------------------------------------------------------------

    def _read(self, fn: Callable[[Store], T]) -> T:
        store: Store | None = getattr(self._local, "store", None)
        if store is None:
            assert self._open_reader is not None
            store = self._open_reader()
            self._local.store = store
            with self._reader_lock:
                self._reader_stores.append(store)
        return fn(store)

    def _write_loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            while len(group) < GROUP_MAX:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # stop after this group
                    break
                group.append(more)
            self._commit(group)

    def _commit(self, group: list[_Unit]) -> None:
        results: list[tuple[_Unit, bool, Any]] = []
        try:
            # a unit alone in its group needs no savepoint: its failure ends the transaction
            # (two statements less per unit when writes do not overlap)
            alone = len(group) == 1
            with self.store.transaction():
                for unit in group:
                    if not unit.done.set_running_or_notify_cancel():
                        continue  # its caller is gone and it had not started: not run
                    try:
                        with contextlib.nullcontext() if alone else self.store.savepoint():
                            results.append((unit, True, unit.fn(self.store)))
                    except BaseException as exc:  # the unit's own failure, rolled back alone
                        if alone:
                            raise
                        results.append((unit, False, exc))
        except BaseException as exc:  # BEGIN or COMMIT failed: nothing of the group holds
            for unit in group:
                if not unit.done.done():
                    unit.done.set_exception(exc)
            return
        self.commits += 1
        self.units += len(group)
        for unit, ok, value in results:
            if unit.done.done():  # cancelled
                continue
            if ok:
                unit.done.set_result(value)
            else:
                unit.done.set_exception(value)
