"""What an agreement still allows: transfers, bytes and uses left, the delete-by date and the
expiry, and one line an operator reads ("2 transfers and 81 MB left; delete by 2026-12-09").

Read from the agreed policy's limits and this side's record of the usage so far (the provider
counts every transfer it accepted and the bytes each reserved or sent, as its decisions do;
the consumer what it received). It informs; the decisions stay with the policy library.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from connector.errors import ConnectorError
from connector.model.enums import DutyState, Role
from connector.model.records import Agreement
from connector.policy.inputs import committed_bytes
from connector.policy.odrl import normalise
from connector.store.base import Store

# leftOperand -> the key of `remaining` it limits
LIMITS = {"count": "transfers", "tdsc:volumeBytes": "bytes", "tdsc:useCount": "uses"}
_DURATION = re.compile(
    r"^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?"
    r"(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$"
)


def _instant(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _after(start: datetime, duration: Any) -> datetime | None:
    """`start` plus an ISO 8601 duration, years and months by the calendar."""
    found = _DURATION.match(duration) if isinstance(duration, str) else None
    if found is None:
        return None
    y, mo, w, d, h, mi = (int(g or 0) for g in found.groups()[:6])
    s = float(found.group(7) or 0)
    months = start.month - 1 + mo + 12 * y
    year, month = start.year + months // 12, months % 12 + 1
    day = start.day
    while True:  # the 31st of a shorter month: its last day
        try:
            moved = start.replace(year=year, month=month, day=day)
            break
        except ValueError:
            day -= 1
    return moved + timedelta(weeks=w, days=d, hours=h, minutes=mi, seconds=s)


def _atoms(constraint: dict[str, Any]) -> list[dict[str, Any]]:
    """The atomic constraints that must all hold (top level or inside `and`)."""
    if "and" in constraint:
        return [a for inner in constraint["and"] for a in _atoms(inner)]
    return [constraint] if "leftOperand" in constraint else []


def _most(operator: str, value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return {"lteq": int(value), "eq": int(value), "lt": int(value) - 1}.get(operator)


def _ends(left: str, right: Any, agreed_at: datetime | None) -> datetime | None:
    """The instant a `dateTime` or `elapsedTime` bound ends the agreement, if it is one."""
    if left == "dateTime":
        return _instant(right)
    if left == "elapsedTime" and agreed_at is not None:
        return _after(agreed_at, right)
    return None


def _limits(agreement: Agreement) -> tuple[dict[str, int], datetime | None]:
    """The agreed maxima (the smallest each permission states) and the expiry."""
    try:
        permissions = normalise(agreement.body)["permissions"]
    except ConnectorError:
        return {}, None
    agreed_at = _instant(agreement.body.get("timestamp")) or _instant(agreement.created_at)
    most: dict[str, int] = {}
    expiry: list[datetime] = []
    for rule in permissions:
        for top in rule.get("constraints", []):
            for c in _atoms(top):
                left, op, right = c["leftOperand"], c["operator"], c["rightOperand"]
                if left in LIMITS and (n := _most(op, right)) is not None:
                    most[LIMITS[left]] = min(most.get(LIMITS[left], n), n)
                elif op in ("lt", "lteq") and (at := _ends(left, right, agreed_at)):
                    expiry.append(at)
    return most, min(expiry) if expiry else None


def remaining(store: Store, agreement: Agreement, me: str) -> dict[str, Any]:
    """(in a store read) What is left of `agreement` on the side of `me` (our DID)."""
    role = Role.PROVIDER if agreement.provider_id == me else Role.CONSUMER
    most, expiry = _limits(agreement)
    transfers = store.agreement_transfers(agreement.id, role)
    if role == Role.PROVIDER:
        used = {"transfers": len(transfers), "bytes": sum(committed_bytes(t) for t in transfers)}
    else:  # what the provider accepted, and what arrived
        accepted = [t for t in transfers if t.provider_pid]
        used = {"transfers": len(accepted), "bytes": sum(t.bytes for t in accepted)}
    used["uses"] = len(store.list_uses(agreement.id)) if "uses" in most else 0
    left: dict[str, Any] = {
        key: (max(most[key] - used[key], 0) if key in most else None) for key in LIMITS.values()
    }
    duties = [
        d
        for d in store.list_deletions(role=role.value, agreement_id=agreement.id, limit=1000)
        if d.state != DutyState.FULFILLED and d.deadline
    ]
    deadlines = sorted(str(d.deadline) for d in duties)
    left["delete_by"] = deadlines[0] if deadlines else None
    left["expires"] = expiry.isoformat().replace("+00:00", "Z") if expiry else None
    left["terminated"] = agreement.terminated_at is not None
    return left


def _size(n: int) -> str:
    for unit, factor in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= factor:
            return f"{n / factor:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes" if n != 1 else "1 byte"


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def summary(left: dict[str, Any]) -> str:
    """One line: "2 transfers and 81 MB left; delete by 2026-12-09"."""
    if left.get("terminated"):
        head = "terminated: nothing left"
    else:
        parts = []
        if left.get("transfers") is not None:
            parts.append(_count(left["transfers"], "transfer"))
        if left.get("bytes") is not None:
            parts.append(_size(left["bytes"]))
        if left.get("uses") is not None:
            parts.append(_count(left["uses"], "use"))
        if not parts:
            head = "no transfer, volume or use limit"
        else:
            head = (", ".join(parts[:-1]) + " and " if len(parts) > 1 else "") + parts[-1]
            head += " left"
        expires = _instant(left.get("expires"))
        if expires is not None:
            head += f"; {'expired' if expires <= datetime.now(UTC) else 'expires'}"
            head += f" {expires.date().isoformat()}"
    delete_by = _instant(left.get("delete_by"))
    if delete_by is not None:
        head += f"; delete by {delete_by.date().isoformat()}"
    return head
