"""SQLite store (sqlite-utils, WAL): one file per connector, safe across crashes."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils
from pydantic import BaseModel

from connector.errors import NotFound
from connector.files import private_file
from connector.model.metering import MeteringEntry
from connector.model.records import (
    Dataset,
    DecisionRecord,
    Job,
    TimelineEntry,
    Transfer,
    utcnow,
)
from connector.model.usage import DeletionDuty, UseEntry, UseSummary
from connector.store.base import Duplicate
from connector.store.rows import TABLES, column_type, encode, from_row, to_row
from connector.store.tables import RecordTables

M = TypeVar("M", bound=BaseModel)
C = TypeVar("C", bound=BaseModel)

SCHEMA_VERSION = 2


class SqliteStore(RecordTables):
    shared = False  # one file, one process

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # SQLite creates the WAL and shared-memory files with the database file's mode
        private_file(path)
        for side in ("-wal", "-shm"):
            beside = path.with_name(path.name + side)
            if beside.exists():
                private_file(beside)
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db = sqlite_utils.Database(conn)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._lock = threading.RLock()
        self._depth = 0
        self._migrate()

    def _migrate(self) -> None:
        for table, (model, pk) in TABLES.items():
            if not self._db.table(table).exists():
                columns = {name: column_type(model, name) for name in model.model_fields}
                self._db.table(table).create(columns, pk=pk)
            else:
                existing = set(self._db.table(table).columns_dict)
                for name in model.model_fields:
                    if name not in existing:
                        self._db.table(table).add_column(name, column_type(model, name))
        if not self._db.table("decisions").exists():
            columns = {n: column_type(DecisionRecord, n) for n in DecisionRecord.model_fields}
            columns["allow"] = int
            self._db.table("decisions").create(columns, pk="seq")
        if not self._db.table("timeline").exists():
            self._db.table("timeline").create(
                {
                    "seq": int,
                    "process_id": str,
                    "direction": str,
                    "message_type": str,
                    "state": str,
                    "status": int,
                    "detail": str,
                    "body": str,
                    "at": str,
                },
                pk="seq",
            )
            self._db.table("timeline").create_index(["process_id"])
        if not self._db.table("jobs").exists():
            self._db.table("jobs").create(
                {
                    "id": int,
                    "process_id": str,
                    "kind": str,
                    "payload": str,
                    "attempts": int,
                    "next_at": float,
                    "status": str,
                    "last_error": str,
                },
                pk="id",
            )
            self._db.table("jobs").create_index(["status", "process_id"])
        jobs = set(self._db.table("jobs").columns_dict)
        for name, kind in (("owner", str), ("lease_until", float)):
            if name not in jobs:
                self._db.table("jobs").add_column(name, kind)
        if not self._db.table("leases").exists():
            self._db.table("leases").create({"name": str, "owner": str, "until": float}, pk="name")
        if not self._db.table("metering").exists():
            columns = {n: column_type(MeteringEntry, n) for n in MeteringEntry.model_fields}
            self._db.table("metering").create(columns, pk=("agreement_id", "seq"))
            self._db.table("metering").create_index(["transfer_id"])
        if not self._db.table("uses").exists():
            columns = {n: column_type(UseEntry, n) for n in UseEntry.model_fields}
            self._db.table("uses").create(columns, pk=("agreement_id", "seq"))
        if not self._db.table("seen_tokens").exists():
            self._db.table("seen_tokens").create({"jti": str, "expires_at": int}, pk="jti")
        self._db.table("negotiations").create_index(["consumer_pid"], if_not_exists=True)
        self._db.table("negotiations").create_index(["provider_pid"], if_not_exists=True)
        self._db.table("transfers").create_index(["consumer_pid"], if_not_exists=True)
        self._db.table("transfers").create_index(["provider_pid"], if_not_exists=True)
        self._db.table("transfers").create_index(["agreement_id"], if_not_exists=True)
        self._db.table("deletion_duties").create_index(
            ["role", "state", "due_at"], if_not_exists=True
        )
        self._db.table("deletion_duties").create_index(["agreement_id"], if_not_exists=True)
        # /metrics counts by these on every scrape: index scans, not table scans
        self._db.table("negotiations").create_index(["role", "state"], if_not_exists=True)
        self._db.table("transfers").create_index(["role", "state", "bytes"], if_not_exists=True)
        self._db.table("decisions").create_index(["phase", "allow"], if_not_exists=True)
        # Expired token ids are purged on every accepted token: keep that a range scan.
        self._db.table("seen_tokens").create_index(["expires_at"], if_not_exists=True)
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            outer = self._depth == 0
            if outer:
                self._db.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                if outer:
                    self._db.execute("ROLLBACK")
                raise
            self._depth -= 1
            if outer:
                try:
                    self._db.execute("COMMIT")
                except BaseException:
                    # a COMMIT that fails (disk full, I/O error) leaves the transaction open:
                    # end it, so the next one starts clean instead of failing for ever
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                    raise

    def close(self) -> None:
        self._db.conn.close()

    # generic helpers -------------------------------------------------------------------------

    def _insert(self, table: str, record: BaseModel, *, replace: bool = False) -> None:
        row = to_row(record)
        try:
            with self.transaction():
                self._db.table(table).insert(row, replace=replace)
        except sqlite3.IntegrityError as exc:
            raise Duplicate(f"{table}: {exc}") from exc

    def _get(self, table: str, model: type[M], key: str, *, lock: bool = False) -> M | None:
        # lock: BEGIN IMMEDIATE already keeps other writers out of a transaction
        rows = list(self._db.query(f"select * from {table} where id = ?", [key]))
        return from_row(model, rows[0]) if rows else None

    def _find(self, table: str, model: type[M], match: dict[str, str]) -> M | None:
        where = " and ".join(f"{k} = ?" for k in match)
        rows = list(
            self._db.query(f"select * from {table} where {where} limit 1", list(match.values()))
        )
        return from_row(model, rows[0]) if rows else None

    def _count(self, table: str, match: dict[str, str], states_not_in: list[str]) -> int:
        where = [f"{k} = ?" for k in match] + [
            f"state not in ({', '.join('?' * len(states_not_in))})"
        ]
        sql = f"select count(*) as n from {table} where {' and '.join(where)}"
        rows = list(self._db.query(sql, [*match.values(), *states_not_in]))
        return int(rows[0]["n"])

    def _list(self, table: str, model: type[M], limit: int, offset: int) -> list[M]:
        sql = f"select * from {table} order by created_at desc limit ? offset ?"
        return [from_row(model, r) for r in self._db.query(sql, [limit, offset])]

    def _untouched(
        self, table: str, model: type[M], states_not_in: list[str], before: str, limit: int
    ) -> list[M]:
        marks = ", ".join("?" * len(states_not_in))
        sql = (
            f"select * from {table} where state not in ({marks}) and updated_at < ?"
            " order by updated_at limit ?"
        )
        return [from_row(model, r) for r in self._db.query(sql, [*states_not_in, before, limit])]

    def _update(self, table: str, model: type[M], key: str, fields: dict[str, Any]) -> M:
        with self.transaction():
            if self._get(table, model, key) is None:
                raise NotFound(f"no {table[:-1]} {key}")
            if "updated_at" in model.model_fields:
                fields = {**fields, "updated_at": utcnow()}
            self._db.table(table).update(key, encode(fields))
            found = self._get(table, model, key)
        assert found is not None
        return found

    # datasets --------------------------------------------------------------------------------

    def list_datasets(self) -> list[Dataset]:
        return [from_row(Dataset, r) for r in self._db.query("select * from datasets order by id")]

    def delete_dataset(self, dataset_id: str) -> bool:
        with self.transaction():
            cursor = self._db.execute("delete from datasets where id = ?", [dataset_id])
        return cursor.rowcount > 0

    # (the per-table record methods: connector/store/tables.py)

    def agreement_transfers(self, agreement_id: str, role: str) -> list[Transfer]:
        rows = self._db.query(
            "select * from transfers where agreement_id = ? and role = ?", [agreement_id, role]
        )
        return [from_row(Transfer, r) for r in rows]

    # timeline --------------------------------------------------------------------------------

    def add_event(self, entry: TimelineEntry) -> None:
        row = to_row(entry)
        row.pop("seq", None)
        with self.transaction():
            self._db.table("timeline").insert(row)

    def timeline(self, process_id: str) -> list[TimelineEntry]:
        rows = self._db.query(
            "select * from timeline where process_id = ? order by seq", [process_id]
        )
        return [from_row(TimelineEntry, r) for r in rows]

    # jobs ------------------------------------------------------------------------------------

    def add_job(self, job: Job) -> int:
        row = to_row(job)
        row.pop("id", None)
        with self.transaction():
            table = self._db.table("jobs")
            table.insert(row)
            return int(table.last_pk or 0)

    def claim_jobs(self, now: float, limit: int, owner: str, lease_until: float) -> list[Job]:
        sql = """
            select j.* from jobs j
            where j.status = 'pending' and j.next_at <= ?
              and not exists (
                select 1 from jobs o
                where o.status in ('pending', 'running') and o.process_id = j.process_id
                  and o.id < j.id and (j.kind like 'dp-%' or o.kind not like 'dp-%'))
            order by j.next_at, j.id limit ?
        """
        with self.transaction():
            jobs = [from_row(Job, r) for r in self._db.query(sql, [now, limit])]
            for job in jobs:
                self._db.execute(
                    "update jobs set status = 'running', owner = ?, lease_until = ? where id = ?",
                    [owner, lease_until, job.id],
                )
        return [j.model_copy(update={"status": "running", "owner": owner}) for j in jobs]

    def update_job(self, job_id: int, *, owner: str | None = None, **fields: Any) -> bool:
        values = encode(fields)
        sets = ", ".join(f"{k} = ?" for k in values)
        sql = f"update jobs set {sets} where id = ?"
        args = [*values.values(), job_id]
        if owner is not None:
            sql += " and owner = ? and status = 'running'"
            args.append(owner)
        with self.transaction():
            return self._db.execute(sql, args).rowcount > 0

    def renew_leases(self, owner: str, job_ids: list[int], lease_until: float) -> set[int]:
        held: set[int] = set()
        with self.transaction():
            for job_id in job_ids:
                cursor = self._db.execute(
                    "update jobs set lease_until = ?"
                    " where id = ? and owner = ? and status = 'running'",
                    [lease_until, job_id, owner],
                )
                if cursor.rowcount:
                    held.add(job_id)
        return held

    def _make_pending(self, where: str, args: list[Any]) -> list[Job]:
        # An interrupted run counts as an attempt: its message may have been delivered.
        with self.transaction():
            rows = self._db.query(f"select * from jobs where {where} order by id", args)
            jobs = [from_row(Job, r) for r in rows]
            self._db.execute(
                "update jobs set status = 'pending', attempts = attempts + 1, owner = null,"
                f" lease_until = null where {where}",
                args,
            )
        return jobs

    def release_jobs(self, owner: str, job_ids: list[int]) -> list[Job]:
        marks = ", ".join("?" for _ in job_ids) or "null"
        return self._make_pending(
            f"status = 'running' and owner = ? and id in ({marks})", [owner, *job_ids]
        )

    def reset_running_jobs(self, gone: Callable[[str], bool] | None = None) -> list[Job]:
        return self._make_pending("status = 'running'", [])

    def reclaim_expired_jobs(self, now: float) -> list[Job]:
        return self._make_pending("status = 'running' and lease_until < ?", [now])

    def try_lease(self, name: str, owner: str, until: float, now: float) -> bool:
        with self.transaction():
            rows = list(
                self._db.query(
                    "insert into leases (name, owner, until) values (?, ?, ?)"
                    " on conflict (name) do update set owner = excluded.owner,"
                    " until = excluded.until"
                    " where leases.owner = excluded.owner or leases.until < ?"
                    " returning name",
                    [name, owner, until, now],
                )
            )
        return bool(rows)

    def pending_jobs(self, process_id: str) -> list[Job]:
        rows = self._db.query(
            "select * from jobs where process_id = ? and status in ('pending', 'running')"
            " order by id",
            [process_id],
        )
        return [from_row(Job, r) for r in rows]

    # decision log ----------------------------------------------------------------------------

    def add_decisions(self, records: list[DecisionRecord]) -> None:
        rows = []
        for record in records:
            row = to_row(record)
            row.pop("seq", None)
            row["allow"] = int(record.allow)
            rows.append(row)
        with self.transaction():
            self._db.table("decisions").insert_all(rows)

    def list_decisions(self, limit: int = 100, offset: int = 0) -> list[DecisionRecord]:
        rows = self._db.query(
            "select * from decisions order by seq desc limit ? offset ?", [limit, offset]
        )
        return [from_row(DecisionRecord, {**r, "allow": bool(r["allow"])}) for r in rows]

    # metering chains -------------------------------------------------------------------------

    def _append_chain(
        self, table: str, agreement_id: str, make: Callable[[int, str | None], C]
    ) -> C:
        """The next link of an agreement's chain, built from the head inside one transaction."""
        with self.transaction():
            rows = list(
                self._db.query(
                    f"select seq, hash from {table} where agreement_id = ?"
                    " order by seq desc limit 1",
                    [agreement_id],
                )
            )
            head = rows[0] if rows else None
            entry = make(head["seq"] + 1 if head else 0, head["hash"] if head else None)
            self._db.table(table).insert(to_row(entry))
        return entry

    def _put_all(self, table: str, entries: Sequence[BaseModel]) -> None:
        with self.transaction():
            self._db.table(table).insert_all([to_row(e) for e in entries], replace=True)

    def append_metering(
        self, agreement_id: str, make: Callable[[int, str | None], MeteringEntry]
    ) -> MeteringEntry:
        return self._append_chain("metering", agreement_id, make)

    def put_metering(self, entries: list[MeteringEntry]) -> None:
        self._put_all("metering", entries)

    def metering_chain(
        self, agreement_id: str | None = None, transfer_id: str | None = None
    ) -> list[MeteringEntry]:
        where, args = [], []
        if agreement_id is not None:
            where.append("agreement_id = ?")
            args.append(agreement_id)
        if transfer_id is not None:
            where.append("transfer_id = ?")
            args.append(transfer_id)
        sql = "select * from metering"
        if where:
            sql += " where " + " and ".join(where)
        sql += " order by agreement_id, seq"
        return [from_row(MeteringEntry, r) for r in self._db.query(sql, args)]

    def set_metering_receipt(
        self, agreement_id: str, seq: int, *, receipt: str | None, refusal: str | None
    ) -> None:
        with self.transaction():
            self._db.execute(
                "update metering set receipt = ?, refusal = ? where agreement_id = ? and seq = ?"
                " and receipt is null",
                [receipt, refusal, agreement_id, seq],
            )

    # uses ------------------------------------------------------------------------------------

    def append_use(
        self, agreement_id: str, make: Callable[[int, str | None], UseEntry]
    ) -> UseEntry:
        return self._append_chain("uses", agreement_id, make)

    def put_uses(self, entries: list[UseEntry]) -> None:
        self._put_all("uses", entries)

    def list_uses(self, agreement_id: str, seqs: Iterable[int] | None = None) -> list[UseEntry]:
        sql = "select * from uses where agreement_id = ?"
        args: list[Any] = [agreement_id]
        if seqs is not None:
            wanted = sorted(set(seqs))
            sql += f" and seq in ({', '.join('?' * len(wanted))})"
            args += wanted
        rows = self._db.query(sql + " order by seq", args)
        return [from_row(UseEntry, r) for r in rows]

    def use_summary(self, agreement_id: str, transfer_id: str) -> UseSummary:
        row = next(
            self._db.query(
                "select count(*) as n,"
                " (select json_extract(record, '$.at') from uses where agreement_id = ?"
                "  order by seq limit 1) as first_at,"
                " exists(select 1 from uses where agreement_id = ?"
                "  and json_extract(record, '$.transfer') = ?) as of_transfer"
                " from uses where agreement_id = ?",
                [agreement_id, agreement_id, transfer_id, agreement_id],
            )
        )
        return UseSummary(row["n"], row["first_at"], bool(row["of_transfer"]))

    def mark_uses_reported(self, agreement_id: str, seqs: Iterable[int], at: str) -> None:
        with self.transaction():
            for seq in seqs:
                self._db.execute(
                    "update uses set reported_at = ? where agreement_id = ? and seq = ?",
                    [at, agreement_id, seq],
                )

    # deletion duties ---------------------------------------------------------------------------

    def list_deletions(
        self,
        *,
        role: str | None = None,
        state: str | None = None,
        agreement_id: str | None = None,
        counterparty_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[DeletionDuty]:
        match = {
            "role": role,
            "state": state,
            "agreement_id": agreement_id,
            "counterparty_id": counterparty_id,
        }
        where = [f"{k} = ?" for k, v in match.items() if v is not None]
        args: list[Any] = [v for v in match.values() if v is not None]
        sql = "select * from deletion_duties"
        if where:
            sql += " where " + " and ".join(where)
        sql += " order by created_at desc limit ? offset ?"
        return [from_row(DeletionDuty, r) for r in self._db.query(sql, [*args, limit, offset])]

    def due_deletions(
        self, role: str, states: tuple[str, ...], before: float
    ) -> list[DeletionDuty]:
        marks = ", ".join("?" for _ in states)
        rows = self._db.query(
            f"select * from deletion_duties where role = ? and state in ({marks})"
            " and due_at is not null and due_at <= ? order by due_at",
            [role, *states, before],
        )
        return [from_row(DeletionDuty, r) for r in rows]

    # replay protection -----------------------------------------------------------------------

    def remember_jti(self, jti: str, expires_at: int) -> bool:
        with self.transaction():
            now = int(time.time())
            self._db.execute("delete from seen_tokens where expires_at < ?", [now])
            try:
                self._db.execute(
                    "insert into seen_tokens (jti, expires_at) values (?, ?)", [jti, expires_at]
                )
            except sqlite3.IntegrityError:
                return False
        return True
