"""The connector's closed sets of words: roles, directions, job kinds, formats, duty states.

StrEnum members are `str`, so what the store keeps and what goes on the wire stays
byte-identical to the words used before; records validate them from the stored strings.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """Which side of a negotiation, transfer, agreement or duty this connector is on."""

    PROVIDER = "provider"
    CONSUMER = "consumer"

    @property
    def other(self) -> Role:
        return Role.CONSUMER if self is Role.PROVIDER else Role.PROVIDER


class Direction(StrEnum):
    """What a timeline entry records: a message sent or received, one refused or failed to
    go out, or a note on something that happened."""

    SENT = "sent"
    RECEIVED = "received"
    REFUSED = "refused"
    FAILED = "failed"
    NOTE = "note"


class JobKind(StrEnum):
    """The outbox's jobs; data moves are kinds starting `dp-` (the store's claim order
    relies on that prefix: messages never wait for a data move)."""

    CN_SEND = "cn-send"
    CN_REACT = "cn-react"
    TP_SEND = "tp-send"
    TP_REACT = "tp-react"
    DP_PULL = "dp-pull"
    DP_PUSH = "dp-push"
    METERING_SETTLE = "metering-settle"
    USAGE_SEND = "usage-send"

    @property
    def is_data_move(self) -> bool:
        return self.value.startswith("dp-")


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class TransferFormat(StrEnum):
    """The DSP transfer formats this connector serves."""

    HTTP_PULL = "HttpData-PULL"
    HTTP_PUSH = "HttpData-PUSH"

    @property
    def is_push(self) -> bool:
        return self is TransferFormat.HTTP_PUSH

    @property
    def is_pull(self) -> bool:
        return self is TransferFormat.HTTP_PULL


class DutyState(StrEnum):
    """A deletion duty: waiting for its deadline, carried out (receipt), or past due."""

    PENDING = "pending"
    FULFILLED = "fulfilled"
    OVERDUE = "overdue"


class Classification(StrEnum):
    """How sensitive a dataset is (dcat extension, docs/profile.md)."""

    GENERAL = "general"
    IMPORTANT = "important"
    CORE = "core"


class CNEvent(StrEnum):
    """The event types of a ContractNegotiationEventMessage."""

    ACCEPTED = "ACCEPTED"
    FINALIZED = "FINALIZED"
