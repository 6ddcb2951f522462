"""Metering records: what one window of a transfer carried, signed by the provider.

A record is a plain JSON object; its hash is the SHA-256 of its canonical form, and each
record names the hash of the one before it in the agreement's chain. The provider signs a
record (JWS, EdDSA, over that hash); the consumer's receipt is its own JWS over the same hash.
The profile terms are in docs/metering.md.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel


class MeteringKind(StrEnum):
    """What a metering record marks: a stream's start, a window of it, or how it ended."""

    START = "start"
    WINDOW = "window"
    COMPLETE = "complete"
    SUSPEND = "suspend"
    TERMINATE = "terminate"
    INTERRUPTED = "interrupted"

    @property
    def ends(self) -> bool:
        """Whether the stream ended (for now or for good) with this record."""
        return self not in (MeteringKind.START, MeteringKind.WINDOW)


RECORD_FIELDS = (
    "agreement", "seq", "kind", "transfer", "provider", "consumer",
    "offset", "length", "records", "sha256", "from", "to", "prev",
)  # fmt: skip


class MeteringEntry(BaseModel):
    """One link of an agreement's chain as either side keeps it."""

    agreement_id: str
    seq: int
    transfer_id: str
    kind: str
    hash: str
    record: dict[str, Any]
    signature: str
    receipt: str | None = None
    refusal: str | None = None

    def line(self) -> dict[str, Any]:
        """The JSON Lines form of `connector metering export`."""
        return {
            "record": self.record,
            "hash": self.hash,
            "signature": self.signature,
            "receipt": self.receipt,
            "refusal": self.refusal,
        }


class MeteringHead(BaseModel):
    """The newest head of an agreement's chain that both parties signed: the provider states
    that the chain held `count` records ending in a hash at a time, the consumer countersigns
    it. An export carries it, so a chain cut short shows (docs/metering.md)."""

    id: str  # the agreement's id: one newest head per agreement
    count: int
    body: dict[str, Any]
    signature: str
    receipt: str

    def signed(self) -> dict[str, Any]:
        """The form an export and `metering verify --head` carry."""
        return {"body": self.body, "signature": self.signature, "receipt": self.receipt}


def merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Half-open ranges, sorted, with overlapping and touching ones joined."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out
