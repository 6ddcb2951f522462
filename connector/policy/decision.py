"""The decision-point contract: input, output, and the interface engines implement.

Protocol code asks `DecisionPoint.decide` at every enforcement point and never looks
inside a policy itself, so an engine (embedded Rego, an OPA sidecar) plugs in here alone.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel, Field


class Phase(StrEnum):
    CATALOG = "catalog"
    NEGOTIATION = "negotiation"
    TRANSFER = "transfer"
    STREAM = "stream"
    USE = "use"


class Party(BaseModel):
    id: str
    credentials: dict[str, Any] = Field(default_factory=dict)


class DecisionInput(BaseModel):
    phase: Phase
    now: str = Field(default_factory=lambda: datetime.now(UTC).isoformat().replace("+00:00", "Z"))
    provider: Party
    consumer: Party
    dataset: dict[str, Any] = Field(default_factory=dict)
    policy: dict[str, Any] = Field(default_factory=dict)
    request: dict[str, Any] = Field(default_factory=dict)
    usage: dict[str, Any] = Field(default_factory=dict)


class Decision(BaseModel):
    allow: bool
    reasons: list[str] = Field(default_factory=list)
    obligations: list[dict[str, Any]] = Field(default_factory=list)
    limits: dict[str, Any] = Field(default_factory=dict)
    engine: str = ""


class DecisionPoint(Protocol):
    version: str

    async def decide(self, decision_input: DecisionInput) -> Decision: ...

    async def decide_many(self, inputs: list[DecisionInput]) -> list[Decision]:
        """Many decisions logged in one write (the catalog asks one per offer)."""
        ...


class PermitAll:
    """Allows everything: the engine until a Rego engine is configured.

    Protocol-level checks (the offer exists, the agreement is finalized and names the
    caller) still apply; this engine only decides the usage terms, which it leaves open.
    """

    version = "permit-all"

    async def decide(self, decision_input: DecisionInput) -> Decision:
        return Decision(allow=True, engine="permit-all")

    async def decide_many(self, inputs: list[DecisionInput]) -> list[Decision]:
        return [Decision(allow=True, engine="permit-all") for _ in inputs]
