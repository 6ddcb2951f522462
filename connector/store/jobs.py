"""Jobs (the outbox) and named leases: work claimed by one owner (a replica) under a lease it
renews while it runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from connector.model.records import Job
from connector.store.core import Statements
from connector.store.dialect import marks
from connector.store.rows import encode, to_row


class JobRepository(Protocol):
    def add_job(self, job: Job) -> int: ...
    def claim_jobs(self, now: float, limit: int, owner: str, lease_until: float) -> list[Job]:
        """Due jobs, marked running for `owner` in one step, so no two owners get one job.

        A job is due only after the older unfinished jobs of its process: messages keep their
        order. Data moves ('dp-*') wait for everything before them, but messages never wait
        for a data move, so a stalled stream cannot hold back its transfer's termination."""
        ...

    def update_job(self, job_id: int, *, owner: str | None = None, **fields: Any) -> bool:
        """With `owner`: only while that owner still holds the job (False otherwise)."""
        ...

    def renew_leases(self, owner: str, job_ids: list[int], lease_until: float) -> set[int]:
        """Extend the leases of `owner`'s running jobs; returns the ids it still holds."""
        ...

    def release_jobs(self, owner: str, job_ids: list[int]) -> list[Job]:
        """Hand `owner`'s running jobs back (pending now, the attempt counted); return them."""
        ...

    def reset_running_jobs(self, gone: Callable[[str], bool] | None = None) -> list[Job]:
        """At start-up: make jobs a crash interrupted pending again (counting the attempt).

        SQLite: every running job (one process per file). A shared store: jobs whose lease
        expired, as other replicas are running theirs, and jobs of owners `gone` names (an
        earlier process of this replica, killed: its leases need not be waited out)."""
        ...

    def reclaim_expired_jobs(self, now: float) -> list[Job]:
        """Running jobs whose owner stopped renewing the lease: pending again, attempt counted.
        The returned jobs carry the owner that lost them."""
        ...

    def try_lease(self, name: str, owner: str, until: float, now: float) -> bool:
        """Hold the named lease until `until` if it is free, expired or already ours."""
        ...

    def pending_jobs(self, process_id: str) -> list[Job]: ...


class Jobs(Statements):
    def add_job(self, job: Job) -> int:
        row = to_row(job)
        row.pop("id", None)
        columns = list(row)
        rows = self._rows(
            f"insert into jobs ({', '.join(columns)}) values ({marks(columns)}) returning id",
            [row[c] for c in columns],
        )
        return int(rows[0]["id"])

    def claim_jobs(self, now: float, limit: int, owner: str, lease_until: float) -> list[Job]:
        # A shared store skips the rows another replica is claiming right now: a job whose
        # older sibling is being claimed is not due either way, that sibling is still pending
        # or already running in every snapshot.
        sql = f"""
            update jobs set status = 'running', owner = ?, lease_until = ?
            where id in (
              select j.id from jobs j
              where j.status = 'pending' and j.next_at <= ?
                and not exists (
                  select 1 from jobs o
                  where o.status in ('pending', 'running') and o.process_id = j.process_id
                    and o.id < j.id and (j.kind like 'dp-%' or o.kind not like 'dp-%'))
              order by j.next_at, j.id limit ?{self.dialect.skip_locked})
            returning *
        """
        jobs = self._models(Job, sql, [owner, lease_until, now, limit])  # one statement: atomic
        return sorted(jobs, key=lambda j: (j.next_at, j.id or 0))

    def update_job(self, job_id: int, *, owner: str | None = None, **fields: Any) -> bool:
        values = encode(fields)
        sets = ", ".join(f"{k} = ?" for k in values)
        sql = f"update jobs set {sets} where id = ?"
        args = [*values.values(), job_id]
        if owner is not None:
            sql += " and owner = ? and status = 'running'"
            args.append(owner)
        return self._run(sql, args) > 0

    def renew_leases(self, owner: str, job_ids: list[int], lease_until: float) -> set[int]:
        if not job_ids:
            return set()
        rows = self._rows(
            "update jobs set lease_until = ?"
            f" where owner = ? and status = 'running' and id in ({marks(job_ids)}) returning id",
            [lease_until, owner, *job_ids],
        )
        return {int(r["id"]) for r in rows}

    def _make_pending(self, where: str, args: list[Any]) -> list[Job]:
        """The jobs `where` selects, pending again; returned as they were (with their owner).
        An interrupted run counts as an attempt: its message may have been delivered."""
        with self.transaction():
            jobs = self._models(
                Job, f"select * from jobs where {where} order by id{self.dialect.for_update}", args
            )
            ids = [j.id for j in jobs]
            if ids:
                self._run(
                    "update jobs set status = 'pending', attempts = attempts + 1, owner = null,"
                    f" lease_until = null where id in ({marks(ids)})",
                    ids,
                )
        return jobs

    def release_jobs(self, owner: str, job_ids: list[int]) -> list[Job]:
        if not job_ids:
            return []
        return self._make_pending(
            f"status = 'running' and owner = ? and id in ({marks(job_ids)})", [owner, *job_ids]
        )

    def reset_running_jobs(self, gone: Callable[[str], bool] | None = None) -> list[Job]:
        if not self.dialect.shared:
            return self._make_pending("status = 'running'", [])
        # Other replicas are running theirs: only jobs whose owner stopped renewing them, or
        # that an earlier process of this replica held when it was killed.
        jobs = self.reclaim_expired_jobs(time.time())
        if gone is None:
            return jobs
        rows = self._rows("select distinct owner from jobs where status = 'running'")
        dead = [r["owner"] for r in rows if r["owner"] and gone(r["owner"])]
        if dead:
            jobs += self._make_pending(f"status = 'running' and owner in ({marks(dead)})", dead)
        return jobs

    def reclaim_expired_jobs(self, now: float) -> list[Job]:
        return self._make_pending("status = 'running' and lease_until < ?", [now])

    def try_lease(self, name: str, owner: str, until: float, now: float) -> bool:
        rows = self._rows(
            "insert into leases (name, owner, until) values (?, ?, ?)"
            " on conflict (name) do update set owner = excluded.owner, until = excluded.until"
            " where leases.owner = excluded.owner or leases.until < ?"
            " returning name",
            [name, owner, until, now],
        )
        return bool(rows)

    def pending_jobs(self, process_id: str) -> list[Job]:
        return self._models(
            Job,
            "select * from jobs where process_id = ? and status in ('pending', 'running')"
            " order by id",
            [process_id],
        )
