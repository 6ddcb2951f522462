"""Issue 17, blocker 4: offer values are checked at publication, volumes stored in bytes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from connector.mgmt_client import ApiError
from tests.harness import ConnectorProcess, cli


def _offer(
    *constraints: dict[str, Any], duty: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    rule: dict[str, Any] = {"action": "use", "constraint": list(constraints)}
    if duty:
        rule["duty"] = duty
    return {"permission": [rule]}


def _volume(value: Any) -> dict[str, Any]:
    return {"leftOperand": "tdsc:volumeBytes", "operator": "lteq", "rightOperand": value}


def _stored_volume(dataset: dict[str, Any]) -> Any:
    return dataset["offers"][0]["permission"][0]["constraint"][0]["rightOperand"]


def test_volumes_with_units_are_stored_in_bytes(provider: ConnectorProcess, payload: Path) -> None:
    for n, (given, stored) in enumerate(
        [("100 MB", 100_000_000), ("1 GiB", 2**30), ("1.5kB", 1500), (4096, 4096)]
    ):
        published = provider.publish(payload, f"ds-v{n}", offers=[_offer(_volume(given))])
        assert _stored_volume(published) == stored
        assert _stored_volume(provider.api.get(f"/api/v1/datasets/ds-v{n}")) == stored


@pytest.mark.parametrize(
    ("constraint", "term", "form"),
    [
        (_volume("100 MBs"), "tdsc:volumeBytes", "100 MB"),
        (_volume(-5), "tdsc:volumeBytes", "GiB"),
        ({"leftOperand": "count", "operator": "lteq", "rightOperand": "three"}, "count", "whole"),
        (
            {"leftOperand": "dateTime", "operator": "lteq", "rightOperand": "31.12.2026"},
            "dateTime",
            "2026-12-31T23:59:59Z",
        ),
        (
            {"leftOperand": "elapsedTime", "operator": "lteq", "rightOperand": "30 days"},
            "elapsedTime",
            "ISO 8601 duration",
        ),
    ],
)
def test_a_value_of_the_wrong_form_is_refused_naming_term_and_form(
    provider: ConnectorProcess, payload: Path, constraint: dict[str, Any], term: str, form: str
) -> None:
    with pytest.raises(ApiError) as refused:
        provider.publish(payload, "ds-bad", offers=[_offer(constraint)])
    assert refused.value.status == 400
    assert term in str(refused.value) and form in str(refused.value)
    with pytest.raises(ApiError):
        provider.api.get("/api/v1/datasets/ds-bad")


def test_duty_values_are_checked(provider: ConnectorProcess, payload: Path) -> None:
    price = {
        "action": "compensate",
        "constraint": [
            {"leftOperand": "payAmount", "operator": "eq", "rightOperand": 0.05},
            {"leftOperand": "unit", "operator": "eq", "rightOperand": "tdsc:perGB"},
            {"leftOperand": "tdsc:currency", "operator": "eq", "rightOperand": "euro"},
        ],
    }
    delete = {
        "action": "delete",
        "constraint": [{"leftOperand": "delayPeriod", "operator": "eq", "rightOperand": "7d"}],
    }
    with pytest.raises(ApiError) as refused:
        provider.publish(payload, "ds-duty", offers=[_offer(duty=[price, delete])])
    text = str(refused.value)
    assert refused.value.status == 400
    assert "tdsc:currency" in text and "EUR" in text and "delayPeriod" in text and "P7D" in text


def test_cli_datasets_add_refuses_a_bad_value(
    provider: ConnectorProcess, payload: Path, tmp_path: Path
) -> None:
    policy = tmp_path / "offer.json"
    policy.write_text(json.dumps(_offer(_volume("100 megs"))))
    env = {"CONNECTOR_API_KEY": str(provider.settings["api_key"])}
    out = cli(
        "--api", f"http://127.0.0.1:{provider.management_port}",
        "datasets", "add", "--id", "ds-cli", "--file", str(payload), "--policy", str(policy),
        env=env,
    )  # fmt: skip
    assert out.returncode != 0
    assert "tdsc:volumeBytes" in out.stdout + out.stderr
