"""Issue 17, blockers 1 and 2, with real connector processes: a transfer that cannot fit the
agreement's volume left is refused up front with what is left; a copy cut short is tracked
for deletion like any other; an overdue deletion blocks only what the operator's Rego rule
says (its agreement by default) and terminating that agreement settles it; a member uses
data received under a members-only offer."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connector.mgmt_client import ApiError
from tests.harness import ConnectorProcess, cli, negotiate, state_of, wait_for
from tests.test_usage_control import delete_after, duty_of, offer, post_as, use

LIBRARY = Path(__file__).resolve().parent.parent / "policies"
TDSC = "https://w3id.org/tdsc/v1/"


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    """A private copy of the shipped library, so a test may add the operator's settings."""
    folder = tmp_path / "policies"
    shutil.copytree(LIBRARY, folder)
    return folder


@pytest.fixture
def nodes(tmp_path: Path, policies: Path) -> Iterator[tuple[ConnectorProcess, ConnectorProcess]]:
    provider = ConnectorProcess(tmp_path, "provider")
    provider.set(
        deletion_grace_seconds="1", policies_dir=str(policies), policy_reload_seconds="0.2"
    )
    consumer = ConnectorProcess(tmp_path, "consumer")
    provider.start()
    consumer.start()
    yield provider, consumer
    consumer.stop()
    provider.stop()


def _transfer(consumer: ConnectorProcess, agreement_id: str) -> dict[str, Any]:
    tp: dict[str, Any] = consumer.api.post("/api/v1/transfers", {"agreementId": agreement_id})
    return tp


def _ended(node: ConnectorProcess, pid: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        record: dict[str, Any] = node.api.get(f"/api/v1/transfers/{pid}")
        return record if record["state"] in ("TERMINATED", "COMPLETED") else None

    found: dict[str, Any] = wait_for(f"transfer {pid} to end", check, 30)
    return found


def _duty(node: ConnectorProcess, duty_id: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = node.api.get(f"/api/v1/deletions/{duty_id}")
    except ApiError:
        return None
    return found


def _request(consumer: ConnectorProcess, provider: ConnectorProcess, agreement_id: str) -> Any:
    """A TransferRequestMessage signed with the consumer's key (the consumer may be down)."""
    message = {
        "@context": ["https://w3id.org/dspace/2025/1/context.jsonld"],
        "@type": "TransferRequestMessage",
        "consumerPid": f"urn:uuid:{uuid.uuid4()}",
        "agreementId": agreement_id,
        "format": "HttpData-PULL",
        "callbackAddress": consumer.dsp,
    }
    return post_as(consumer, provider, "/transfers/request", message)


def test_a_transfer_that_cannot_fit_the_volume_left_is_refused_up_front(
    nodes: tuple[ConnectorProcess, ConnectorProcess], payload: Path
) -> None:
    provider, consumer = nodes
    size = payload.stat().st_size
    total = {"leftOperand": TDSC + "volumeBytes", "operator": "lteq", "rightOperand": 10_000_000}
    provider.publish(payload, offers=[offer(constraints=(total,))])
    agreement_id = negotiate(consumer, provider, "ds-1")
    for _ in range(3):  # 3 x 3.15 MB fit in 10 MB
        assert _ended(consumer, _transfer(consumer, agreement_id)["id"])["state"] == "COMPLETED"

    fourth = _ended(consumer, _transfer(consumer, agreement_id)["id"])
    reason = " ".join(fourth["reason"])
    assert fourth["state"] == "TERMINATED" and fourth["bytes"] == 0, fourth
    assert (
        "the agreement's volume has 562.7" in reason and "KB of the agreed 10 MB left" in reason
    ), reason
    assert f"this dataset is {size / 1e6:.2f} MB" in reason, reason
    refusal = [e for e in fourth["timeline"] if e["direction"] == "refused"]
    assert refusal and refusal[0]["status"] == 400
    # nothing was started, delivered or reserved on the provider's side
    theirs = [t for t in provider.api.get("/api/v1/transfers") if t["agreement_id"] == agreement_id]
    assert len(theirs) == 3 and all(t["state"] == "COMPLETED" for t in theirs)


def test_a_pull_cut_at_the_limit_is_tracked_and_deleted_like_any_copy(
    nodes: tuple[ConnectorProcess, ConnectorProcess], payload: Path
) -> None:
    provider, consumer = nodes
    per_transfer = {
        "leftOperand": TDSC + "transferBytes",
        "operator": "lteq",
        "rightOperand": 10**6,
    }
    provider.publish(payload, offers=[offer(delete_after("P30D"), constraints=(per_transfer,))])
    agreement_id = negotiate(consumer, provider, "ds-1")
    mine = _ended(consumer, _transfer(consumer, agreement_id)["id"])
    assert mine["state"] == "TERMINATED"
    assert "per transfer" in " ".join(mine["reason"]), mine["reason"]

    # the consumer holds the cut copy under a deletion duty, as the provider expects
    duty = wait_for("the consumer's duty", lambda: _duty(consumer, mine["id"]), 30)
    assert duty["state"] == "pending", duty
    assert duty["path"] and Path(duty["path"]).exists()
    assert duty_of(provider, mine["provider_pid"], "pending")["agreement_id"] == agreement_id

    run = cli("--config", str(provider.config), "agreements", "terminate", agreement_id,
              "--reason", "project over")  # fmt: skip
    assert run.returncode == 0, run.stderr
    deleted = duty_of(consumer, mine["id"], "fulfilled")
    assert not Path(duty["path"]).exists() and deleted["receipt"]["deleted"]
    assert duty_of(provider, mine["provider_pid"], "fulfilled")["verification"] == "valid"


def test_an_overdue_deletion_blocks_what_the_operator_s_rule_says(
    nodes: tuple[ConnectorProcess, ConnectorProcess], payload: Path, policies: Path
) -> None:
    provider, consumer = nodes
    provider.publish(payload, "ds-1", offers=[offer(delete_after("PT1S"))])
    provider.publish(payload, "ds-2", offers=[offer()])
    late = negotiate(consumer, provider, "ds-1")
    other = negotiate(consumer, provider, "ds-2")
    tp = state_of(consumer, "transfers", _transfer(consumer, late)["id"], "COMPLETED")
    consumer.kill()  # the copy is never deleted: the provider's duty goes overdue
    duty_of(provider, tp["provider_pid"], "overdue")

    # default: the overdue deletion blocks its own agreement only
    status, body = _request(consumer, provider, late)
    assert status == 400, body
    reason = " ".join(body["reason"])
    assert "overdue deletion" in reason and "under this agreement" in reason, reason
    status, body = _request(consumer, provider, other)
    assert status == 201, body

    # the operator widens it to every transfer of that consumer, in a Rego setting
    version = provider.api.get("/api/v1/policy")["version"]
    local = policies / "local"
    local.mkdir(exist_ok=True)
    (local / "settings.rego").write_text('package local.settings\n\noverdue_scope := "consumer"\n')
    wait_for("the new policies", lambda: provider.api.get("/api/v1/policy")["version"] != version)
    status, body = _request(consumer, provider, other)
    assert status == 400 and "overdue deletion" in " ".join(body["reason"]), body

    # terminating the overdue copy's agreement settles its duty: it blocks nothing any more
    run = cli("--config", str(provider.config), "agreements", "terminate", late,
              "--reason", "copy not deleted")  # fmt: skip
    assert run.returncode == 0, run.stderr
    status, body = _request(consumer, provider, other)
    assert status == 201, body
    # the duty stays on record (a late receipt still fulfils it)
    assert provider.api.get(f"/api/v1/deletions/{tp['provider_pid']}")["state"] == "overdue"


MEMBERS_ONLY = {
    "permission": [
        {
            "action": "use",
            "constraint": [
                {"leftOperand": "tdsc:membership", "operator": "eq", "rightOperand": True}
            ],
        }
    ]
}


def test_a_member_uses_data_received_under_a_members_only_offer(
    tmp_path: Path, payload: Path
) -> None:
    authority = ConnectorProcess(tmp_path, "authority", extra_init=("--authority",)).start()
    provider = ConnectorProcess(
        tmp_path, "provider", extra_init=("--trusted-issuer", authority.did)
    )
    member = ConnectorProcess(tmp_path, "member")
    nodes = [authority, provider, member]
    try:
        provider.start()
        provider.publish(payload, offers=[MEMBERS_ONLY])
        body = {"id": member.did, "name": "member", "organisation": "Member GmbH",
                "roles": [], "region": "DE", "dspEndpoint": member.dsp}  # fmt: skip
        authority.api.post("/api/v1/authority/participants", body)
        member.set(issuer_url=authority.base_url)
        member.start()
        wait_for("the member's credentials", lambda: member.api.get("/api/v1/credentials"))

        agreement_id = negotiate(member, provider, "ds-1")
        state_of(member, "transfers", _transfer(member, agreement_id)["id"], "COMPLETED")
        data, _ = use(member, agreement_id, "research")
        assert data == payload.read_bytes()
    finally:
        for node in nodes:
            node.stop()
