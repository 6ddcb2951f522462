"""Usage policies decided in Rego and enforced between two real connectors."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connector.mgmt_client import ApiError
from tests.harness import ConnectorProcess, negotiate, wait_for

LIBRARY = Path(__file__).resolve().parent.parent / "policies"
TDSC = "https://w3id.org/tdsc/v1/"


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    """A private copy of the shipped library, so a test may edit it."""
    folder = tmp_path / "policies"
    shutil.copytree(LIBRARY, folder)
    return folder


def _rego_node(tmp_path: Path, name: str, policies: Path) -> ConnectorProcess:
    node = ConnectorProcess(tmp_path, name)
    node.set(policy_engine="embedded", policies_dir=str(policies), policy_reload_seconds="0.2")
    return node.start()


@pytest.fixture
def rego_provider(tmp_path: Path, policies: Path) -> Iterator[ConnectorProcess]:
    node = _rego_node(tmp_path, "rego-provider", policies)
    yield node
    node.stop()


@pytest.fixture
def rego_consumer(tmp_path: Path, policies: Path) -> Iterator[ConnectorProcess]:
    node = _rego_node(tmp_path, "rego-consumer", policies)
    yield node
    node.stop()


def _offer(*constraints: dict[str, Any]) -> dict[str, Any]:
    return {"permission": [{"action": "use", "constraint": list(constraints)}]}


def _start(
    consumer: ConnectorProcess, provider: ConnectorProcess, dataset_id: str, **extra: Any
) -> dict[str, Any]:
    catalog = consumer.api.post("/api/v1/catalog/request", {"counterPartyAddress": provider.dsp})
    entry = next(d for d in catalog["dataset"] if d["@id"] == dataset_id)
    body = {"counterPartyAddress": provider.dsp, "datasetId": dataset_id}
    body.update(offer=entry["hasPolicy"][0], **extra)
    result: dict[str, Any] = consumer.api.post("/api/v1/negotiations", body)
    return result


def _ended(node: ConnectorProcess, kind: str, pid: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        record: dict[str, Any] = node.api.get(f"/api/v1/{kind}/{pid}")
        return record if record["state"] in ("TERMINATED", "FINALIZED", "COMPLETED") else None

    found: dict[str, Any] = wait_for(f"{kind} {pid} to end", check)
    return found


def test_wrong_purpose_refused_at_negotiation_with_the_reason(
    rego_provider: ConnectorProcess, rego_consumer: ConnectorProcess, payload: Path
) -> None:
    purpose = {"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": ["research"]}
    rego_provider.publish(payload, "ds-research", offers=[_offer(purpose)])

    refused = _start(rego_consumer, rego_provider, "ds-research", purpose="marketing")
    ended = _ended(rego_consumer, "negotiations", refused["id"])
    assert ended["state"] == "TERMINATED"
    assert "marketing" in " ".join(ended["reason"])
    assert any(
        e["message_type"] == "ContractNegotiationTerminationMessage" for e in ended["timeline"]
    )

    allowed = _start(rego_consumer, rego_provider, "ds-research", purpose="research")
    assert _ended(rego_consumer, "negotiations", allowed["id"])["state"] == "FINALIZED"
    agreement = rego_consumer.api.get(
        f"/api/v1/agreements/{_ended(rego_consumer, 'negotiations', allowed['id'])['agreement_id']}"
    )
    status = rego_provider.api.get("/api/v1/policy")
    assert status["engine"] == "embedded" and status["version"]
    provider_copy = rego_provider.api.get(f"/api/v1/agreements/{agreement['id']}")
    assert provider_copy["policy_version"] == status["version"]

    log = rego_provider.api.get("/api/v1/decisions?limit=50")
    denials = [d for d in log if d["phase"] == "negotiation" and not d["allow"]]
    assert denials and "marketing" in " ".join(denials[0]["reasons"])
    assert denials[0]["engine"] == "embedded" and len(denials[0]["input_sha256"]) == 64


@pytest.mark.parametrize("fmt", ["HttpData-PULL", "HttpData-PUSH"])
def test_transfer_over_the_volume_limit_is_cut_at_exactly_the_limit(
    rego_provider: ConnectorProcess, rego_consumer: ConnectorProcess, payload: Path, fmt: str
) -> None:
    limit = 1_000_000
    volume = {"leftOperand": TDSC + "transferBytes", "operator": "lteq", "rightOperand": limit}
    rego_provider.publish(payload, "ds-volume", offers=[_offer(volume)])
    agreement_id = negotiate(rego_consumer, rego_provider, "ds-volume")

    tp = rego_consumer.api.post("/api/v1/transfers", {"agreementId": agreement_id, "format": fmt})
    mine = _ended(rego_consumer, "transfers", tp["id"])
    theirs = _ended(rego_provider, "transfers", mine["provider_pid"])
    assert theirs["state"] == "TERMINATED"
    assert theirs["bytes"] == limit
    assert "volume limit" in " ".join(theirs["reason"])
    assert mine["state"] == "TERMINATED"
    if fmt == "HttpData-PUSH":
        assert mine["bytes"] == limit
        assert Path(mine["path"]).read_bytes() == payload.read_bytes()[:limit]


def test_expired_agreement_refuses_a_new_transfer(
    rego_provider: ConnectorProcess, rego_consumer: ConnectorProcess, payload: Path
) -> None:
    until = (datetime.now(UTC) + timedelta(seconds=4)).isoformat(timespec="seconds")
    window = {"leftOperand": "dateTime", "operator": "lteq", "rightOperand": until}
    rego_provider.publish(payload, "ds-window", offers=[_offer(window)])
    agreement_id = negotiate(rego_consumer, rego_provider, "ds-window")
    first = rego_consumer.api.post("/api/v1/transfers", {"agreementId": agreement_id})
    assert _ended(rego_consumer, "transfers", first["id"])["state"] == "COMPLETED"

    while datetime.now(UTC) <= datetime.fromisoformat(until):
        time.sleep(0.2)
    late = rego_consumer.api.post("/api/v1/transfers", {"agreementId": agreement_id})
    ended = _ended(rego_consumer, "transfers", late["id"])
    assert ended["state"] == "TERMINATED"
    assert until[:10] in " ".join(ended["reason"]) or "expired" in " ".join(ended["reason"])
    refused = [e for e in ended["timeline"] if e["direction"] == "refused"]
    assert refused and refused[0]["status"] == 400


def test_core_data_never_appears_in_another_participants_catalog(
    rego_provider: ConnectorProcess, rego_consumer: ConnectorProcess, payload: Path
) -> None:
    rego_provider.publish(payload, "ds-core", classification="core")
    rego_provider.publish(payload, "ds-general")
    catalog = rego_consumer.api.post(
        "/api/v1/catalog/request", {"counterPartyAddress": rego_provider.dsp}
    )
    ids = {d["@id"] for d in catalog.get("dataset", [])}
    assert "ds-general" in ids and "ds-core" not in ids
    # Even asked directly by id, the provider refuses to deal core data to another participant.
    neg = rego_consumer.api.post(
        "/api/v1/negotiations",
        {
            "counterPartyAddress": rego_provider.dsp,
            "datasetId": "ds-core",
            "offer": {"@id": "ds-core:offer:1", "permission": [{"action": "use"}]},
        },
    )
    ended = _ended(rego_consumer, "negotiations", neg["id"])
    assert ended["state"] == "TERMINATED" and "core" in " ".join(ended["reason"])


def test_offer_with_undecidable_terms_is_refused_at_publication(
    rego_provider: ConnectorProcess, payload: Path
) -> None:
    odd = {"leftOperand": "shoeSize", "operator": "eq", "rightOperand": "42"}
    with pytest.raises(ApiError) as refused:
        rego_provider.publish(payload, "ds-odd", offers=[_offer(odd)])
    assert refused.value.status == 400 and "shoeSize" in str(refused.value)
    with pytest.raises(ApiError):
        rego_provider.api.get("/api/v1/datasets/ds-odd")


def test_policies_reload_and_a_broken_version_never_replaces_the_working_one(
    rego_provider: ConnectorProcess, policies: Path
) -> None:
    before = rego_provider.api.get("/api/v1/policy")
    extra = policies / "connector" / "zz_reload_probe.rego"
    extra.write_text("package connector.reloadprobe\n\nprobe := true\n")
    changed = wait_for(
        "a new policy version",
        lambda: (
            (s := rego_provider.api.get("/api/v1/policy"))["version"] != before["version"] and s
        ),
    )
    extra.write_text("package connector.reloadprobe\n\nprobe := {{{ not rego\n")
    broken = wait_for(
        "the reload error",
        lambda: (s := rego_provider.api.get("/api/v1/policy"))["last_error"] and s,
    )
    assert broken["version"] == changed["version"]
    assert "reloadprobe" in broken["last_error"] or "zz_reload_probe" in broken["last_error"]


def test_transfer_count_is_counted_per_agreement(
    rego_provider: ConnectorProcess, rego_consumer: ConnectorProcess, payload: Path
) -> None:
    once = {"leftOperand": "count", "operator": "lteq", "rightOperand": 1}
    rego_provider.publish(payload, "ds-once", offers=[_offer(once)])
    agreement_id = negotiate(rego_consumer, rego_provider, "ds-once")
    first = rego_consumer.api.post("/api/v1/transfers", {"agreementId": agreement_id})
    assert _ended(rego_consumer, "transfers", first["id"])["state"] == "COMPLETED"
    second = rego_consumer.api.post("/api/v1/transfers", {"agreementId": agreement_id})
    ended = _ended(rego_consumer, "transfers", second["id"])
    assert ended["state"] == "TERMINATED"
    assert "transfer 2" in " ".join(ended["reason"]), ended["reason"]
