"""An offer in plain language: what an operator publishes, read back the way a consumer meets it.

    for research only; at most 100 MB in total and 3 transfers; delete within 7 days of
    delivery; 0.05 EUR per GB

It reads the normalised offer (connector/policy/odrl.py), so it explains exactly the terms
the library decides; a term it has no words for is shown as it is written.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from connector.policy.odrl import normalise

_UNITS = (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("KB", 10**3))
_DURATION_PARTS = re.compile(r"(\d+)([YMWDHS])")
_DURATION_NAMES = {"Y": "year", "W": "week", "D": "day", "H": "hour", "S": "second"}
_PRICE_UNITS = {
    "perGB": "per GB",
    "perTransfer": "per transfer",
    "perMonth": "per month",
    "perRecord": "per record",
}
_FREE_UNITS = {
    "perGB": "GB",
    "perTransfer": "transfers",
    "perMonth": "months",
    "perRecord": "records",
}


def size(value: Any) -> str:
    """Bytes in decimal units, as invoices count them: 100000000 -> '100 MB'."""
    try:
        n = Decimal(str(value))
    except ArithmeticError:
        return str(value)
    for unit, factor in _UNITS:
        if n >= factor:
            return f"{_number(n / factor)} {unit}"
    return f"{_number(n)} bytes"


def _number(n: Decimal) -> str:
    text = f"{n.quantize(Decimal('0.01')):f}" if n != n.to_integral_value() else f"{n:.0f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def duration(value: Any) -> str:
    """'P7D' -> '7 days', 'PT2H' -> '2 hours', 'P1M' -> '1 month'."""
    text = str(value)
    if not text.startswith("P"):
        return text
    date, _, time = text[1:].partition("T")
    parts = []
    for chunk, minute in ((date, "month"), (time, "minute")):
        for amount, letter in _DURATION_PARTS.findall(chunk):
            name = minute if letter == "M" else _DURATION_NAMES[letter]
            parts.append(f"{amount} {name}{'' if amount == '1' else 's'}")
    return " ".join(parts) or text


def _listed(value: Any) -> str:
    items = value if isinstance(value, list) else [value]
    texts = [str(x) for x in items]
    return texts[0] if len(texts) == 1 else ", ".join(texts[:-1]) + " or " + texts[-1]


_AT_MOST = {"lteq": "at most", "lt": "less than"}


def _limit(left: str, op: str, right: Any) -> str | None:
    """A volume or count limit as 'at most ...', None when it is not one."""
    bound = _AT_MOST.get(op)
    if bound is None:
        return None
    if left == "tdsc:volumeBytes":
        return f"{bound} {size(right)} in total"
    if left == "tdsc:transferBytes":
        return f"{bound} {size(right)} per transfer"
    if left == "tdsc:volumeRecords":
        return f"{bound} {right} records in total"
    if left == "count":
        return f"{bound} {right} transfer{'' if str(right) == '1' else 's'}"
    if left == "tdsc:useCount":
        return f"{bound} {right} use{'' if str(right) == '1' else 's'}"
    return None


def constraint(c: dict[str, Any]) -> str:
    """One constraint as a phrase."""
    for logical, word in (("and", " and "), ("or", " or "), ("xone", " or, exclusively, ")):
        if logical in c:
            return "(" + word.join(constraint(x) for x in c[logical]) + ")"
    left, op, right = c.get("leftOperand", ""), c.get("operator", ""), c.get("rightOperand")
    limit = _limit(left, op, right)
    if limit:
        return limit
    negated = op in ("neq", "isNoneOf")
    if left == "purpose":
        return f"not for {_listed(right)}" if negated else f"for {_listed(right)} only"
    if left == "spatial":
        return f"not in {_listed(right)}" if negated else f"only in {_listed(right)}"
    if left == "tdsc:participant":
        return f"not for {_listed(right)}" if negated else f"only for {_listed(right)}"
    if left == "tdsc:membership":
        member = (right is True or str(right).lower() == "true") != negated
        return "members only" if member else "non-members only"
    if left == "tdsc:role":
        every = " all of" if op == "isAllOf" else ""
        return f"only for the role{every} {_listed(right)}"
    if left == "dateTime":
        return f"until {right}" if op in ("lt", "lteq") else f"from {right}"
    if left == "elapsedTime":
        if op in ("lt", "lteq"):
            return f"within {duration(right)} of the agreement"
        return f"not before {duration(right)} after the agreement"
    return f"{left} {op} {right}"


def duty(d: dict[str, Any]) -> str:
    """One duty as a phrase."""
    action = str(d.get("action", ""))
    terms = {c.get("leftOperand"): c.get("rightOperand") for c in d.get("constraints", [])}
    if action == "delete":
        if "delayPeriod" in terms:
            return f"delete within {duration(terms['delayPeriod'])} of delivery"
        if "dateTime" in terms:
            return f"delete by {terms['dateTime']}"
        return "delete on delivery"
    if action == "compensate":
        unit = str(terms.get("unit") or "").rsplit("/", 1)[-1].removeprefix("tdsc:")
        currency = terms.get("tdsc:currency", "")
        text = f"{terms.get('payAmount')} {currency} {_PRICE_UNITS.get(unit, unit)}".replace(
            "  ", " "
        )
        free = terms.get("tdsc:freeQuota")
        if free not in (None, 0, "0"):
            text += f" (the first {free} {_FREE_UNITS.get(unit, '')} free)".replace(" )", ")")
        return text
    if action == "log":
        return "each use is logged"
    if action == "notify":
        return "the provider is notified of each use"
    return str(action)


def _rule(r: dict[str, Any]) -> list[str]:
    phrases: list[str] = []
    limits: list[str] = []
    for c in r.get("constraints", []):
        phrase = constraint(c)
        if phrase.startswith(("at most ", "less than ")) and limits:
            # "at most 100 MB in total and 3 transfers"
            limits.append(
                phrase.removeprefix("at most ") if phrase.startswith("at most") else phrase
            )
        elif phrase.startswith(("at most ", "less than ")):
            limits.append(phrase)
        else:
            phrases.append(phrase)
    if limits:
        phrases.append(" and ".join(limits))
    phrases += [duty(d) for d in r.get("duties", [])]
    return phrases


def explain(offer: dict[str, Any]) -> str:
    """The offer in plain language; UndecidablePolicy when it uses terms the library lacks."""
    normal = normalise(offer)
    permissions = normal["permissions"]
    parts: list[str] = []
    if not permissions:
        parts.append("grants no use")
    elif len(permissions) == 1:
        parts += _rule(permissions[0]) or ["any use"]
    else:
        parts.append(
            "either " + " or ".join(f"({'; '.join(_rule(p)) or 'any use'})" for p in permissions)
        )
    for p in normal["prohibitions"]:
        when = [x.removesuffix(" only").removeprefix("only ") for x in _rule(p)]
        parts.append("no use " + (" and ".join(when) or "at all"))
    parts += [duty(d) for d in normal["obligations"]]
    return "; ".join(parts)
