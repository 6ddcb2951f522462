"""The Rego policy library (policies/) under both engines the connector can use.

Every case in tests/policy_cases/ is decided by the embedded engine (the library compiled to
Wasm by opa, run by wasmtime) and by the real OPA binary (`opa eval`); both must return the same
decision, and it must match the case's expectations. Then a few hundred random variants of those
inputs (odd values, broken constraints) must get the same decision from both: the Wasm target
implements built-ins and number arithmetic apart from OPA's interpreter. The Rego unit tests
themselves run with `make policy-test`.
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

from connector.policy.wasm import WasmPolicy, WasmPolicyError, compile_to_wasm

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
    """The library compiled to Wasm and loaded once, as the connector embeds it."""

    def __init__(self) -> None:
        modules = {str(p.relative_to(POLICIES)): p.read_text() for p in _modules()}
        self.policy = WasmPolicy(compile_to_wasm(str(_opa_bin()), modules, ENTRYPOINT), ENTRYPOINT)

    def decide(self, decision_input: dict[str, Any]) -> Any:
        return self.policy.evaluate(decision_input)


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
    by_wasm = embedded.decide(decision_input)
    by_opa = _opa_decide(decision_input)
    assert by_wasm == by_opa
    _check_expectations(by_opa, expect)


def test_random_inputs_decide_alike(embedded: Embedded) -> None:
    inputs = _variants(300, seed=20261121)
    by_opa = _opa_decide_many(inputs)
    for decision_input, expected in zip(inputs, by_opa, strict=True):
        assert embedded.decide(decision_input) == expected, json.dumps(decision_input)


def test_large_inputs_grow_the_module_memory(embedded: Embedded) -> None:
    base = json.loads((CASES / "base.json").read_text())
    big = copy.deepcopy(base)
    big["dataset"]["description"] = "x" * 3_000_000
    assert embedded.decide(big) == embedded.decide(base) == _opa_decide(base)


def test_modules_wasm_cannot_run_are_refused_with_the_reason(tmp_path: Path) -> None:
    opa = str(_opa_bin())
    uses_clock = {"d.rego": "package connector.decision\n\ndecision := time.now_ns()\n"}
    with pytest.raises(WasmPolicyError, match=r"time\.now_ns"):
        WasmPolicy(compile_to_wasm(opa, uses_clock, ENTRYPOINT), ENTRYPOINT)
    broken = {"d.rego": "package connector.decision\n\ndecision := {{{\n"}
    with pytest.raises(WasmPolicyError, match="do not compile"):
        compile_to_wasm(opa, broken, ENTRYPOINT)
    with pytest.raises(WasmPolicyError, match="not a Wasm module"):
        WasmPolicy(b"\0asm-but-not-really", ENTRYPOINT)


def test_the_module_keeps_no_state_between_decisions(embedded: Embedded) -> None:
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
