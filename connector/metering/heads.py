"""Signed chain heads: the provider states how long an agreement's chain is and what its last
hash is, at a time; the consumer countersigns that statement once it holds and receipted the
record it names. An exported chain carries the newest such head, so dropping the tail of a
chain, and editing the unsigned header to match, no longer verifies (docs/metering.md)."""

from __future__ import annotations

from typing import Any

from connector.errors import BadRequest
from connector.identity import signatures
from connector.model.metering import MeteringEntry, MeteringHead
from connector.model.records import utcnow

HEAD_TYPE = "tdsc-metering-head"
HEAD_FIELDS = ("type", "agreement", "provider", "consumer", "count", "head", "at")


class HeadRefused(BadRequest):
    """A signed chain head that is malformed, altered or not both parties'."""


def head_body(
    agreement_id: str, provider: str, consumer: str, newest: MeteringEntry
) -> dict[str, Any]:
    """What the provider signs about its chain now: `count` records, ending in `head`."""
    return {
        "type": HEAD_TYPE,
        "agreement": agreement_id,
        "provider": provider,
        "consumer": consumer,
        "count": newest.seq + 1,
        "head": newest.hash,
        "at": utcnow(),
    }


def check_body(body: Any, agreement_id: str, provider: str, consumer: str) -> dict[str, Any]:
    """The body if it is a head of this agreement between these parties; HeadRefused if not."""
    if not isinstance(body, dict) or set(body) != set(HEAD_FIELDS):
        raise HeadRefused(f"a chain head must have exactly the fields {', '.join(HEAD_FIELDS)}")
    if body["type"] != HEAD_TYPE:
        raise HeadRefused(f"type is {body['type']!r}, expected {HEAD_TYPE!r}")
    expected = {"agreement": agreement_id, "provider": provider, "consumer": consumer}
    for key, value in expected.items():
        if body[key] != value:
            raise HeadRefused(f"the chain head's {key} is {body[key]!r}, expected {value!r}")
    count = body["count"]
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise HeadRefused(f"the chain head's count must be a positive integer, got {count!r}")
    if not isinstance(body["head"], str) or not isinstance(body["at"], str):
        raise HeadRefused("the chain head's head and at must be strings")
    return body


def check_signed(
    signed: Any,
    agreement_id: str,
    provider: str,
    consumer: str,
    provider_doc: dict[str, Any],
    consumer_doc: dict[str, Any] | None,
) -> dict[str, Any]:
    """The body of a head the provider signed (and, with `consumer_doc`, the consumer
    countersigned); HeadRefused naming what is wrong otherwise."""
    if not isinstance(signed, dict):
        raise HeadRefused("a signed chain head must be {body, signature, receipt}")
    body = check_body(signed.get("body"), agreement_id, provider, consumer)
    try:
        signatures.verify(body, str(signed.get("signature")), provider, provider_doc)
    except BadRequest as exc:
        raise HeadRefused(f"the provider's signature of the chain head: {exc.detail}") from exc
    if consumer_doc is not None:
        try:
            signatures.verify(body, str(signed.get("receipt")), consumer, consumer_doc)
        except BadRequest as exc:
            why = f"the consumer's countersignature of the chain head: {exc.detail}"
            raise HeadRefused(why) from exc
    return body


def stored(signed: dict[str, Any], body: dict[str, Any]) -> MeteringHead:
    return MeteringHead(
        id=str(body["agreement"]),
        count=int(body["count"]),
        body=body,
        signature=str(signed["signature"]),
        receipt=str(signed["receipt"]),
    )
