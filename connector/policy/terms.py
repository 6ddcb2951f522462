"""'Did you mean' for terms the policy library cannot decide, and the list of valid ones.

`normalise` (connector/policy/odrl.py) reports each unknown leftOperand, operator and action
in one sentence; `with_hints` adds the closest valid term and the valid terms of that place,
so a typo at publication or in `policy eval` is fixed without reading the contract.
"""

from __future__ import annotations

import difflib
import re

_UNKNOWN = re.compile(
    r"^(?P<where>[^:]*): (?P<kind>leftOperand|operator|duty action|action) '(?P<name>[^']*)'"
)


def closest(name: str, valid: list[str] | set[str]) -> str | None:
    """The valid term nearest to `name` (ignoring case and a `tdsc:` prefix), if any is close."""
    by_key = {v.lower().removeprefix("tdsc:"): v for v in valid}
    key = name.lower().removeprefix("tdsc:").rsplit("/", 1)[-1]
    if key in by_key:
        return by_key[key]
    match = difflib.get_close_matches(key, list(by_key), n=1, cutoff=0.6)
    return by_key[match[0]] if match else None


def valid_terms(kind: str, where: str) -> list[str]:
    """The terms valid at a place of the offer (a rule's or a duty's constraint, ...)."""
    from connector.policy import odrl

    in_duty = ".duty[" in where or where.startswith("obligation[")
    if kind == "leftOperand":
        return sorted(odrl.DUTY_OPERANDS if in_duty else odrl.RULE_OPERANDS)
    if kind == "operator":
        return sorted(odrl.OPERATORS)
    if kind == "duty action":
        return sorted(odrl.DUTY_ACTIONS)
    return sorted(odrl.RULE_ACTIONS)


def hint(problem: str) -> str:
    """The problem with a suggestion and the valid terms, when it names an unknown term."""
    m = _UNKNOWN.match(problem)
    if m is None:
        return problem
    valid = valid_terms(m.group("kind"), m.group("where"))
    if m.group("name") in valid:  # a known term used in a wrong way: nothing to suggest
        return problem
    near = closest(m.group("name"), valid)
    suggestion = f" (did you mean '{near}'?)" if near else ""
    return f"{problem}{suggestion}; valid here: {', '.join(valid)}"


def with_hints(problems: list[str]) -> list[str]:
    return [hint(p) for p in problems]
