"""The rows the connector keeps: one pydantic model per table."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, Field

from connector.model.enums import (
    Classification,
    Direction,
    JobKind,
    JobStatus,
    Role,
    TransferFormat,
)
from connector.model.jobs import JobPayload
from connector.model.states import CN, TP

P = TypeVar("P", bound=JobPayload)


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Dataset(BaseModel):
    id: str
    title: str = ""
    description: str = ""
    keywords: list[str] = Field(default_factory=list)
    themes: list[str] = Field(default_factory=list)  # dcat:theme, for federated search
    media_type: str = "application/octet-stream"
    source: dict[str, Any]
    offers: list[dict[str, Any]]
    classification: Classification = Classification.GENERAL
    size: int | None = None
    sha256: str | None = None
    created_at: str = Field(default_factory=utcnow)


class Negotiation(BaseModel):
    id: str
    role: Role
    state: CN
    provider_pid: str | None = None
    consumer_pid: str | None = None
    counterparty_id: str
    counterparty_address: str
    dataset_id: str
    offer: dict[str, Any]
    offer_by: Role
    # who sent the first message (None: a record from before this was kept): a negotiation
    # the peer opened is unsolicited, so never auto-accepted and counted against its cap
    initiator: Role | None = None
    agreement_id: str | None = None
    purpose: str | None = None
    reason: list[str] = Field(default_factory=list)
    # provider: the caller's verified credential claims the negotiation is decided on
    counterparty_credentials: dict[str, Any] = Field(default_factory=dict)
    created_at: str = Field(default_factory=utcnow)
    updated_at: str = Field(default_factory=utcnow)


class Agreement(BaseModel):
    id: str
    negotiation_id: str
    dataset_id: str
    provider_id: str
    consumer_id: str
    body: dict[str, Any]
    provider_signature: str | None = None
    consumer_signature: str | None = None
    policy_version: str | None = None
    terminated_at: str | None = None
    termination_reason: str | None = None
    created_at: str = Field(default_factory=utcnow)


class Transfer(BaseModel):
    id: str
    role: Role
    state: TP
    provider_pid: str | None = None
    consumer_pid: str | None = None
    agreement_id: str
    dataset_id: str
    format: TransferFormat
    counterparty_id: str
    counterparty_address: str
    data_address: dict[str, Any] | None = None
    bytes: int = 0
    sha256: str | None = None
    path: str | None = None
    purpose: str | None = None
    limit_bytes: int | None = None
    reason: list[str] = Field(default_factory=list)
    created_at: str = Field(default_factory=utcnow)
    updated_at: str = Field(default_factory=utcnow)


class TimelineEntry(BaseModel):
    """One message sent or received, or one thing that happened, in a process's life."""

    seq: int | None = None
    process_id: str
    direction: Direction
    message_type: str
    state: str | None = None
    status: int | None = None
    detail: str = ""
    body: Any = None
    at: str = Field(default_factory=utcnow)


class Job(BaseModel):
    """Durable work for the outbox worker: a message to send, data to move."""

    id: int | None = None
    process_id: str
    kind: JobKind
    payload: dict[str, Any]
    attempts: int = 0
    next_at: float = 0.0
    status: JobStatus = JobStatus.PENDING
    last_error: str | None = None
    owner: str | None = None  # the replica running it
    lease_until: float | None = None  # epoch seconds; renewed while it runs

    def read(self, model: type[P]) -> P:
        """The payload as the model of this job's kind."""
        return model.model_validate(self.payload)


class DecisionRecord(BaseModel):
    """One policy decision, as the decision log keeps it."""

    seq: int | None = None
    at: str = Field(default_factory=utcnow)
    phase: str
    process_id: str | None = None
    dataset_id: str | None = None
    consumer_id: str | None = None
    input_sha256: str
    allow: bool
    reasons: list[str] = Field(default_factory=list)
    obligations: list[dict[str, Any]] = Field(default_factory=list)
    limits: dict[str, Any] = Field(default_factory=dict)
    engine: str
    policy_version: str
    # the decision's input as the enforcement point asked it (before normalising), kept for
    # `decision_log_input_days` so the decision can be replayed; None once forgotten
    input: dict[str, Any] | None = None
