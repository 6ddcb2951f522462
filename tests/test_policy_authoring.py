"""Writing and trying policies as an operator does (issue 17): offer templates, the offer in
plain language, what-if decisions on a published dataset, replaying a logged decision with
today's policies, "did you mean" for unknown terms, `policy test -v`, and policies/local/."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.billing.prices import price_terms
from connector.model.records import DecisionRecord
from connector.policy import templates
from connector.policy.explain import explain
from connector.policy.odrl import UndecidablePolicy, normalise
from connector.policy.point import decision_inputs_keeper
from connector.store.base import Store
from tests.harness import ConnectorProcess, cli, wait_for
from tests.test_policy_library import _opa_bin
from tests.test_store_contract import store  # noqa: F401  (the SQLite + PostgreSQL fixture)

LIBRARY = Path(__file__).resolve().parent.parent / "policies"
README_OFFER = (
    "for research only; at most 100 MB in total and 3 transfers; delete within 7 days of"
    " delivery; 0.05 EUR per GB"
)


# templates and explain ---------------------------------------------------------------------


def test_every_template_fills_in_to_an_offer_the_library_and_billing_accept() -> None:
    found = templates.available()
    names = {t.name for t in found}
    assert {
        "research-use", "volume-count-limit", "delete-after-use", "priced-per-gb",
        "priced-per-transfer", "priced-monthly", "members-only", "region-bound",
        "important-data", "research-metered",
    } <= names  # fmt: skip
    for template in found:
        offer = templates.fill(template, {})
        assert "{{" not in json.dumps(offer), template.name
        normalise(offer)  # raises on a term the library cannot decide
        price_terms(offer)  # raises on a price that cannot be billed
        assert explain(offer), template.name


def test_offers_new_and_explain_through_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "offer.json"
    done = cli(
        "offers", "new", "--template", "research-metered", "--set", "volume=100 MB",
        "--set", "transfers=3", "--set", "delete_after=7 days", "--set", "price=0.05",
        "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    offer = json.loads(out.read_text())
    constraints = {
        c["leftOperand"]: c["rightOperand"] for c in offer["permission"][0]["constraint"]
    }
    assert constraints == {"purpose": ["research"], "tdsc:volumeBytes": 100_000_000, "count": 3}
    delete = offer["permission"][0]["duty"][0]["constraint"][0]
    assert delete["rightOperand"] == "P7D"
    assert README_OFFER in done.stderr

    explained = cli("offers", "explain", str(out))
    assert explained.returncode == 0, explained.stderr
    assert explained.stdout.strip() == README_OFFER

    printed = cli("offers", "new", "--template", "members-only")
    assert printed.returncode == 0 and json.loads(printed.stdout)["permission"]
    listed = cli("offers", "templates")
    assert "research-metered" in listed.stdout and "--set volume='100 MB'" in listed.stdout


def test_offers_new_names_a_wrong_value_and_suggests_names() -> None:
    bad = cli("offers", "new", "--template", "volume-count-limit", "--set", "volume=lots")
    assert bad.returncode != 0 and "volume='lots': expected a size such as" in bad.stderr
    typo = cli("offers", "new", "--template", "research-use", "--set", "purpos=x")
    assert typo.returncode != 0 and "did you mean 'purpose'?" in typo.stderr
    missing = cli("offers", "new", "--template", "reserch-use")
    assert missing.returncode != 0 and "did you mean 'research-use'?" in missing.stderr


def test_explain_reads_logical_constraints_prohibitions_and_free_quotas() -> None:
    offer = {
        "permission": [
            {
                "action": "use",
                "constraint": [
                    {"or": [
                        {"leftOperand": "spatial", "operator": "eq", "rightOperand": "EU"},
                        {"leftOperand": "tdsc:membership", "operator": "eq",
                         "rightOperand": True},
                    ]},
                    {"leftOperand": "tdsc:transferBytes", "operator": "lteq",
                     "rightOperand": 1_500_000_000},
                ],
                "duty": [{"action": "compensate", "constraint": [
                    {"leftOperand": "payAmount", "operator": "eq", "rightOperand": 2},
                    {"leftOperand": "unit", "operator": "eq", "rightOperand": "tdsc:perTransfer"},
                    {"leftOperand": "tdsc:currency", "operator": "eq", "rightOperand": "EUR"},
                    {"leftOperand": "tdsc:freeQuota", "operator": "eq", "rightOperand": 1},
                ]}],
            }
        ],
        "prohibition": [{"action": "use", "constraint": [
            {"leftOperand": "purpose", "operator": "eq", "rightOperand": "marketing"}]}],
    }  # fmt: skip
    assert explain(offer) == (
        "(only in EU or members only); at most 1.5 GB per transfer;"
        " 2 EUR per transfer (the first 1 transfers free); no use for marketing"
    )


# did you mean ------------------------------------------------------------------------------


def test_unknown_terms_get_a_suggestion_and_the_valid_terms() -> None:
    offer = {
        "permission": [
            {
                "action": "usee",
                "constraint": [
                    {"leftOperand": "volumeBytes", "operator": "lteq", "rightOperand": 5}
                ],
                "duty": [{"action": "delet"}],
            }
        ]
    }
    with pytest.raises(UndecidablePolicy) as caught:
        normalise(offer)
    text = caught.value.detail
    assert "action 'usee' cannot be decided (did you mean 'use'?); valid here: use" in text
    assert (
        "leftOperand 'volumeBytes' cannot be decided here (did you mean 'tdsc:volumeBytes'?)"
        in text
    )
    assert "duty action 'delet' cannot be executed (did you mean 'delete'?);" in text
    assert "valid here: compensate, delete, log, notify" in text


# with a running connector ------------------------------------------------------------------


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[ConnectorProcess]:
    folder = tmp_path / "policies"
    shutil.copytree(LIBRARY, folder, ignore=shutil.ignore_patterns("templates"))
    node = ConnectorProcess(tmp_path, "provider")
    node.set(policy_engine="embedded", policies_dir=str(folder), policy_reload_seconds="0.2")
    node.env["OPA_BIN"] = str(_opa_bin())
    yield node.start()
    node.stop()


def test_publication_refuses_a_typo_with_a_suggestion(
    provider: ConnectorProcess, payload: Path, tmp_path: Path
) -> None:
    offer = tmp_path / "typo.json"
    offer.write_text(json.dumps({"permission": [{"action": "use", "constraint": [
        {"leftOperand": "purpos", "operator": "eq", "rightOperand": "research"}]}]}))  # fmt: skip
    p = ("--config", str(provider.config))
    done = cli(*p, "datasets", "add", "--id", "t", "--file", str(payload), "--policy", str(offer))
    assert done.returncode != 0
    assert "leftOperand 'purpos'" in done.stderr and "did you mean 'purpose'?" in done.stderr


def test_what_if_on_a_published_dataset_and_replay_of_a_logged_decision(
    provider: ConnectorProcess, payload: Path, tmp_path: Path
) -> None:
    p = ("--config", str(provider.config))
    offer = tmp_path / "offer.json"
    made = cli("offers", "new", "--template", "research-metered", "--out", str(offer))
    assert made.returncode == 0, made.stderr
    added = cli(*p, "datasets", "add", "--id", "ds", "--file", str(payload), "--policy", str(offer))
    assert added.returncode == 0, added.stderr
    logged_before = provider.api.get("/api/v1/decisions?limit=1000")
    published = cli(*p, "offers", "explain", "--dataset", "ds")
    assert published.returncode == 0, published.stderr
    assert published.stdout.strip().endswith(": " + README_OFFER)

    ask = (*p, "policy", "eval", "--dataset", "ds", "--consumer", "did:web:someone")
    allowed = cli(*ask, "--purpose", "research", "--json")
    assert allowed.returncode == 0, allowed.stderr
    answer = json.loads(allowed.stdout)
    assert answer["allow"] is True
    assert answer["limits"]["bytes_remaining"] == 100_000_000
    assert answer["limits"]["transfers_remaining"] == 2
    assert [o["action"] for o in answer["obligations"]] == ["delete", "compensate"]
    assert answer["input"]["consumer"]["id"] == "did:web:someone"

    wrong = cli(*ask, "--purpose", "marketing")
    assert wrong.returncode == 0, wrong.stderr
    assert wrong.stdout.startswith("DENY  transfer of ds")
    assert "marketing" in wrong.stdout and "research" in wrong.stdout

    used_up = cli(*ask, "--purpose", "research", "--usage", "transfers=3")
    assert "DENY" in used_up.stdout and "at most 3 transfers" in used_up.stdout
    # what-ifs are questions, not decisions: the log has not grown
    assert provider.api.get("/api/v1/decisions?limit=1000") == logged_before

    nothing = cli(*p, "policy", "eval", "--dataset", "nope", "--consumer", "did:web:x")
    assert nothing.returncode != 0 and "no dataset nope" in nothing.stderr

    # a real decision (the catalog, asked by a consumer), then a stricter policy: the replay
    # shows both answers
    consumer = ConnectorProcess(tmp_path, "consumer").start()
    try:
        assert (
            cli("--config", str(consumer.config), "catalog", "fetch", provider.dsp).returncode == 0
        )
    finally:
        consumer.stop()
    logged = provider.api.get("/api/v1/decisions?limit=1")[0]
    assert logged["allow"] is True and logged["input_kept"] is True
    seq = logged["seq"]
    log = cli(*p, "policy", "log", "--limit", "5")
    assert f"#{seq} " in log.stdout

    same = cli(*p, "policy", "log", "--replay", str(seq))
    assert same.returncode == 0, same.stderr
    assert "the same answer" in same.stdout

    version = provider.api.get("/api/v1/policy")["version"]
    rule = tmp_path / "policies" / "local" / "block.rego"
    rule.write_text(
        "package local.block\n\n"
        f'deny contains "no catalog for {consumer.did}" if input.consumer.id == "{consumer.did}"\n'
    )
    wait_for(
        "the stricter policy", lambda: provider.api.get("/api/v1/policy")["version"] != version
    )
    changed = cli(*p, "policy", "log", "--replay", str(seq), "--json")
    both = json.loads(changed.stdout)
    assert both["logged"]["allow"] is True and both["replayed"]["allow"] is False
    assert both["replayed"]["reasons"] == [f"no catalog for {consumer.did}"]
    assert both["changed"] is True
    shown = cli(*p, "policy", "log", "--replay", str(seq))
    assert "logged   ALLOW" in shown.stdout and "replayed DENY" in shown.stdout
    assert "the answer changed" in shown.stdout

    gone = cli(*p, "policy", "log", "--replay", "999999")
    assert gone.returncode != 0 and "no decision 999999" in gone.stderr


# the decision log's inputs -----------------------------------------------------------------


def _record(at: str, seq_input: dict[str, object] | None) -> DecisionRecord:
    return DecisionRecord(
        at=at, phase="transfer", input_sha256="h", allow=True, engine="embedded",
        policy_version="v", input=seq_input,
    )  # fmt: skip


def test_the_log_keeps_inputs_for_a_while_then_only_digests(store: Store) -> None:  # noqa: F811
    store.add_decisions([_record("2026-01-01T00:00:00.000Z", {"phase": "transfer"})])
    store.add_decisions([_record("2026-03-01T00:00:00.000Z", {"phase": "use"})])
    old, new = sorted(store.list_decisions(), key=lambda d: d.at)
    assert old.input == {"phase": "transfer"} and new.input == {"phase": "use"}
    assert old.seq is not None
    assert store.get_decision(old.seq) == old
    store.add_decisions([], forget_before="2026-02-01T00:00:00.000Z")
    assert store.get_decision(old.seq).input is None  # type: ignore[union-attr]
    assert store.get_decision(old.seq).input_sha256 == "h"  # type: ignore[union-attr]
    assert store.get_decision(new.seq or 0).input == {"phase": "use"}  # type: ignore[union-attr]


def test_the_keeper_drops_inputs_at_zero_days_and_forgets_at_most_hourly() -> None:
    records = [_record("2026-01-01T00:00:00.000Z", {"phase": "transfer"})]
    none_kept, forget = decision_inputs_keeper(0)(records)
    assert none_kept[0].input is None and forget is None
    keep = decision_inputs_keeper(7)
    kept, first = keep(records)
    assert kept[0].input == {"phase": "transfer"} and first is not None and first.endswith("Z")
    assert keep(records)[1] is None  # not again within the hour


# policy test -v and policies/local ---------------------------------------------------------


def test_policy_test_verbose_shows_expected_and_actual(tmp_path: Path) -> None:
    (tmp_path / "x.rego").write_text('package x\n\nd := {"allow": false}\n')
    (tmp_path / "x_test.rego").write_text(
        "package x\n\ntest_allowed if {\n\tgot := d.allow\n\tgot == true\n}\n"
    )
    done = cli("policy", "test", "-v", "--dir", str(tmp_path), env={"OPA_BIN": str(_opa_bin())})
    assert done.returncode != 0 and "policy tests failed" in done.stderr
    assert "data.x.test_allowed (x_test.rego:5): expected got == true; actual {got: false}" in (
        done.stdout
    )


def test_the_library_consults_local_rules_and_runs_their_tests() -> None:
    done = cli("policy", "test", "-v", "--dir", str(LIBRARY), env={"OPA_BIN": str(_opa_bin())})
    assert done.returncode == 0, done.stdout[-2000:]
    assert "data.local.example_test.test_a_blocked_consumer_is_refused_with_the_reason: PASS" in (
        done.stdout
    )
