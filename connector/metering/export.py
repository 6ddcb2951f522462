"""The exported form of a chain: a header line, then one line per record (JSON Lines)."""

from __future__ import annotations

from typing import Any

from connector.model.metering import MeteringEntry, MeteringHead
from connector.model.records import Agreement, utcnow

CHAIN_TYPE = "tdsc-metering-chain"


def chain_header(
    agreement: Agreement, chain: list[MeteringEntry], signed_head: MeteringHead | None = None
) -> dict[str, Any]:
    """Who the chain is between, how long it is and its head, and the newest head both
    parties signed: the header itself is unsigned, the signed head is what proves a length."""
    head = max(chain, key=lambda e: e.seq) if chain else None
    return {
        "type": CHAIN_TYPE,
        "agreement": agreement.id,
        "provider": agreement.provider_id,
        "consumer": agreement.consumer_id,
        "count": (head.seq + 1) if head else 0,
        "head": head.hash if head else None,
        "exported_at": utcnow(),
        "signed_head": signed_head.signed() if signed_head else None,
    }
