"""ODRL offers as DSP carries them -> the normalised form the Rego library decides.

Publishing an offer runs `normalise`, so a term the library cannot decide is refused with a
clear error at the door instead of being silently allowed later (docs/policy-contract.md).
"""

from __future__ import annotations

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
