"""ODRL offers as DSP carries them -> the normalised form the Rego library decides.

Publishing an offer runs `normalise`, so a term the library cannot decide is refused with a
clear error at the door instead of being silently allowed later (docs/policy-contract.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from connector.errors import BadRequest
from connector.policy.terms import with_hints

ODRL = "http://www.w3.org/ns/odrl/2/"
PROFILE = "https://w3id.org/tdsc/v1/"

RULE_ACTIONS = {"use"}
DUTY_ACTIONS = {"delete", "compensate", "log", "notify"}
OPERATORS = {
    "eq", "neq", "gt", "gteq", "lt", "lteq",
    "isAnyOf", "isAllOf", "isNoneOf", "isPartOf", "hasPart",
}  # fmt: skip
RULE_OPERANDS = {
    "purpose", "dateTime", "elapsedTime", "count", "spatial",
    "tdsc:useCount", "tdsc:volumeBytes", "tdsc:transferBytes", "tdsc:volumeRecords",
    "tdsc:participant", "tdsc:membership", "tdsc:role",
}  # fmt: skip
DUTY_OPERANDS = {
    "delayPeriod",
    "dateTime",
    "payAmount",
    "unit",
    "tdsc:currency",
    "tdsc:freeQuota",
    "count",
}
LOGICAL = ("and", "or", "xone", "andSequence")


class UndecidablePolicy(BadRequest):
    """The offer uses a term the policy library cannot decide."""


def term(value: Any) -> str:
    """Compact a term: ODRL names bare, our profile as `tdsc:name`."""
    if isinstance(value, dict):
        value = value.get("@id", value.get("@value", ""))
    text = str(value)
    for prefix in (ODRL, "odrl:"):
        if text.startswith(prefix):
            return text[len(prefix) :]
    if text.startswith(PROFILE):
        return "tdsc:" + text[len(PROFILE) :]
    return text


def _value(value: Any) -> Any:
    if isinstance(value, dict) and ("@value" in value or "@id" in value) and len(value) <= 2:
        return value.get("@value", value.get("@id"))
    if isinstance(value, list):
        return [_value(v) for v in value]
    return value


class _Normaliser:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def constraint(self, c: Any, where: str, operands: set[str]) -> dict[str, Any]:
        if not isinstance(c, dict):
            self.problems.append(f"{where}: a constraint must be an object")
            return {}
        for op in LOGICAL:
            if op in c:
                items = c[op]
                items = items.get("@list", items) if isinstance(items, dict) else items
                if not isinstance(items, list) or not items:
                    self.problems.append(f"{where}.{op}: must be a non-empty list")
                    return {}
                name = "and" if op == "andSequence" else op
                return {
                    name: [
                        self.constraint(x, f"{where}.{op}[{i}]", operands)
                        for i, x in enumerate(items)
                    ]
                }
        left, operator = term(c.get("leftOperand", "")), term(c.get("operator", ""))
        if "rightOperand" not in c:
            self.problems.append(f"{where}: rightOperand is missing")
        if left not in operands:
            self.problems.append(f"{where}: leftOperand '{left}' cannot be decided here")
        if operator not in OPERATORS:
            self.problems.append(f"{where}: operator '{operator}' is not supported")
        return {
            "leftOperand": left,
            "operator": operator,
            "rightOperand": _value(c.get("rightOperand")),
        }

    def duty(self, d: Any, where: str) -> dict[str, Any]:
        if not isinstance(d, dict):
            self.problems.append(f"{where}: a duty must be an object")
            return {}
        action = term(d.get("action", ""))
        if action not in DUTY_ACTIONS:
            self.problems.append(f"{where}: duty action '{action}' cannot be executed")
        constraints = d.get("constraint", [])
        return {
            "action": action,
            "constraints": [
                self.constraint(c, f"{where}.constraint[{i}]", DUTY_OPERANDS)
                for i, c in enumerate(constraints if isinstance(constraints, list) else [])
            ],
        }

    def rule(self, r: Any, where: str, *, with_duties: bool) -> dict[str, Any]:
        if not isinstance(r, dict):
            self.problems.append(f"{where}: a rule must be an object")
            return {}
        action = term(r.get("action", ""))
        if action not in RULE_ACTIONS:
            self.problems.append(f"{where}: action '{action}' cannot be decided")
        constraints = r.get("constraint", [])
        out: dict[str, Any] = {
            "action": action,
            "constraints": [
                self.constraint(c, f"{where}.constraint[{i}]", RULE_OPERANDS)
                for i, c in enumerate(constraints if isinstance(constraints, list) else [])
            ],
        }
        if with_duties:
            duties = r.get("duty", [])
            out["duties"] = [
                self.duty(d, f"{where}.duty[{i}]")
                for i, d in enumerate(duties if isinstance(duties, list) else [])
            ]
        return out


def normalise(policy: dict[str, Any]) -> dict[str, Any]:
    """The contract's policy form, or UndecidablePolicy listing every unknown term."""
    n = _Normaliser()

    def rules(key: str) -> list[Any]:
        value = policy.get(key, [])
        return value if isinstance(value, list) else [value]

    out = {
        "permissions": [
            n.rule(r, f"permission[{i}]", with_duties=True)
            for i, r in enumerate(rules("permission"))
        ],
        "prohibitions": [
            n.rule(r, f"prohibition[{i}]", with_duties=False)
            for i, r in enumerate(rules("prohibition"))
        ],
        "obligations": [n.duty(d, f"obligation[{i}]") for i, d in enumerate(rules("obligation"))],
    }
    n.problems = with_hints(n.problems)  # did you mean ...? (connector/policy/terms.py)
    if n.problems:
        raise UndecidablePolicy(
            "the offer uses terms the policy library cannot decide: " + "; ".join(n.problems),
            reasons=n.problems,
        )
    return out


# --- values, checked at publication ----------------------------------------------------------

VOLUME_OPERANDS = {"tdsc:volumeBytes", "tdsc:transferBytes"}
COUNT_OPERANDS = {"count", "tdsc:useCount", "tdsc:volumeRecords"}
TEXT_OPERANDS = {"purpose", "spatial", "tdsc:participant", "tdsc:role"}
PRICE_UNITS = {"perGB", "perRecord", "perTransfer", "perMonth"}
BYTE_UNITS = {
    "b": 1, "byte": 1, "bytes": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "pb": 10**15,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "pib": 2**50,
}  # fmt: skip
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
_DURATION = re.compile(
    r"^P(?!$)(?:\d+Y)?(?:\d+M)?(?:\d+W)?(?:\d+D)?(?:T(?=\d)(?:\d+H)?(?:\d+M)?(?:\d+(?:\.\d+)?S)?)?$"
)
_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$"
)
_CURRENCY = re.compile(r"^[A-Z]{3}$")

VOLUME_FORM = (
    'a number of bytes or a size with a unit, e.g. 104857600, "100 MB" or "1 GiB"'
    " (kB, MB, GB, TB: powers of 1000; KiB, MiB, GiB, TiB: powers of 1024)"
)
COUNT_FORM = "a whole number, 0 or more, e.g. 3"
DATETIME_FORM = 'an xsd:dateTime with a time zone, e.g. "2026-12-31T23:59:59Z"'
DURATION_FORM = 'an ISO 8601 duration, e.g. "P7D" (7 days) or "PT2H" (2 hours)'
AMOUNT_FORM = "a number, 0 or more, e.g. 0.05"
CURRENCY_FORM = 'an ISO 4217 currency code in capitals, e.g. "EUR"'
UNIT_FORM = "one of " + ", ".join(f"tdsc:{u}" for u in sorted(PRICE_UNITS))
TEXT_FORM = "a text, or a list of texts for isAnyOf / isAllOf / isNoneOf"
BOOL_FORM = "true or false"


class BadOfferValue(BadRequest):
    """An offer's value has the wrong form (a volume without a known unit, a date that is not
    one): refused at publication, since every decision on it would deny."""


def parse_bytes(value: Any) -> int | None:
    """A volume as bytes: a non-negative whole number, or a size with a unit ("100 MB",
    "1 GiB", "1.5 GB"); None if it is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float):
        return int(value) if value >= 0 and value.is_integer() else None
    if not isinstance(value, str):
        return None
    found = _SIZE.match(value)
    if found is None:
        return None
    factor = BYTE_UNITS.get(found.group(2).lower() or "b")
    if factor is None:
        return None
    amount = Decimal(found.group(1)) * factor
    return int(amount) if amount == amount.to_integral_value() else None


def _count(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return (isinstance(value, int) and value >= 0) or (
        isinstance(value, float) and value >= 0 and value.is_integer()
    )


def _amount(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    try:
        number = Decimal(str(value)) if isinstance(value, int | float | str) else None
    except InvalidOperation:
        return False
    return number is not None and number.is_finite() and number >= 0


def _datetime(value: Any) -> bool:
    if not isinstance(value, str) or not _DATETIME.match(value):
        return False
    try:
        datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _text(value: Any) -> bool:
    if isinstance(value, list):
        return bool(value) and all(isinstance(v, str) and v for v in value)
    return isinstance(value, str) and bool(value)


def _unit(value: Any) -> bool:
    text = term(value) if isinstance(value, str) else ""
    return text.removeprefix(PROFILE).removeprefix("tdsc:") in PRICE_UNITS


CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    **{name: (_count, COUNT_FORM) for name in COUNT_OPERANDS},
    **{name: (_text, TEXT_FORM) for name in TEXT_OPERANDS},
    "dateTime": (_datetime, DATETIME_FORM),
    "elapsedTime": (lambda v: isinstance(v, str) and bool(_DURATION.match(v)), DURATION_FORM),
    "delayPeriod": (lambda v: isinstance(v, str) and bool(_DURATION.match(v)), DURATION_FORM),
    "payAmount": (_amount, AMOUNT_FORM),
    "tdsc:freeQuota": (_amount, AMOUNT_FORM),
    "tdsc:currency": (lambda v: isinstance(v, str) and bool(_CURRENCY.match(v)), CURRENCY_FORM),
    "unit": (_unit, UNIT_FORM),
    "tdsc:membership": (lambda v: isinstance(v, bool), BOOL_FORM),
}


def _constraints(node: Any, where: str) -> list[tuple[dict[str, Any], str]]:
    """Every atomic constraint under a rule, duty or logical constraint, with where it is."""
    if not isinstance(node, dict):
        return []
    for op in LOGICAL:
        if op in node:
            items = node[op]
            items = items.get("@list", items) if isinstance(items, dict) else items
            found: list[tuple[dict[str, Any], str]] = []
            for i, item in enumerate(items if isinstance(items, list) else []):
                found += _constraints(item, f"{where}.{op}[{i}]")
            return found
    return [(node, where)]


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]


def check_values(offer: dict[str, Any]) -> dict[str, Any]:
    """The offer with its values checked (BadOfferValue naming every term whose value has the
    wrong form, and the form it needs) and volumes in bytes: "100 MB" is stored as 100000000,
    so every later decision and the data plane read one number."""
    problems: list[str] = []

    def visit(constraints: Any, where: str) -> None:
        for i, top in enumerate(_listed(constraints)):
            for c, at in _constraints(top, f"{where}.constraint[{i}]"):
                if "rightOperand" not in c:
                    continue  # normalise names it
                left, value = term(c.get("leftOperand", "")), _value(c["rightOperand"])
                if left in VOLUME_OPERANDS:
                    size = parse_bytes(value)
                    if size is None:
                        problems.append(f"{at}: {left} is {value!r}; expected {VOLUME_FORM}")
                    else:
                        c["rightOperand"] = size
                    continue
                check = CHECKS.get(left)
                if check is not None and not check[0](value):
                    problems.append(f"{at}: {left} is {value!r}; expected {check[1]}")

    for key in ("permission", "prohibition"):
        for i, rule in enumerate(_listed(offer.get(key))):
            if not isinstance(rule, dict):
                continue
            visit(rule.get("constraint"), f"{key}[{i}]")
            for j, duty in enumerate(_listed(rule.get("duty"))):
                if isinstance(duty, dict):
                    visit(duty.get("constraint"), f"{key}[{i}].duty[{j}]")
    for i, duty in enumerate(_listed(offer.get("obligation"))):
        if isinstance(duty, dict):
            visit(duty.get("constraint"), f"obligation[{i}]")
    if problems:
        raise BadOfferValue(
            "the offer has values of the wrong form: " + "; ".join(problems), reasons=problems
        )
    return offer
