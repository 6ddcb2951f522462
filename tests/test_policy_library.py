"""The Rego policy library (policies/) under both engines the connector can use.

Every case in tests/policy_cases/ is decided by the embedded engine (regopy, rego-cpp) and by
the real OPA binary (`opa eval`); both must return the same decision, and it must match the
case's expectations. Then a few hundred random variants of those inputs (odd values, broken
constraints) must get the same decision from both engines: rego-cpp differs from OPA in places
(see policies/README.md), and the library is written around those differences. The Rego unit
tests themselves run with `make policy-test` (regopy cannot run them: `with` crashes it).
"""

from __future__ import annotations

import copy
import json
import os
import random
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from regopy import Input, Interpreter

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"
CASES = Path(__file__).resolve().parent / "policy_cases"
QUERY = "data.connector.decision.decision"
ENTRYPOINT = "connector/decision/decision"


def _opa_bin() -> Path:
    path = Path(os.environ.get("OPA_BIN", ROOT / ".tools" / "bin" / "opa"))
    if not path.is_file():
        pytest.fail(f"OPA binary not found at {path}: run `make .tools/bin/opa` or set OPA_BIN")
    return path


def _modules() -> list[Path]:
    return sorted(p for p in POLICIES.rglob("*.rego") if not p.name.endswith("_test.rego"))


def _merge(base: Any, patch: Any) -> Any:
    """Objects merge key by key; anything else in the patch replaces."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = _merge(base.get(key), value)
        return merged
    return patch


def _cases() -> list[Any]:
    base = json.loads((CASES / "base.json").read_text())
    params = []
    for path in sorted(CASES.glob("[0-9]*.json")):
        case = json.loads(path.read_text())
        params.append(pytest.param(_merge(base, case["input"]), case["expect"], id=path.stem))
    return params


class Embedded:
    """The library loaded into one regopy interpreter, as the connector embeds it."""

    def __init__(self) -> None:
        self.interpreter = Interpreter()
        for path in _modules():
            self.interpreter.add_module(str(path.relative_to(ROOT)), path.read_text())
        self.bundle = self.interpreter.build(QUERY)

    def decide(self, decision_input: dict[str, Any]) -> Any:
        self.interpreter.set_input_term(json.dumps(decision_input))
        output = self.interpreter.query_bundle(self.bundle)
        assert output.ok(), str(output)
        return json.loads(str(output))["expressions"][0]

    def decide_by_query(self, decision_input: dict[str, Any]) -> Any:
        self.interpreter.set_input_term(json.dumps(decision_input))
        output = self.interpreter.query(QUERY)
        assert output.ok(), str(output)
        return json.loads(str(output))["expressions"][0]

    def decide_by_entrypoint(self, decision_input: dict[str, Any]) -> Any:
        """As connector/policy/engines.py asks: Input() and a prepared entrypoint."""
        if not hasattr(self, "entrypoint"):
            self.entrypoint = self.interpreter.build(None, [ENTRYPOINT])
        self.interpreter.set_input(Input(decision_input))
        output = self.interpreter.query_bundle_entrypoint(self.entrypoint, ENTRYPOINT)
        assert output.ok(), str(output)
        return json.loads(str(output))["expressions"][0]


@pytest.fixture(scope="module")
def embedded() -> Iterator[Embedded]:
    yield Embedded()


def _opa_decide(decision_input: dict[str, Any]) -> Any:
    args = [str(_opa_bin()), "eval", "--format", "json", "--stdin-input"]
    for path in _modules():
        args += ["--data", str(path)]
    result = subprocess.run(
        [*args, QUERY],
        input=json.dumps(decision_input),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer.get("result"), f"undefined decision: {result.stdout}"
    return answer["result"][0]["expressions"][0]["value"]


def _check_expectations(decision: Any, expect: dict[str, Any]) -> None:
    assert set(decision) == {"allow", "reasons", "obligations", "limits"}
    assert decision["allow"] is expect["allow"], decision["reasons"]
    reasons: list[str] = decision["reasons"]
    # one reason per expected substring, in order
    assert len(reasons) == len(expect["reasons"]), reasons
    for reason, fragment in zip(reasons, expect["reasons"], strict=True):
        assert fragment in reason, reasons
    if decision["allow"]:
        assert reasons == []
    else:
        assert reasons, "a denial always says why"
        assert decision["obligations"] == []
    for key in ("obligations", "limits"):
        if key in expect:
            assert decision[key] == expect[key]


def _opa_decide_many(inputs: list[dict[str, Any]]) -> list[Any]:
    """One `opa eval` for many inputs (`with input as` for each)."""
    args = [str(_opa_bin()), "eval", "--format", "json", "--stdin-input"]
    for path in _modules():
        args += ["--data", str(path)]
    query = f"ds := [d | some i in input.inputs; d := {QUERY} with input as i]"
    result = subprocess.run(
        [*args, query],
        input=json.dumps({"inputs": inputs}),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    decisions: list[Any] = json.loads(result.stdout)["result"][0]["bindings"]["ds"]
    return decisions


def _variants(count: int, seed: int) -> list[dict[str, Any]]:
    """Inputs around the cases' policies with random usage, times, claims and requests."""
    rng = random.Random(seed)
    policies = [param.values[0] for param in _cases()]
    start = datetime(2026, 11, 21, 10, tzinfo=UTC)

    def instant() -> str:
        at = start + timedelta(seconds=rng.randint(-40 * 86400, 80 * 86400))
        if rng.random() < 0.2:
            return at.isoformat()  # "+00:00" instead of "Z"
        return at.strftime("%Y-%m-%dT%H:%M:%SZ")

    def some_of(values: list[Any]) -> Any:
        return rng.choice(values)

    inputs = []
    for _ in range(count):
        inp = copy.deepcopy(rng.choice(policies))
        inp["phase"] = some_of(["catalog", "negotiation", "transfer", "stream", "use"])
        inp["now"] = instant()
        inp["usage"] = {
            "bytes": some_of([0, 999999000, 10**9, rng.randint(0, 2 * 10**9)]),
            "records": some_of([0, 99, rng.randint(0, 2000)]),
            "transfers": rng.randint(0, 6),
            "uses": rng.randint(0, 7),
            "agreed_at": some_of([instant(), "2026-11-01T00:00:00Z", None]),
            "first_use": some_of([None, None, instant()]),
        }
        inp["request"] = {
            "purpose": some_of(["research", "marketing", "profiling", "", None]),
            "bytes": some_of([0, 1.2e9, 1.5e9, 250000000, rng.randint(0, 10**9)]),
            "records": some_of([0, 1, rng.randint(0, 1500)]),
            "jurisdiction": some_of(["EU", "DE", "de", "US", "CN", "NO", "", None]),
        }
        inp["consumer"] = {
            "id": some_of(["did:web:consumer", "did:web:provider", "did:web:blocked.example"]),
            "credentials": {
                "membership": some_of([True, False, None, "yes"]),
                "roles": rng.sample(["research", "auditor", "admin", "guest"], rng.randint(0, 3)),
                "region": some_of(["EU", "FR", "CN", "US", None]),
            },
        }
        inp["dataset"]["classification"] = some_of(["general", "general", "important", "core"])
        if rng.random() < 0.3:
            _mutate(inp["policy"], rng)
        inputs.append(inp)
    return inputs


_OPERATORS = ["eq", "neq", "gt", "gteq", "lt", "lteq", "isAnyOf", "isAllOf", "isNoneOf"]
_ODD_VALUES: list[Any] = ["x", -1, 0, [], {}, None, True, 1.5e9, ["EU", 3], "P1D", "PT"]


def _mutate(policy: dict[str, Any], rng: random.Random) -> None:
    """Break one constraint of the policy: drop a key, or an odd operator or value."""
    found: list[dict[str, Any]] = []

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            if "leftOperand" in node:
                found.append(node)
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(policy)
    if not found:
        return
    constraint = rng.choice(found)
    what = rng.randrange(3)
    if what == 0:
        constraint.pop(rng.choice(["leftOperand", "operator", "rightOperand"]), None)
    elif what == 1:
        constraint["operator"] = rng.choice([*_OPERATORS, "isPartOf", "hasPart", "bogus"])
    else:
        constraint["rightOperand"] = rng.choice(_ODD_VALUES)


@pytest.mark.parametrize(("decision_input", "expect"), _cases())
def test_both_engines_decide_alike(
    embedded: Embedded, decision_input: dict[str, Any], expect: dict[str, Any]
) -> None:
    by_regopy = embedded.decide(decision_input)
    by_opa = _opa_decide(decision_input)
    assert by_regopy == by_opa
    _check_expectations(by_opa, expect)


def test_random_inputs_decide_alike(embedded: Embedded) -> None:
    inputs = _variants(300, seed=20261121)
    by_opa = _opa_decide_many(inputs)
    for decision_input, expected in zip(inputs, by_opa, strict=True):
        assert embedded.decide(decision_input) == expected, json.dumps(decision_input)


def test_every_way_of_asking_regopy_agrees(embedded: Embedded) -> None:
    inputs = [param.values[0] for param in _cases()] + _variants(50, seed=7)
    for decision_input in inputs:
        expected = embedded.decide(decision_input)
        assert embedded.decide_by_entrypoint(decision_input) == expected
    for decision_input in inputs[:5]:
        assert embedded.decide_by_query(decision_input) == embedded.decide(decision_input)


def test_interpreter_keeps_no_state_between_decisions(embedded: Embedded) -> None:
    cases = [param.values[0] for param in _cases()]
    first = [embedded.decide(c) for c in cases]
    again = [embedded.decide(c) for c in reversed(cases)]
    assert first == list(reversed(again))


def test_contract_example() -> None:
    """The output example of docs/policy-contract.md, from its input example."""
    base = json.loads((CASES / "base.json").read_text())
    assert _opa_decide(base) == {
        "allow": True,
        "reasons": [],
        "obligations": [{"action": "delete", "deadline": "2026-11-21T10:00:02Z"}],
        "limits": {"bytes_remaining": 1000, "records_remaining": None, "transfers_remaining": 2},
    }


def test_every_module_has_unit_tests() -> None:
    for path in _modules():
        assert path.with_name(path.stem + "_test.rego").is_file(), path
