"""The participant registry: who is a member, with which attributes, and whether revoked.

Kept in its own SQLite file: the authority is one instance per data space, and its registry
must not mix with the connector's own negotiations and transfers.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from connector.credentials import status_list
from connector.errors import BadRequest, NotFound
from connector.model.records import utcnow


class Participant(BaseModel):
    id: str
    name: str
    organisation: str
    roles: list[str] = Field(default_factory=list)
    region: str | None = None
    dsp_endpoint: str
    status: Literal["active", "revoked"] = "active"
    status_index: int
    valid_seconds: float | None = None
    onboarded_at: str = Field(default_factory=utcnow)
    revoked_at: str | None = None
    revocation_reason: str | None = None

    def public(self) -> dict[str, Any]:
        """The registry entry other members see (the crawler reads these)."""
        return {
            "id": self.id,
            "name": self.name,
            "dspEndpoint": self.dsp_endpoint,
            "status": self.status,
            "attributes": {
                "organisation": self.organisation,
                "roles": self.roles,
                "region": self.region,
            },
            "onboardedAt": self.onboarded_at,
        }


class Registry:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        # one connection, used from worker threads (never the event loop): statements take
        # turns, and a read never runs inside another thread's open transaction
        self._lock = threading.RLock()
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS participants ("
            " id TEXT PRIMARY KEY, status_index INTEGER UNIQUE NOT NULL, body TEXT NOT NULL)"
        )

    def close(self) -> None:
        self._db.close()

    def onboard(self, fields: dict[str, Any]) -> Participant:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if self._row(str(fields["id"])) is not None:
                    raise BadRequest(f"{fields['id']} is already a participant")
                (top,) = self._db.execute(
                    "SELECT COALESCE(MAX(status_index), -1) FROM participants"
                ).fetchone()
                if top + 1 >= status_list.SIZE:
                    raise BadRequest("the status list is full")
                record = Participant(status_index=top + 1, **fields)
                self._db.execute(
                    "INSERT INTO participants (id, status_index, body) VALUES (?, ?, ?)",
                    (record.id, record.status_index, record.model_dump_json()),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return record

    def _row(self, did: str) -> Participant | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM participants WHERE id = ?", (did,)).fetchone()
        return Participant.model_validate_json(row[0]) if row else None

    def get(self, did: str) -> Participant:
        record = self._row(did)
        if record is None:
            raise NotFound(f"{did} is not a participant of this data space")
        return record

    def find(self, did: str) -> Participant | None:
        return self._row(did)

    def all(self) -> list[Participant]:
        with self._lock:
            rows = self._db.execute(
                "SELECT body FROM participants ORDER BY status_index"
            ).fetchall()
        return [Participant.model_validate_json(r[0]) for r in rows]

    def set_status(
        self, did: str, status: Literal["active", "revoked"], reason: str | None
    ) -> Participant:
        with self._lock:
            record = self.get(did).model_copy(
                update={
                    "status": status,
                    "revoked_at": utcnow() if status == "revoked" else None,
                    "revocation_reason": reason if status == "revoked" else None,
                }
            )
            self._db.execute(
                "UPDATE participants SET body = ? WHERE id = ?", (record.model_dump_json(), did)
            )
        return record

    def revoked_indexes(self) -> set[int]:
        return {p.status_index for p in self.all() if p.status == "revoked"}
