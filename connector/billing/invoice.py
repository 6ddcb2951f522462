"""An invoice for one agreement and one calendar month, from its metering chain alone.

Only windows the consumer countersigned are billed; a window without a receipt (or refused)
is listed as disputed. Bytes are billed once per transfer however often a range was sent (a
resumed pull re-sends what was in flight when it broke off): a byte is billed in the month of
the first receipted record, in chain order (`seq`), that covers it. Which bytes are new is
decided by chain order alone, never by comparing dates: a provider's clock may step back
between an interrupted stream and its resume, and the same range must not then be billed once
under each of two months.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from connector.billing.prices import Price
from connector.errors import BadRequest
from connector.model.metering import MeteringEntry, merge_ranges

CENT = Decimal("0.01")
GB = Decimal(10**9)


@dataclass
class Usage:
    bytes: int = 0
    records: int = 0
    transfers: set[str] = field(default_factory=set)


def check_period(period: str) -> str:
    year, dash, month = period.partition("-")
    if not (
        dash and len(year) == 4 and year.isdigit() and month.isdigit() and 1 <= int(month) <= 12
    ):
        raise BadRequest(f"period must be YYYY-MM, got {period!r}")
    return f"{year}-{int(month):02d}"


def _new_bytes(start: int, end: int, covered: list[tuple[int, int]]) -> int:
    """How many of [start, end) lie outside the covered ranges."""
    overlap = sum(max(0, min(end, b) - max(start, a)) for a, b in covered)
    return end - start - overlap


def usage_of(chain: list[MeteringEntry], period: str) -> tuple[Usage, list[dict[str, Any]]]:
    """(billable usage in the period, disputed windows in the period).

    Every record is walked in chain order whatever its month: a record dated after the period
    may still come first in the chain (the clock stepped back), and the bytes it covers are
    then its month's, not the period's. Summed over all months, the billed bytes of a
    transfer are the union of its receipted ranges."""
    usage = Usage()
    disputed: list[dict[str, Any]] = []
    covered: dict[str, list[tuple[int, int]]] = {}
    for entry in sorted(chain, key=lambda e: e.seq):
        rec = entry.record
        month = str(rec.get("to", ""))[:7]  # which month a record bills in, nothing more
        start, length = int(rec.get("offset", 0)), int(rec.get("length", 0))
        if length == 0:
            continue
        if not entry.receipt:
            if month == period:
                disputed.append({
                    "seq": entry.seq, "transfer": entry.transfer_id,
                    "bytes": f"{start}-{start + length - 1}", "records": rec.get("records", 0),
                    "reason": entry.refusal or "no receipt from the consumer",
                })  # fmt: skip
            continue
        seen = covered.setdefault(entry.transfer_id, [])
        fresh = _new_bytes(start, start + length, seen)
        if month == period and fresh > 0:
            usage.bytes += fresh
            # a window partly sent before (resumed pull) counts its records in proportion
            usage.records += int(rec.get("records", 0)) * fresh // length
            usage.transfers.add(entry.transfer_id)
        covered[entry.transfer_id] = merge_ranges([*seen, (start, start + length)])
    return usage, disputed


def _money(value: Decimal) -> str:
    return str(value.quantize(CENT, rounding=ROUND_HALF_UP))


def compute(
    agreement: dict[str, Any], prices: list[Price], chain: list[MeteringEntry], period: str
) -> dict[str, Any]:
    period = check_period(period)
    usage, disputed = usage_of(chain, period)
    currencies = {p.currency for p in prices}
    if len(currencies) > 1:
        raise BadRequest(f"the agreement prices in several currencies: {sorted(currencies)}")
    measures = {
        "perGB": (Decimal(usage.bytes) / GB, "GB"),
        "perRecord": (Decimal(usage.records), "records"),
        "perTransfer": (Decimal(len(usage.transfers)), "transfers"),
        "perMonth": (Decimal(1), "month"),
    }
    items = []
    total = Decimal(0)
    for price in prices:
        used, measure = measures[price.unit]
        billed = max(Decimal(0), used - price.free)
        amount = (billed * price.amount).quantize(CENT, rounding=ROUND_HALF_UP)
        total += amount
        items.append({
            "description": f"{price.unit} ({measure})", "used": str(used.normalize()),
            "free": str(price.free), "billed": str(billed.normalize()),
            "unit_price": str(price.amount), "amount": _money(amount),
        })  # fmt: skip
    in_period = [e for e in chain if str(e.record.get("to", ""))[:7] == period]
    head = max(chain, key=lambda e: e.seq) if chain else None
    return {
        "agreement": agreement["id"],
        "provider": agreement["provider_id"],
        "consumer": agreement["consumer_id"],
        "period": period,
        "currency": next(iter(currencies), None),
        "usage": {
            "bytes": usage.bytes,
            "records": usage.records,
            "transfers": len(usage.transfers),
        },
        "line_items": items,
        "total": _money(total),
        "disputed": disputed,
        "chain": {
            "head": head.hash if head else None,
            "length": len(chain),
            "records": [
                {"seq": e.seq, "hash": e.hash, "signature": e.signature, "receipt": e.receipt}
                for e in sorted(in_period, key=lambda e: e.seq)
            ],
        },
    }


def to_csv(invoice: dict[str, Any]) -> str:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["agreement", invoice["agreement"], "period", invoice["period"],
                "currency", invoice["currency"] or ""])  # fmt: skip
    w.writerow(["description", "used", "free", "billed", "unit_price", "amount"])
    for item in invoice["line_items"]:
        w.writerow(
            [item[k] for k in ("description", "used", "free", "billed", "unit_price", "amount")]
        )
    w.writerow(["total", "", "", "", "", invoice["total"]])
    for d in invoice["disputed"]:
        w.writerow(["disputed", f"record {d['seq']}", d["transfer"], d["bytes"], "", d["reason"]])
    w.writerow(["chain head", invoice["chain"]["head"] or ""])
    return out.getvalue()
