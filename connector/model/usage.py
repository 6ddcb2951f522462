"""What usage control keeps and exchanges: use records, deletion duties and their receipts.

Use records and deletion receipts are plain JSON objects signed by the consumer the way
agreements and metering records are (a JWS over the SHA-256 of the canonical JSON,
connector/identity/signatures.py), so the provider, or anyone with the consumer's public key,
can check them. The fields are defined in docs/usage-control.md.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, NamedTuple

from pydantic import BaseModel, Field

from connector.model.enums import DutyState, Role

USE_FIELDS = (
    "type", "agreement", "seq", "provider", "consumer", "dataset", "transfer",
    "purpose", "bytes", "sha256", "at", "prev",
)  # fmt: skip
RECEIPT_FIELDS = (
    "type", "agreement", "dataset", "provider", "consumer", "transfer",
    "deleted", "deadline", "reason", "deleted_at",
)  # fmt: skip
SCHEDULE_FIELDS = (
    "type", "agreement", "dataset", "provider", "consumer", "transfer",
    "deadline", "fixed_by", "at",
)  # fmt: skip
TERMINATION_FIELDS = ("type", "agreement", "provider", "consumer", "reason", "terminated_at")
USE_TYPE = "tdsc-use"
RECEIPT_TYPE = "tdsc-deletion-receipt"
SCHEDULE_TYPE = "tdsc-deletion-schedule"
TERMINATION_TYPE = "tdsc-agreement-termination"


def parse_time(text: str) -> float:
    """Epoch seconds of an RFC 3339 time stamp with a zone; ValueError otherwise."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"time stamp without a zone: {text}")
    return moment.timestamp()


def format_time(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utcnow() -> str:
    return format_time(time.time())


class UseEntry(BaseModel):
    """One signed use record in an agreement's chain of uses (both sides keep it)."""

    agreement_id: str
    seq: int
    hash: str
    record: dict[str, Any]
    signature: str
    reported_at: str | None = None

    def line(self) -> dict[str, Any]:
        return {"record": self.record, "hash": self.hash, "signature": self.signature}


class UseSummary(NamedTuple):
    """What a use decision needs from the chain, without reading the chain."""

    uses: int
    first_at: str | None
    of_transfer: bool  # the copy of this transfer was used before


class DeletionDuty(BaseModel):
    """One delivered copy that must be deleted by a deadline.

    The consumer keeps one per copy it holds (id = its transfer id) and carries it out; the
    provider keeps one per copy it delivered (id = its transfer id) and tracks it until a
    verified receipt arrives.
    """

    id: str
    role: Role
    agreement_id: str
    dataset_id: str
    counterparty_id: str
    peer_transfer_id: str | None = None
    deadline: str | None = None
    due_at: float | None = None
    fixed_by: str = ""
    state: DutyState = DutyState.PENDING
    path: str | None = None
    receipt: dict[str, Any] | None = None
    signature: str | None = None
    fulfilled_at: str | None = None
    # provider: its own record of the copy it delivered (a receipt must name it)
    delivered_at: str | None = None
    delivered_bytes: int | None = None
    delivered_sha256: str | None = None
    notes: list[str] = Field(default_factory=list)
    created_at: str = Field(default_factory=utcnow)
    updated_at: str = Field(default_factory=utcnow)


def earliest_delete(obligations: list[dict[str, Any]]) -> str | None:
    """The earliest deadline among a decision's delete obligations (None without one)."""
    deadlines = [
        str(o["deadline"])
        for o in obligations
        if o.get("action") == "delete" and isinstance(o.get("deadline"), str)
    ]
    return min(deadlines, key=parse_time) if deadlines else None


def reporting_duty(obligations: list[dict[str, Any]]) -> bool:
    """A `log` or `notify` duty: use records go to the provider."""
    return any(o.get("action") in ("log", "notify") for o in obligations)


def has_delete_duty(policy: dict[str, Any]) -> bool:
    """Whether an agreement (its normalised policy) carries a delete duty anywhere."""
    rules = [*policy.get("permissions", []), {"duties": policy.get("obligations", [])}]
    return any(
        isinstance(d, dict) and d.get("action") == "delete"
        for rule in rules
        if isinstance(rule, dict)
        for d in rule.get("duties", [])
    )
