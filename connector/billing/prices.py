"""Price terms: ODRL `compensate` duties of the agreement, read into typed prices.

    {"action": "compensate", "constraint": [
        {"leftOperand": "payAmount", "operator": "eq", "rightOperand": 0.05},
        {"leftOperand": "unit", "operator": "eq",
         "rightOperand": "https://w3id.org/tdsc/v1/perGB"},
        {"leftOperand": "https://w3id.org/tdsc/v1/currency", "operator": "eq",
         "rightOperand": "EUR"},
        {"leftOperand": "https://w3id.org/tdsc/v1/freeQuota", "operator": "eq",
         "rightOperand": 1}]}

Units (docs/metering.md): perGB (10^9 bytes), perRecord, perTransfer, perMonth (a flat amount
per invoice period). The free quota is in the unit's own measure (GB, records, transfers).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from connector.errors import BadRequest
from connector.policy.odrl import UndecidablePolicy, normalise

UNITS = {"perGB", "perRecord", "perTransfer", "perMonth"}
NAMESPACE = "https://w3id.org/tdsc/v1/"


class PriceTermError(BadRequest):
    """A compensate duty that cannot be priced."""


@dataclass(frozen=True)
class Price:
    unit: str
    amount: Decimal
    currency: str
    free: Decimal = Decimal(0)


def price_terms(policy: dict[str, Any]) -> list[Price]:
    """Every compensate duty of the policy (its permissions' and its own obligations)."""
    try:
        normal = normalise(policy)
    except UndecidablePolicy as exc:
        raise PriceTermError(f"the agreement's policy cannot be read: {exc}") from exc
    duties = [d for p in normal["permissions"] for d in p.get("duties", [])]
    duties += normal.get("obligations", [])
    return [_price(d) for d in duties if d.get("action") == "compensate"]


def _price(duty: dict[str, Any]) -> Price:
    terms = {c.get("leftOperand"): c.get("rightOperand") for c in duty.get("constraints", [])}
    unit = str(terms.get("unit") or "").removeprefix(NAMESPACE).removeprefix("tdsc:")
    if unit not in UNITS:
        raise PriceTermError(f"compensate unit {terms.get('unit')!r} is not one of {sorted(UNITS)}")
    currency = terms.get("tdsc:currency")
    if not isinstance(currency, str) or len(currency) != 3:
        raise PriceTermError("a compensate duty needs tdsc:currency (an ISO 4217 code)")
    return Price(
        unit=unit,
        amount=_decimal(terms.get("payAmount"), "payAmount"),
        currency=currency.upper(),
        free=_decimal(terms.get("tdsc:freeQuota", 0), "tdsc:freeQuota"),
    )


def _decimal(value: Any, name: str) -> Decimal:
    try:
        out = Decimal(str(value))
    except InvalidOperation as exc:
        raise PriceTermError(f"{name} must be a number, got {value!r}") from exc
    if not out.is_finite() or out < 0:
        raise PriceTermError(f"{name} must be a non-negative number, got {value!r}")
    return out
