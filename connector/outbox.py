"""Durable outbox: messages and data moves survive restarts and are retried with backoff.

A job is written in the same transaction as the state change that needs it, so a state
is never reached without its message queued. Jobs of one process run strictly in order,
except that messages do not wait for a data move (see SqliteStore.due_jobs).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from connector.errors import PeerError
from connector.observability.logs import process_id
from connector.runtime import Runtime
from connector.store.records import Job

log = logging.getLogger(__name__)

Handler = Callable[[Job], Awaitable[None]]
GiveUp = Callable[[Job, str], Awaitable[None]]


class Outbox:
    def __init__(self, runtime: Runtime, *, concurrency: int = 32) -> None:
        self._rt = runtime
        self._handlers: dict[str, tuple[Handler, GiveUp]] = {}
        self._wake = asyncio.Event()
        self._running: dict[int, asyncio.Task[None]] = {}
        self._concurrency = concurrency
        self._stopping = False

    def register(self, kind: str, handler: Handler, give_up: GiveUp) -> None:
        self._handlers[kind] = (handler, give_up)

    def enqueue(self, process_id: str, kind: str, payload: dict[str, Any]) -> int:
        job_id = self._rt.store.add_job(Job(process_id=process_id, kind=kind, payload=payload))
        self._wake.set()
        return job_id

    def backoff(self, attempts: int) -> float:
        s = self._rt.settings
        delay = min(s.retry_max_seconds, s.retry_base_seconds * (2 ** max(0, attempts - 1)))
        return float(delay * random.uniform(0.8, 1.2))

    async def run(self) -> None:
        for job in self._rt.store.reset_running_jobs():
            self._rt.log(
                job.process_id,
                "failed",
                job.payload.get("type", job.kind),
                detail=f"attempt {job.attempts + 1} was interrupted by a restart; running it again",
            )
        pause = 0.25
        while not self._stopping:
            try:
                self._dispatch()
                pause = 0.25
            except Exception:
                # a store that fails (disk, lock timeout) must not end the worker for good:
                # say so and try again, more slowly
                log.exception("outbox: cannot read or claim jobs; retrying in %.0f s", pause)
                pause = min(pause * 2, 10.0)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=pause)

    def _dispatch(self) -> None:
        free = self._concurrency - len(self._running)
        jobs = self._rt.store.due_jobs(time.time(), free) if free > 0 else []
        for job in jobs:
            if job.id in self._running:
                continue
            assert job.id is not None
            self._rt.store.update_job(job.id, status="running")
            self._running[job.id] = asyncio.create_task(self._run_one(job))

    async def stop(self) -> None:
        """Stop taking jobs; interrupted ones stay 'running' and are resumed at start-up."""
        self._stopping = True
        self._wake.set()
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run_one(self, job: Job) -> None:
        assert job.id is not None
        process_id.set(job.process_id)  # this task's log lines name the process
        handler, give_up = self._handlers[job.kind]
        try:
            await handler(job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            retry = not isinstance(exc, PeerError) or exc.retry
            attempts = job.attempts + 1
            error = str(exc) if isinstance(exc, PeerError) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, PeerError):
                log.exception("job %s (%s) failed", job.id, job.kind)
            if retry and attempts < self._rt.settings.retry_max_attempts:
                delay = self.backoff(attempts)
                self._rt.store.update_job(
                    job.id,
                    status="pending",
                    attempts=attempts,
                    next_at=time.time() + delay,
                    last_error=error,
                )
                self._rt.log(
                    job.process_id,
                    "failed",
                    job.payload.get("type", job.kind),
                    detail=f"attempt {attempts} failed, retrying in {delay:.1f}s: {error}",
                    status=getattr(exc, "http_status", None),
                )
            else:
                self._rt.store.update_job(
                    job.id, status="failed", attempts=attempts, last_error=error
                )
                why = error if not retry else f"gave up after {attempts} attempts: {error}"
                try:
                    await give_up(job, why)
                except Exception:
                    log.exception("give-up handler of job %s failed", job.id)
        else:
            self._rt.store.update_job(job.id, status="done", attempts=job.attempts + 1)
        finally:
            self._running.pop(job.id, None)
            self._wake.set()
