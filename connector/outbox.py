"""Durable outbox: messages and data moves survive restarts and are retried with backoff.

A job is written in the same transaction as the state change that needs it, so a state
is never reached without its message queued. Jobs of one process run strictly in order,
except that messages do not wait for a data move (see Store.claim_jobs).

Replicas sharing one store each claim jobs under a lease they renew while the job runs; a
replica that dies stops renewing, and any other takes its jobs over once the lease expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable

from connector.errors import DiskFull, PeerError
from connector.model.enums import Direction, JobKind, JobStatus
from connector.model.jobs import JobPayload
from connector.model.records import Job
from connector.observability.logs import process_id
from connector.runtime import Runtime, replica_gone
from connector.store.base import Store

log = logging.getLogger(__name__)

Handler = Callable[[Job], Awaitable[None]]
GiveUp = Callable[[Job, str], Awaitable[None]]


class Outbox:
    def __init__(self, runtime: Runtime, *, concurrency: int = 32) -> None:
        self._rt = runtime
        self._handlers: dict[JobKind, tuple[Handler, GiveUp]] = {}
        self._wake = asyncio.Event()
        self._running: dict[int, asyncio.Task[None]] = {}
        self._concurrency = concurrency
        self._stopping = False
        self._heartbeat: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # jobs that ran to the end, marked done in the next claim's transaction: one commit
        # per job instead of two (a crash before it runs the job again, as for any
        # interrupted run: delivery is at least once)
        self._finished: list[tuple[int, int]] = []
        self.owner = runtime.replica

    def register(self, kind: JobKind, handler: Handler, give_up: GiveUp) -> None:
        self._handlers[kind] = (handler, give_up)

    def enqueue(self, process_id: str, payload: JobPayload) -> int:
        """Queue a job in the current store transaction (inside a `db.write` unit): it is
        claimed only once that transaction has committed."""
        job = Job(process_id=process_id, kind=payload.KIND, payload=payload.stored())
        job_id = self._rt.store.add_job(job)
        self.poke()
        return job_id

    def poke(self) -> None:
        """Look for due jobs soon; callable from the store's writer thread too."""
        loop = self._loop
        if loop is None:
            return  # not running yet: run() looks at once when it starts
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is loop:
            self._wake.set()
        else:
            loop.call_soon_threadsafe(self._wake.set)

    def backoff(self, attempts: int) -> float:
        s = self._rt.settings
        delay = min(s.retry_max_seconds, s.retry_base_seconds * (2 ** max(0, attempts - 1)))
        return float(delay * random.uniform(0.8, 1.2))

    @property
    def _lease(self) -> float:
        return float(self._rt.settings.job_lease_seconds)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        gone = functools.partial(replica_gone, me=self.owner)

        def reset(store: Store) -> None:
            for job in store.reset_running_jobs(gone):
                self._interrupted(job, "by a restart")

        await self._rt.db.write(reset)
        self._heartbeat = asyncio.create_task(self._keep_leases())
        pause = 0.25
        while not self._stopping:
            # cleared before the claim, not after: a job that ends while the claim is being
            # written wakes the next round instead of waiting out the pause
            self._wake.clear()
            try:
                await self._dispatch()
                pause = 0.25
            except Exception:
                # a store that fails (disk, lock timeout) must not end the worker for good:
                # say so and try again, more slowly
                log.exception("outbox: cannot read or claim jobs; retrying in %.0f s", pause)
                pause = min(pause * 2, 10.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=pause)

    def _interrupted(self, job: Job, how: str) -> None:
        """(inside a store unit)"""
        self._rt.log(
            job.process_id,
            Direction.FAILED,
            job.payload.get("type", job.kind),
            detail=f"attempt {job.attempts + 1} was interrupted {how}; running it again",
        )

    async def _dispatch(self) -> None:
        free = 0 if self._stopping else self._concurrency - len(self._running)
        finished, self._finished = self._finished, []
        if free <= 0 and not finished:
            return
        now = time.time()

        def finish_and_claim(store: Store) -> list[Job]:
            self._mark_done(store, finished)
            return store.claim_jobs(now, free, self.owner, now + self._lease) if free > 0 else []

        try:
            claimed = await self._rt.db.write(finish_and_claim)
        except BaseException:
            self._finished[:0] = finished  # not written: the next round tries again
            raise
        for job in claimed:
            assert job.id is not None
            self._running[job.id] = asyncio.create_task(self._run_one(job))

    async def _keep_leases(self) -> None:
        """Renew the leases of running jobs; take over jobs whose owner stopped renewing."""
        while True:
            await asyncio.sleep(self._lease / 3)
            try:
                ids = list(self._running)
                held = await self._renew(ids, time.time() + self._lease)
                for job_id in set(ids) - held:
                    # another replica has taken it over: this run's outcome no longer counts
                    log.warning("outbox: lost the lease of job %s; stopping it here", job_id)
                    task = self._running.pop(job_id, None)
                    if task is not None:
                        task.cancel()
                if self._stopping:
                    continue

                def reclaim(store: Store) -> int:
                    jobs = store.reclaim_expired_jobs(time.time())
                    for job in jobs:
                        self._interrupted(job, f"(replica {job.owner} stopped renewing its lease)")
                    return len(jobs)

                if await self._rt.db.write(reclaim):
                    self._wake.set()
            except Exception:
                log.exception("outbox: cannot renew or reclaim job leases; trying again")

    async def _renew(self, ids: list[int], until: float) -> set[int]:
        return await self._rt.db.write(lambda s: s.renew_leases(self.owner, ids, until))

    def _mark_done(self, store: Store, finished: list[tuple[int, int]]) -> None:
        for job_id, attempts in finished:
            store.update_job(job_id, owner=self.owner, status=JobStatus.DONE, attempts=attempts)

    async def stop(self, grace: float = 0.0) -> None:
        """Stop taking jobs; let running ones finish within `grace` seconds, then hand the
        rest back at once (pending, for any replica, or for this one after a restart)."""
        self._stopping = True
        self._wake.set()
        tasks = dict(self._running)
        if grace > 0 and tasks:
            await asyncio.wait(tasks.values(), timeout=grace)
        left = {job_id: task for job_id, task in tasks.items() if not task.done()}
        for task in left.values():
            task.cancel()
        await asyncio.gather(*left.values(), return_exceptions=True)
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
        finished, self._finished = self._finished, []
        if finished:
            try:
                await self._rt.db.write(lambda s: self._mark_done(s, finished))
            except Exception:
                log.exception("outbox: cannot mark finished jobs done; they will run again")
        if left:

            def release(store: Store) -> None:
                for job in store.release_jobs(self.owner, list(left)):
                    self._interrupted(job, f"(replica {self.owner} shut down and handed it over)")

            try:
                await self._rt.db.write(release)
            except Exception:
                log.exception("outbox: cannot hand over running jobs; their leases will expire")

    async def _run_one(self, job: Job) -> None:
        assert job.id is not None
        process_id.set(job.process_id)  # this task's log lines name the process
        handler, give_up = self._handlers[job.kind]
        try:
            async with self._rt.db.batch():  # its decisions go with the change they lead to
                await handler(job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # a peer's error or a full disk is expected and says what happened (no traceback)
            expected = isinstance(exc, PeerError | DiskFull)
            retry = exc.retry if isinstance(exc, PeerError | DiskFull) else True
            attempts = job.attempts + 1
            error = str(exc) if expected else f"{type(exc).__name__}: {exc}"
            if not expected:
                log.exception("job %s (%s) failed", job.id, job.kind)
            if retry and attempts < self._rt.settings.retry_max_attempts:
                delay = self.backoff(attempts)
                status = getattr(exc, "http_status", None)

                def retry_later(store: Store) -> bool:
                    assert job.id is not None
                    if not store.update_job(
                        job.id,
                        owner=self.owner,
                        status=JobStatus.PENDING,
                        attempts=attempts,
                        next_at=time.time() + delay,
                        last_error=error,
                    ):
                        return False
                    self._rt.log(
                        job.process_id,
                        Direction.FAILED,
                        job.payload.get("type", job.kind),
                        detail=f"attempt {attempts} failed, retrying in {delay:.1f}s: {error}",
                        status=status,
                    )
                    return True

                if not await self._rt.db.write(retry_later):
                    return self._lost(job)
            else:
                job_id = job.id
                if not await self._rt.db.write(
                    lambda s: s.update_job(
                        job_id,
                        owner=self.owner,
                        status=JobStatus.FAILED,
                        attempts=attempts,
                        last_error=error,
                    )
                ):
                    return self._lost(job)
                why = error if not retry else f"gave up after {attempts} attempts: {error}"
                try:
                    await give_up(job, why)
                except Exception:
                    log.exception("give-up handler of job %s failed", job.id)
        else:
            self._finished.append((job.id, job.attempts + 1))
        finally:
            self._running.pop(job.id, None)
            self._wake.set()

    def holds(self, job_id: int | None) -> bool:
        """Whether this replica still runs the job (False once its lease went to another)."""
        return job_id in self._running

    def _lost(self, job: Job) -> None:
        """Another replica holds the job now (our lease ran out): its run is the one that
        counts, so this one neither retries nor gives up (which could end the process)."""
        log.warning(
            "job %s (%s): lease lost to another replica; dropping this run", job.id, job.kind
        )
