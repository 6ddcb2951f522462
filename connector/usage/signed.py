"""Signing and checking the usage-control documents: use records, deletion schedules and
receipts (signed by the consumer), termination notices (signed by the provider).

The same checks serve the provider receiving them and an auditor verifying a receipt offline
(`connector deletions verify`): the exact field set, the type, the parties, the hash and the
signature. A failed check is a RecordRefused naming what is wrong.
"""

from __future__ import annotations

from typing import Any

from connector.errors import BadRequest
from connector.identity import signatures
from connector.usage.records import (
    RECEIPT_FIELDS,
    RECEIPT_TYPE,
    SCHEDULE_FIELDS,
    SCHEDULE_TYPE,
    TERMINATION_FIELDS,
    TERMINATION_TYPE,
    USE_FIELDS,
    USE_TYPE,
)

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
