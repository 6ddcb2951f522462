"""The operator's policy commands, run as a shell user would."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ConnectorProcess, cli
from tests.test_policy_library import _opa_bin

LIBRARY = Path(__file__).resolve().parent.parent / "policies"
PURPOSE = {"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": ["research"]}


def _input(purpose: str) -> dict[str, object]:
    return {
        "phase": "negotiation",
        "provider": {"id": "did:web:p"},
        "consumer": {"id": "did:web:c"},
        "dataset": {"id": "ds", "classification": "general", "owner": "did:web:p"},
        "policy": {"permission": [{"action": "use", "constraint": [PURPOSE]}]},
        "request": {"purpose": purpose},
    }


def test_policy_test_runs_the_rego_unit_tests() -> None:
    done = cli("policy", "test", env={"OPA_BIN": str(_opa_bin())})
    assert done.returncode == 0, done.stderr
    assert "PASS" in done.stdout


def test_policy_test_fails_on_a_failing_unit_test(tmp_path: Path) -> None:
    (tmp_path / "x.rego").write_text("package x\n\nv := 1\n")
    (tmp_path / "x_test.rego").write_text("package x\n\ntest_v if v == 2\n")
    done = cli("policy", "test", "--dir", str(tmp_path), env={"OPA_BIN": str(_opa_bin())})
    assert done.returncode != 0 and "policy tests failed" in done.stderr


def test_policy_eval_is_a_test_bench(tmp_path: Path) -> None:
    for purpose, allowed in (("research", True), ("marketing", False)):
        path = tmp_path / f"{purpose}.json"
        path.write_text(json.dumps(_input(purpose)))
        done = cli("policy", "eval", "--input", str(path), "--dir", str(LIBRARY))
        assert done.returncode == 0, done.stderr
        decision = json.loads(done.stdout)
        assert decision["allow"] is allowed
        assert decision["policy_version"]
        if not allowed:
            assert "marketing" in " ".join(decision["reasons"])


def test_policy_eval_refuses_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"phase": "nonsense"}')
    done = cli("policy", "eval", "--input", str(bad), "--dir", str(LIBRARY))
    assert done.returncode != 0 and "not a decision input" in done.stderr
    odd = tmp_path / "odd.json"
    data = _input("research")
    data["policy"] = {"permission": [{"action": "sell"}]}
    odd.write_text(json.dumps(data))
    done = cli("policy", "eval", "--input", str(odd), "--dir", str(LIBRARY))
    assert done.returncode != 0 and "sell" in done.stderr


@pytest.fixture
def rego_pair(tmp_path: Path) -> Iterator[tuple[ConnectorProcess, ConnectorProcess]]:
    nodes = []
    for name in ("provider", "consumer"):
        node = ConnectorProcess(tmp_path, name)
        node.set(policy_engine="embedded", policies_dir=str(LIBRARY))
        nodes.append(node.start())
    yield nodes[0], nodes[1]
    for node in nodes:
        node.stop()


def test_purpose_classification_status_and_log_through_the_cli(
    rego_pair: tuple[ConnectorProcess, ConnectorProcess], payload: Path, tmp_path: Path
) -> None:
    provider, consumer = rego_pair
    p, c = ("--config", str(provider.config)), ("--config", str(consumer.config))
    offer = tmp_path / "offer.json"
    offer.write_text(json.dumps({"permission": [{"action": "use", "constraint": [PURPOSE]}]}))
    added = cli(
        *p, "datasets", "add", "--id", "ds-r", "--file", str(payload), "--policy", str(offer)
    )
    assert added.returncode == 0, added.stderr
    core = cli(
        *p, "datasets", "add", "--id", "ds-c", "--file", str(payload), "--classification", "core"
    )
    assert core.returncode == 0 and json.loads(core.stdout)["classification"] == "core"

    listing = cli(*c, "catalog", "fetch", provider.dsp)
    assert "ds-r" in listing.stdout and "ds-c" not in listing.stdout

    wrong = cli(*c, "negotiations", "start", provider.dsp, "ds-r", "--purpose", "marketing")
    assert wrong.returncode == 0, wrong.stderr
    waited = cli(*c, "negotiations", "wait", wrong.stdout.strip(), "--timeout", "20")
    assert waited.returncode != 0 and "marketing" in waited.stderr

    right = cli(*c, "negotiations", "start", provider.dsp, "ds-r", "--purpose", "research")
    assert cli(*c, "negotiations", "wait", right.stdout.strip()).returncode == 0

    status = json.loads(cli(*p, "policy", "status").stdout)
    assert status["engine"] == "embedded" and status["last_error"] is None
    log = cli(*p, "policy", "log", "--limit", "50")
    assert log.returncode == 0
    assert "DENY  negotiation" in log.stdout and "marketing" in log.stdout
    assert f"embedded@{status['version'][:8]}" in log.stdout
