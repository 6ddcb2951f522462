"""Signing and checking the usage-control documents: use records, deletion schedules and
receipts (signed by the consumer), termination notices (signed by the provider).

The same checks serve the provider receiving them and an auditor verifying a receipt offline
(`connector deletions verify`): the exact field set, the type, the parties, the hash and the
signature. A failed check is a RecordRefused naming what is wrong.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from connector.errors import BadRequest
from connector.identity import signatures
from connector.model.usage import (
    RECEIPT_FIELDS,
    RECEIPT_TYPE,
    SCHEDULE_FIELDS,
    SCHEDULE_TYPE,
    TERMINATION_FIELDS,
    TERMINATION_TYPE,
    USE_FIELDS,
    USE_TYPE,
    parse_time,
)

# Clocks of two parties differ a little: a receipt may be dated this much before the delivery
# (or after now) without being refused.
CLOCK_SKEW_SECONDS = 5.0
SHA256 = re.compile(r"^[0-9a-f]{64}$")

FIELDS: dict[str, tuple[str, ...]] = {
    USE_TYPE: USE_FIELDS,
    RECEIPT_TYPE: RECEIPT_FIELDS,
    SCHEDULE_TYPE: SCHEDULE_FIELDS,
    TERMINATION_TYPE: TERMINATION_FIELDS,
}


class RecordRefused(BadRequest):
    """A signed usage-control document that is malformed, altered or not the signer's."""


def check(
    kind: str,
    record: Any,
    signature: Any,
    signer: str,
    signer_doc: dict[str, Any],
    expected: dict[str, Any],
) -> dict[str, Any]:
    """The document, if it is a well-formed `kind` whose `expected` fields match and which
    `signer` signed exactly as it is; RecordRefused otherwise."""
    if not isinstance(record, dict):
        raise RecordRefused(f"a {kind} must be a JSON object")
    fields = FIELDS[kind]
    if set(record) != set(fields):
        missing = sorted(set(fields) - set(record))
        extra = sorted(set(record) - set(fields))
        raise RecordRefused(
            f"the {kind} does not have the profile's fields"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unexpected {', '.join(extra)}" if extra else "")
        )
    if record.get("type") != kind:
        raise RecordRefused(f"type is {record.get('type')!r}, expected {kind!r}")
    for key, value in expected.items():
        if record.get(key) != value:
            raise RecordRefused(f"{key} is {record.get(key)!r}, expected {value!r}")
    if not isinstance(signature, str) or not signature:
        raise RecordRefused(f"the {kind} carries no signature")
    try:
        signatures.verify(record, signature, signer, signer_doc)
    except BadRequest as exc:
        raise RecordRefused(f"the {kind} is refused: {exc.detail}") from exc
    return record


class Delivery(NamedTuple):
    """The provider's own record of a copy it delivered: what a receipt must name."""

    bytes: int
    sha256: str | None
    at: float | None  # epoch seconds; None when unknown


def check_deleted_copy(record: dict[str, Any], delivered: Delivery | None, now: float) -> None:
    """A receipt proves the deletion of the delivered copy only if it names that copy (its
    bytes and SHA-256) and is dated after the delivery and not in the future; RecordRefused
    otherwise. Without a delivery record (offline), it must at least name a copy."""
    deleted = record.get("deleted")
    if not isinstance(deleted, list) or not all(_is_entry(d) for d in deleted):
        raise RecordRefused(
            "deleted must be a list of {file, bytes (an integer), sha256 (64 hex digits)}"
        )
    try:
        deleted_at = parse_time(str(record.get("deleted_at")))
    except ValueError as exc:
        raise RecordRefused(
            f"deleted_at is not a time stamp: {record.get('deleted_at')!r}"
        ) from exc
    if deleted_at > now + CLOCK_SKEW_SECONDS:
        raise RecordRefused(f"deleted_at {record.get('deleted_at')} lies in the future")
    if delivered is None:
        if not deleted:
            raise RecordRefused("the receipt names no deleted copy")
        return
    if delivered.at is not None and deleted_at < delivered.at - CLOCK_SKEW_SECONDS:
        raise RecordRefused(
            f"deleted_at {record.get('deleted_at')} is before the copy was delivered"
        )
    if delivered.bytes <= 0:
        return  # nothing was delivered: there is nothing to name
    named = any(
        d["bytes"] == delivered.bytes
        and (delivered.sha256 is None or d["sha256"] == delivered.sha256.lower())
        for d in deleted
    )
    if not named:
        what = f"{delivered.bytes} bytes" + (
            f", sha256 {delivered.sha256}" if delivered.sha256 else ""
        )
        raise RecordRefused(f"the receipt does not name the copy that was delivered ({what})")


def _is_entry(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("file"), str)
        and isinstance(entry.get("bytes"), int)
        and not isinstance(entry.get("bytes"), bool)
        and isinstance(entry.get("sha256"), str)
        and SHA256.match(entry["sha256"]) is not None
    )
