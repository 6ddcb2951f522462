"""Usage control after delivery with two real connectors: use-time decisions, signed use
records, deletion after use with signed receipts, restarts, overdue deletions, termination."""

from __future__ import annotations

import copy
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connector.identity import keys as keyfile
from connector.identity import signatures
from connector.identity.tokens import TokenIssuer
from connector.mgmt_client import ApiError
from connector.model.usage import parse_time
from tests.harness import ConnectorProcess, cli, wait_for

TDSC = "https://w3id.org/tdsc/v1/"
RESEARCH = {"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": ["research"]}
TWO_USES = {"leftOperand": TDSC + "useCount", "operator": "lteq", "rightOperand": 2}
LOG = {"action": "log"}


def delete_after(period: str) -> dict[str, Any]:
    return {
        "action": "delete",
        "constraint": [{"leftOperand": "delayPeriod", "operator": "eq", "rightOperand": period}],
    }


def offer(*duties: dict[str, Any], constraints: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    return {
        "permission": [{"action": "use", "constraint": list(constraints), "duty": list(duties)}]
    }


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[ConnectorProcess, ConnectorProcess]]:
    provider = ConnectorProcess(tmp_path, "provider")
    consumer = ConnectorProcess(tmp_path, "consumer")
    provider.set(deletion_grace_seconds="1")
    provider.start()
    consumer.start()
    yield provider, consumer
    consumer.stop()
    provider.stop()


def deliver(
    provider: ConnectorProcess,
    consumer: ConnectorProcess,
    payload: Path,
    policy: dict[str, Any],
    fmt: str = "HttpData-PULL",
) -> tuple[str, dict[str, Any]]:
    """Publish, negotiate (declaring research), transfer: (agreement id, consumer transfer)."""
    provider.publish(payload, offers=[policy])
    catalog = consumer.api.post("/api/v1/catalog/request", {"counterPartyAddress": provider.dsp})
    entry = next(d for d in catalog["dataset"] if d["@id"] == "ds-1")
    neg = consumer.api.post(
        "/api/v1/negotiations",
        {
            "counterPartyAddress": provider.dsp,
            "datasetId": "ds-1",
            "offer": entry["hasPolicy"][0],
            "purpose": "research",
        },
    )
    agreement_id = consumer.api.wait_state("negotiations", neg["id"], {"FINALIZED"}, 30)[
        "agreement_id"
    ]
    tp = consumer.api.post("/api/v1/transfers", {"agreementId": agreement_id, "format": fmt})
    done = consumer.api.wait_state("transfers", tp["id"], {"COMPLETED"}, timeout=30)
    return str(agreement_id), done


def use(node: ConnectorProcess, agreement_id: str, purpose: str) -> tuple[bytes, dict[str, str]]:
    """The local use API, as an application calls it."""
    url = (
        f"http://127.0.0.1:{node.management_port}/api/v1/agreements/{agreement_id}/data"
        f"?purpose={purpose}"
    )
    req = urllib.request.Request(url, headers={"X-Api-Key": str(node.settings["api_key"])})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.read(), dict(resp.headers.items())


def refused(node: ConnectorProcess, agreement_id: str, purpose: str) -> tuple[int, dict[str, Any]]:
    try:
        use(node, agreement_id, purpose)
    except urllib.error.HTTPError as exc:
        assert exc.headers.get_content_type() == "application/problem+json"
        body: dict[str, Any] = json.loads(exc.read())
        return exc.code, body
    raise AssertionError(f"use for {purpose!r} was not refused")


def duty_of(node: ConnectorProcess, duty_id: str, state: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        duty: dict[str, Any] = node.api.get(f"/api/v1/deletions/{duty_id}")
        return duty if duty["state"] == state else None

    found: dict[str, Any] = wait_for(f"{node.name} deletion {duty_id} {state}", check, 30)
    return found


def did_document(node: ConnectorProcess, where: Path) -> Path:
    with urllib.request.urlopen(node.base_url + "/.well-known/did.json") as resp:
        where.write_bytes(resp.read())
    return where


def post_as(
    sender: ConnectorProcess, receiver: ConnectorProcess, path: str, body: Any
) -> tuple[int, Any]:
    """A DSP-authenticated POST with `sender`'s real key, as its connector would send it."""
    pair = keyfile.load(sender.dir / "keys" / "private.pem")
    req = urllib.request.Request(
        receiver.dsp + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Authorization": TokenIssuer(sender.did, pair, 60).issue(receiver.did),
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_data_is_deleted_2s_after_use_with_a_receipt_the_provider_verifies(
    nodes: tuple[ConnectorProcess, ConnectorProcess], payload: Path, tmp_path: Path
) -> None:
    provider, consumer = nodes
    agreement_id, tp = deliver(
        provider, consumer, payload, offer(delete_after("PT2S"), LOG, constraints=(RESEARCH,))
    )
    copy_path = Path(tp["path"])
    assert copy_path.exists()

    data, headers = use(consumer, agreement_id, "research")
    assert data == payload.read_bytes()
    assert headers["X-Use-Number"] == "1"
    record = consumer.api.get(f"/api/v1/agreements/{agreement_id}/uses")["uses"][0]["record"]
    used_at = parse_time(record["at"])
    assert abs(parse_time(headers["X-Delete-By"]) - (used_at + 2)) < 1.0

    # the provider got the use record (log duty) and checked its signature on arrival
    reported = wait_for(
        "the use record at the provider",
        lambda: provider.api.get(f"/api/v1/agreements/{agreement_id}/uses")["uses"],
    )
    assert reported[0]["record"] == record and reported[0]["verification"] == "valid"

    mine = duty_of(consumer, tp["id"], "fulfilled")
    assert not copy_path.exists()
    receipt = mine["receipt"]
    deleted_at = parse_time(receipt["deleted_at"])
    assert 2.0 <= deleted_at - used_at < 3.5, (record["at"], receipt["deleted_at"])
    assert receipt["deleted"] == [
        {"file": f"received/{copy_path.name}", "bytes": tp["bytes"], "sha256": tp["sha256"]}
    ]
    theirs = duty_of(provider, tp["provider_pid"], "fulfilled")
    assert theirs["receipt"] == receipt and theirs["verification"] == "valid"
    assert theirs["fixed_by"] == "consumer: first use"

    # the data is gone: a later use is answered 410 with when and why
    status, problem = refused(consumer, agreement_id, "research")
    assert status == 410 and "was deleted at" in problem["detail"]

    # anyone with the consumer's public key can verify the receipt offline
    exported = tmp_path / "receipt.json"
    run = cli("--config", str(provider.config), "deletions", "export", tp["provider_pid"],
              "--out", str(exported))  # fmt: skip
    assert run.returncode == 0, run.stderr
    key = did_document(consumer, tmp_path / "consumer-did.json")
    run = cli("deletions", "verify", str(exported), "--consumer-key", str(key))
    assert run.returncode == 0 and "receipt verifies" in run.stdout, run.stdout + run.stderr
    listed = cli("--config", str(provider.config), "deletions", "list", "--state", "fulfilled")
    assert tp["provider_pid"] in listed.stdout

    # an altered receipt (a different hash) does not verify, offline nor at the provider
    altered = json.loads(exported.read_text())
    altered["record"]["deleted"][0]["sha256"] = "0" * 64
    bad = tmp_path / "altered.json"
    bad.write_text(json.dumps(altered))
    run = cli("deletions", "verify", str(bad), "--consumer-key", str(key))
    assert run.returncode == 1 and "digest mismatch" in run.stdout
    path = f"/usage/agreements/{agreement_id}/deletion-receipts"
    status, body = post_as(consumer, provider, path, altered)
    assert status == 400 and "digest mismatch" in " ".join(body["reason"]), body

    # a forged one (signed with another key in the consumer's name) is refused too
    forged = copy.deepcopy(altered)
    forged["signature"] = signatures.sign(forged["record"], consumer.did, keyfile.generate())
    status, body = post_as(consumer, provider, path, forged)
    assert status == 400 and "does not verify" in " ".join(body["reason"]), body
    # ... and nobody else may send receipts for this agreement
    status, body = post_as(provider, provider, path, json.loads(exported.read_text()))
    assert status == 404
    assert provider.api.get(f"/api/v1/deletions/{tp['provider_pid']}")["receipt"] == receipt


def test_two_uses_allowed_the_third_refused_and_a_wrong_purpose_refused(
    nodes: tuple[ConnectorProcess, ConnectorProcess], payload: Path, tmp_path: Path
) -> None:
    provider, consumer = nodes
    agreement_id, _ = deliver(provider, consumer, payload, offer(constraints=(RESEARCH, TWO_USES)))

    status, problem = refused(consumer, agreement_id, "marketing")
    assert status == 403
    assert "purpose 'marketing' is not among the permitted purposes: research" in problem["detail"]
    status, problem = refused(consumer, agreement_id, "")
    assert status == 400 and "purpose is required" in problem["detail"]

    out = tmp_path / "used.bin"
    for n in (1, 2):
        run = cli("--config", str(consumer.config), "use", agreement_id, "--purpose", "research",
                  "--out", str(out))  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert f"use {n} of {agreement_id}" in run.stderr
        assert out.read_bytes() == payload.read_bytes()

    status, problem = refused(consumer, agreement_id, "research")
    assert status == 403
    assert "this would be use 3, but the agreement allows at most 2 uses" in problem["detail"]
    run = cli("--config", str(consumer.config), "use", agreement_id, "--purpose", "research",
              "--out", str(tmp_path / "third.bin"))  # fmt: skip
    assert run.returncode != 0 and "at most 2 uses" in run.stderr
    assert not (tmp_path / "third.bin").exists()

    listed = cli("--config", str(consumer.config), "uses", "list", agreement_id)
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == 1 + 2  # header
    # no log or notify duty: the records stay with the consumer
    assert provider.api.get(f"/api/v1/agreements/{agreement_id}/uses")["count"] == 0
    decisions = consumer.api.get("/api/v1/decisions?limit=20")
    uses = [d["allow"] for d in decisions if d["phase"] == "use"]
    assert uses == [False, False, True, True, False]  # newest first


def test_a_deletion_due_while_the_consumer_is_down_is_done_at_start_up(
    nodes: tuple[ConnectorProcess, ConnectorProcess], payload: Path
) -> None:
    provider, consumer = nodes
    agreement_id, tp = deliver(provider, consumer, payload, offer(delete_after("PT3S")))
    use(consumer, agreement_id, "research")
    pending = consumer.api.get(f"/api/v1/deletions/{tp['id']}")
    assert pending["state"] == "pending" and Path(tp["path"]).exists()
    consumer.kill()

    # the provider sees the deadline pass without a receipt: overdue, with a warning ...
    overdue = duty_of(provider, tp["provider_pid"], "overdue")
    assert "no receipt has arrived" in overdue["notes"][-1]
    assert "WARNING" in provider.log_path.read_text() and "deletion overdue" in (
        provider.log_path.read_text()
    )
    listed = cli("--config", str(provider.config), "deletions", "list", "--state", "overdue")
    assert tp["provider_pid"] in listed.stdout
    # ... and refuses further transfers to that consumer
    request = {
        "@context": ["https://w3id.org/dspace/2025/1/context.jsonld"],
        "@type": "TransferRequestMessage",
        "consumerPid": "urn:uuid:5d1c8a44-0000-4000-8000-000000000001",
        "agreementId": agreement_id,
        "format": "HttpData-PULL",
        "callbackAddress": consumer.dsp,
    }
    status, body = post_as(consumer, provider, "/transfers/request", request)
    assert status == 400 and "overdue deletion" in " ".join(body["reason"]), body

    consumer.start()
    # deleted at start-up, before the use API answered anything
    status, problem = refused(consumer, agreement_id, "research")
    assert status == 410 and "was deleted at" in problem["detail"]
    assert not Path(tp["path"]).exists()
    receipt = consumer.api.get(f"/api/v1/deletions/{tp['id']}")["receipt"]
    assert "passed while the connector was stopped" in receipt["reason"]
    assert parse_time(receipt["deleted_at"]) > parse_time(receipt["deadline"])

    theirs = duty_of(provider, tp["provider_pid"], "fulfilled")
    assert theirs["verification"] == "valid" and "fulfilled (late)" in theirs["notes"][-1]
    again = consumer.api.post("/api/v1/transfers", {"agreementId": agreement_id})
    consumer.api.wait_state("transfers", again["id"], {"COMPLETED"}, timeout=30)


@pytest.mark.parametrize("fmt", ["HttpData-PULL", "HttpData-PUSH"])
def test_the_provider_terminates_the_agreement_and_the_consumer_deletes(
    nodes: tuple[ConnectorProcess, ConnectorProcess], payload: Path, fmt: str
) -> None:
    provider, consumer = nodes
    agreement_id, tp = deliver(provider, consumer, payload, offer(delete_after("P30D")), fmt)
    use(consumer, agreement_id, "research")

    run = cli("--config", str(provider.config), "agreements", "terminate", agreement_id,
              "--reason", "the research project ended")  # fmt: skip
    assert run.returncode == 0, run.stderr

    mine = duty_of(consumer, tp["id"], "fulfilled")
    assert (
        "the provider terminated the agreement: the research project ended"
        in (mine["receipt"]["reason"])
    )
    assert not Path(tp["path"]).exists()
    status, problem = refused(consumer, agreement_id, "research")
    assert status == 403 and "the research project ended" in problem["detail"]
    assert duty_of(provider, tp["provider_pid"], "fulfilled")["verification"] == "valid"

    with pytest.raises(ApiError, match="terminated"):
        again = consumer.api.post("/api/v1/transfers", {"agreementId": agreement_id})
        consumer.api.wait_state("transfers", again["id"], {"COMPLETED"}, timeout=30)
    # the consumer cannot terminate, and unknown agreements are 404
    with pytest.raises(ApiError, match="only the provider"):
        consumer.api.post(f"/api/v1/agreements/{agreement_id}/terminate", {"reason": "x"})
    with pytest.raises(ApiError, match="404"):
        consumer.api.get("/api/v1/deletions/urn:uuid:unknown")


def test_bad_input_gets_a_clear_refusal_and_changes_nothing(
    nodes: tuple[ConnectorProcess, ConnectorProcess], payload: Path
) -> None:
    provider, consumer = nodes
    agreement_id, tp = deliver(provider, consumer, payload, offer(delete_after("P1D"), LOG))

    for node, path, status, text in [
        (consumer, "/api/v1/agreements/urn:uuid:nope/data?purpose=x", 404, "no agreement"),
        (provider, f"/api/v1/agreements/{agreement_id}/data?purpose=x", 404, "as consumer"),
        (consumer, "/api/v1/deletions?state=forgotten", 400, "state must be one of"),
        (consumer, "/api/v1/deletions?role=auditor", 400, "role must be"),
        (consumer, "/api/v1/agreements/urn:uuid:nope/uses", 404, "no agreement"),
    ]:
        with pytest.raises(ApiError) as caught:
            node.api.get(path)
        assert caught.value.status == status and text in caught.value.detail, path
    with pytest.raises(ApiError, match="no agreement"):
        provider.api.post("/api/v1/agreements/urn:uuid:nope/terminate", {"reason": "x"})
    with pytest.raises(ApiError, match="reason"):
        provider.api.post(f"/api/v1/agreements/{agreement_id}/terminate", {"reason": 5})

    base = f"/usage/agreements/{agreement_id}"
    record = consumer.api.get(f"/api/v1/agreements/{agreement_id}/uses")
    assert record["count"] == 0
    cases: list[tuple[ConnectorProcess, ConnectorProcess, str, Any, int, str]] = [
        (consumer, provider, base + "/uses", {"records": "all of them"}, 400, "expected"),
        (consumer, provider, base + "/uses", {"records": [{"record": {"seq": 0}}]}, 400,
         "does not have the profile's fields"),
        (consumer, provider, base + "/deletion-receipts", [1, 2], 400, "expected"),
        (consumer, provider, base + "/deletion-schedule", {"record": None}, 400, "JSON object"),
        (consumer, provider, "/usage/agreements/urn:uuid:nope/uses", {}, 404, "no agreement"),
        (consumer, consumer, base + "/termination", {}, 404, "no agreement"),
        (provider, consumer, base + "/termination", {"record": {}, "signature": "x"}, 400,
         "does not have the profile's fields"),
    ]  # fmt: skip
    for sender, receiver, path, body, status, text in cases:
        got, answer = post_as(sender, receiver, path, body)
        assert got == status and text in " ".join(answer["reason"]), (path, answer)

    # a schedule for a transfer the provider never made, correctly signed: refused
    schedule = {
        "type": "tdsc-deletion-schedule", "agreement": agreement_id, "dataset": "ds-1",
        "provider": provider.did, "consumer": consumer.did, "transfer": "urn:uuid:other",
        "deadline": "2030-01-01T00:00:00Z", "fixed_by": "first use", "at": "2026-01-01T00:00:00Z",
    }  # fmt: skip
    pair = keyfile.load(consumer.dir / "keys" / "private.pem")
    signed = {"record": schedule, "signature": signatures.sign(schedule, consumer.did, pair)}
    got, answer = post_as(consumer, provider, base + "/deletion-schedule", signed)
    assert got == 400 and "no deletion is tracked" in " ".join(answer["reason"])

    # no token at all: 401
    req = urllib.request.Request(provider.dsp + base + "/uses", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as unauthorized:
        urllib.request.urlopen(req, timeout=10)
    assert unauthorized.value.code == 401

    # nothing changed: the copy is still there and usable, the duty still pending
    assert consumer.api.get(f"/api/v1/agreements/{agreement_id}")["terminated_at"] is None
    assert provider.api.get(f"/api/v1/deletions/{tp['provider_pid']}")["state"] == "pending"
    data, _ = use(consumer, agreement_id, "research")
    assert data == payload.read_bytes()
