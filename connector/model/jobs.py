"""What each outbox job carries: one pydantic model per job kind.

The outbox stores `payload.stored()` as the job's JSON (the same objects as before these
models existed, so jobs queued by an older version still run) and a handler reads it back
with `Job.read(Model)`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from connector.model.enums import JobKind


class JobPayload(BaseModel):
    model_config = ConfigDict(extra="ignore")
    KIND: ClassVar[JobKind]

    def stored(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class _Send(JobPayload):
    """A DSP message to POST to the peer; `{peer}` in the path is its process id."""

    type: str  # the message's @type, for the timeline
    path: str
    message: dict[str, Any]


class NegotiationSend(_Send):
    KIND = JobKind.CN_SEND
    expect: str  # the state the peer reaches by it (a lost answer is checked against it)


class TransferSend(_Send):
    KIND = JobKind.TP_SEND
    renewal: bool | None = None  # a new pull token after a resume: failing it ends nothing


class _React(JobPayload):
    """Act on the state a process reached, unless it moved on before the job ran."""

    state: str


class NegotiationReact(_React):
    KIND = JobKind.CN_REACT


class TransferReact(_React):
    KIND = JobKind.TP_REACT


class Pull(JobPayload):
    KIND = JobKind.DP_PULL


class Push(JobPayload):
    KIND = JobKind.DP_PUSH


class Settle(JobPayload):
    KIND = JobKind.METERING_SETTLE


class UsageSend(JobPayload):
    """A usage-control document to POST to the peer; `after` names what to record once
    the peer accepted it."""

    KIND = JobKind.USAGE_SEND
    url: str
    peer: str
    body: dict[str, Any]
    type: str
    after: dict[str, Any] = Field(default_factory=dict)
