"""Bad input to the DSP endpoints and the management API: the right 4xx, a DSP error body
(or a problem document), and nothing changed in the store.

The test sends DSP messages itself, with a self-issued token minted from a participant's
real key, so each refusal is about the message and never about the caller's identity.
"""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from connector.identity import keys as keyfile
from connector.identity import signatures
from connector.identity.tokens import TokenIssuer
from connector.model.messages import DSP_CONTEXT, PROVIDER_SIGNATURE
from tests.harness import ConnectorProcess, negotiate
from tests.security.peer import HostilePeer, finalize_as_consumer

CTX = [DSP_CONTEXT]
UNKNOWN = "urn:uuid:00000000-0000-4000-8000-000000000000"

# plumbing ----------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    content_type: str
    body: Any


def http(
    method: str,
    url: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, ctype, text = resp.status, resp.headers.get_content_type(), resp.read()
    except urllib.error.HTTPError as exc:
        status, ctype, text = exc.code, exc.headers.get_content_type(), exc.read()
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = text.decode(errors="replace")
    return Reply(status, ctype, parsed)


def token(sender: ConnectorProcess, receiver: ConnectorProcess) -> str:
    """A fresh, valid self-issued token of `sender` (its real key and DID) for `receiver`."""
    pair = keyfile.load(sender.dir / "keys" / "private.pem")
    return TokenIssuer(sender.did, pair, 120).issue(receiver.did)


def dsp(
    sender: ConnectorProcess,
    receiver: ConnectorProcess,
    method: str,
    path: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
) -> Reply:
    headers = {"Authorization": token(sender, receiver)}
    return http(method, receiver.dsp + path, body, raw=raw, headers=headers)


def assert_dsp_error(
    reply: Reply, status: int, error_type: str, *fragments: str, code: str | None = None
) -> None:
    """`code`: the body's code when it is not the status (CLOCK_SKEW)."""
    assert reply.status == status, reply
    assert reply.content_type == "application/json", reply
    body = reply.body
    assert isinstance(body, dict), reply
    assert body["@type"] == error_type, body
    assert DSP_CONTEXT in body["@context"], body
    assert body["code"] == (code or str(status)), body
    reasons = body["reason"]
    assert isinstance(reasons, list) and reasons, body
    assert all(isinstance(r, str) and r for r in reasons), body
    text = " ".join(reasons).lower()
    for fragment in fragments:
        assert fragment.lower() in text, (fragment, body)


def assert_problem(reply: Reply, status: int, *fragments: str) -> None:
    assert reply.status == status, reply
    assert reply.content_type == "application/problem+json", reply
    body = reply.body
    assert body["status"] == status, body
    assert isinstance(body["title"], str) and body["title"], body
    assert isinstance(body["detail"], str) and body["detail"], body
    text = (body["detail"] + " " + " ".join(body.get("errors") or [])).lower()
    for fragment in fragments:
        assert fragment.lower() in text, (fragment, body)


def snapshot(node: ConnectorProcess, *, tokens: bool = False) -> dict[str, list[Any]]:
    """Every row of every table, read from the SQLite file opened read-only.

    `seen_tokens` is left out unless asked for: accepting a valid token records its jti,
    which is the point of replay protection, not a change caused by the bad message.
    """
    db = sqlite3.connect(f"file:{node.dir / 'connector.db'}?mode=ro", uri=True)
    try:
        names = [r[0] for r in db.execute("select name from sqlite_master where type = 'table'")]
        return {
            name: list(db.execute(f"select * from [{name}] order by rowid"))
            for name in sorted(names)
            if tokens or name != "seen_tokens"
        }
    finally:
        db.close()


def busy_jobs(node: ConnectorProcess) -> list[Any]:
    db = sqlite3.connect(f"file:{node.dir / 'connector.db'}?mode=ro", uri=True)
    try:
        sql = "select kind, payload, status from jobs where status in ('pending', 'running')"
        return list(db.execute(sql))
    finally:
        db.close()


def settle(*nodes: ConnectorProcess, timeout: float = 20.0) -> None:
    """Wait until no node has work queued and no table moves any more."""
    deadline = time.monotonic() + timeout
    last = [snapshot(n, tokens=True) for n in nodes]
    while True:
        time.sleep(0.2)
        now = [snapshot(n, tokens=True) for n in nodes]
        if now == last and not any(busy_jobs(n) for n in nodes):
            return
        assert time.monotonic() < deadline, [busy_jobs(n) for n in nodes]
        last = now


def wait_for(what: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := what()):
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)
    return value


def wait_state(node: ConnectorProcess, kind: str, pid: str, state: str) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        record: dict[str, Any] = node.api.get(f"/api/v1/{kind}/{pid}")
        return record if record["state"] == state else None

    result: dict[str, Any] = wait_for(reached)
    return result


@pytest.fixture
def tester() -> Iterator[HostilePeer]:
    """A participant the test plays (tests/security/peer.py)."""
    peer = HostilePeer().start()
    yield peer
    peer.stop()


@pytest.fixture
def third(tmp_path: Path) -> Iterator[ConnectorProcess]:
    node = ConnectorProcess(tmp_path, "third").start()
    yield node
    node.stop()


# message builders --------------------------------------------------------------------------


def offer(dataset_id: str = "ds-1", offer_id: str = "ds-1:offer:1") -> dict[str, Any]:
    return {
        "@id": offer_id,
        "@type": "Offer",
        "target": dataset_id,
        "permission": [{"action": "use"}],
    }


def cn_request(consumer: ConnectorProcess, consumer_pid: str, **extra: Any) -> dict[str, Any]:
    body = {
        "@context": CTX,
        "@type": "ContractRequestMessage",
        "consumerPid": consumer_pid,
        "offer": offer(),
        "callbackAddress": consumer.dsp,
    }
    body.update(extra)
    return body


def cn(type_: str, provider_pid: str, consumer_pid: str, **extra: Any) -> dict[str, Any]:
    return {
        "@context": CTX,
        "@type": type_,
        "providerPid": provider_pid,
        "consumerPid": consumer_pid,
        **extra,
    }


def tp_request(agreement_id: str, consumer_pid: str, callback: str, **extra: Any) -> dict[str, Any]:
    body = {
        "@context": CTX,
        "@type": "TransferRequestMessage",
        "consumerPid": consumer_pid,
        "agreementId": agreement_id,
        "format": "HttpData-PULL",
        "callbackAddress": callback,
    }
    body.update(extra)
    return body


def without(body: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != key}


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


# DSP: malformed messages -------------------------------------------------------------------


def test_malformed_messages_are_refused_and_change_nothing(
    provider: ConnectorProcess, consumer: ConnectorProcess, payload: Path
) -> None:
    provider.publish(payload)
    agreement_id = negotiate(consumer, provider, "ds-1")
    settle(provider, consumer)
    before = snapshot(provider), snapshot(consumer)

    def to_provider(path: str, body: Any = None, raw: bytes | None = None) -> Reply:
        return dsp(consumer, provider, "POST", path, body, raw=raw)

    # Contract requests: each would create a negotiation, were it well-formed.
    good = cn_request(consumer, "urn:uuid:c-1")
    cases: list[tuple[Any, bytes | None, tuple[str, ...]]] = [
        (None, b'{"@context": [', ("not valid JSON",)),
        (None, b"\xff\xfe\x00{", ("not valid JSON",)),
        (None, b"", ("not valid JSON",)),
        (None, nested(100_000), ()),
        ([good], None, ("JSON object",)),
        ("ContractRequestMessage", None, ("JSON object",)),
        ({**good, "consumerPid": 42}, None, ("consumerPid", "string")),
        ({**good, "consumerPid": ""}, None, ("consumerPid",)),
        ({**good, "offer": "ds-1:offer:1"}, None, ("offer",)),
        ({**good, "offer": {**offer(), "@id": 7}}, None, ("offer.@id",)),
        ({**good, "callbackAddress": ["x"]}, None, ("callbackAddress",)),
        (without(good, "consumerPid"), None, ("consumerPid", "required")),
        (without(good, "offer"), None, ("offer", "required")),
        (without(good, "@type"), None, ("@type is required",)),
        ({**good, "@type": "ContractOfferMessage"}, None, ("@type must be ContractRequest",)),
        ({**good, "@context": ["https://example.org/ctx"]}, None, ("@context", DSP_CONTEXT)),
        ({**good, "@context": 5}, None, ("@context",)),
        ({**good, "@context": {"@vocab": DSP_CONTEXT}}, None, ("@context",)),
        ({**good, "offer": {**offer(), "@type": "Agreement"}}, None, ("@type Offer",)),
        ({**good, "offer": without(offer(), "target")}, None, ("offer.target",)),
        ({**good, "providerPid": "urn:uuid:p"}, None, ("must not carry providerPid",)),
        (without(good, "callbackAddress"), None, ("callbackAddress is required",)),
        ({**good, "offer": offer(offer_id="ds-1:offer:9")}, None, ("unknown offer",)),
        ({**good, "offer": offer(dataset_id="nope")}, None, ("unknown dataset nope",)),
    ]
    for body, raw, fragments in cases:
        reply = to_provider("/negotiations/request", body, raw)
        assert_dsp_error(reply, 400, "ContractNegotiationError", *fragments)

    # A provider's initial offer to the consumer, malformed.
    initial_offer = {
        "@context": CTX,
        "@type": "ContractOfferMessage",
        "providerPid": "urn:uuid:p-1",
        "offer": offer(),
        "callbackAddress": provider.dsp,
    }
    for body, fragments in [
        ({**initial_offer, "providerPid": 3}, ("providerPid",)),
        ({**initial_offer, "consumerPid": "urn:uuid:c"}, ("must not carry consumerPid",)),
        (without(initial_offer, "callbackAddress"), ("callbackAddress",)),
        ({**initial_offer, "offer": without(offer(), "target")}, ("target",)),
        ({**initial_offer, "offer": {"permission": []}}, ("offer.@id", "required")),
    ]:
        reply = dsp(provider, consumer, "POST", "/negotiations/offers", body)
        assert_dsp_error(reply, 400, "ContractNegotiationError", *fragments)

    # Catalog requests.
    catalog = {"@context": CTX, "@type": "CatalogRequestMessage"}
    for body, raw, fragments in [
        (None, b"{not json", ("not valid JSON",)),
        ({**catalog, "@type": "DatasetRequestMessage"}, None, ("@type",)),
        ({**catalog, "@context": ["https://example.org/ctx"]}, None, ("@context",)),
        ({**catalog, "filter": "everything"}, None, ("filter",)),
        ({**catalog, "filter": [{"@type": "QuerySpec", "offset": -1}]}, None, ("offset",)),
    ]:
        reply = to_provider("/catalog/request", body, raw)
        assert_dsp_error(reply, 400, "CatalogError", *fragments)

    # Transfer requests: the agreement is real and finalized, the message is not right.
    good_tp = tp_request(agreement_id, "urn:uuid:t-1", consumer.dsp)
    for body, raw, fragments in [
        (None, b"[1, 2", ("not valid JSON",)),
        (None, nested(100_000), ()),
        ({**good_tp, "consumerPid": 1.5}, None, ("consumerPid",)),
        ({**good_tp, "agreementId": {"@id": agreement_id}}, None, ("agreementId",)),
        (without(good_tp, "agreementId"), None, ("agreementId", "required")),
        (without(good_tp, "callbackAddress"), None, ("callbackAddress", "required")),
        (without(good_tp, "format"), None, ("format", "required")),
        ({**good_tp, "@context": ["https://w3id.org/dspace/v0.8/context.json"]}, None, ()),
        ({**good_tp, "@type": "TransferStartMessage"}, None, ("@type",)),
        ({**good_tp, "agreementId": UNKNOWN}, None, ("unknown agreement",)),
        ({**good_tp, "format": "Ftp-PULL"}, None, ("unsupported format",)),
        ({**good_tp, "format": "HttpData-PUSH"}, None, ("dataAddress",)),
        ({**good_tp, "dataAddress": {"endpointType": 5}}, None, ("dataAddress",)),
        ({**good_tp, "dataAddress": "http://x"}, None, ("dataAddress",)),
    ]:
        reply = to_provider("/transfers/request", body, raw)
        assert_dsp_error(reply, 400, "TransferError", *fragments)

    assert (snapshot(provider), snapshot(consumer)) == before


# DSP: unknown ids ----------------------------------------------------------------------------


def test_unknown_process_ids_are_404(
    provider: ConnectorProcess, consumer: ConnectorProcess, payload: Path
) -> None:
    provider.publish(payload)
    settle(provider, consumer)
    before = snapshot(provider), snapshot(consumer)
    pid = UNKNOWN
    neg_msgs = {
        "request": cn_request(consumer, "urn:uuid:c-2", providerPid=pid),
        "offers": {
            "@context": CTX,
            "@type": "ContractOfferMessage",
            "providerPid": pid,
            "consumerPid": "urn:uuid:c-2",
            "offer": offer(),
        },
        "events": cn("ContractNegotiationEventMessage", pid, "urn:uuid:c", eventType="ACCEPTED"),
        "agreement": cn(
            "ContractAgreementMessage",
            pid,
            "urn:uuid:c",
            agreement={
                "@id": "urn:uuid:a",
                "@type": "Agreement",
                "target": "ds-1",
                "assigner": provider.did,
                "assignee": consumer.did,
            },
        ),
        "agreement/verification": cn("ContractAgreementVerificationMessage", pid, "urn:uuid:c"),
        "termination": cn("ContractNegotiationTerminationMessage", pid, "urn:uuid:c"),
    }
    for receiver, sender in [(provider, consumer), (consumer, provider)]:
        reply = dsp(sender, receiver, "GET", f"/negotiations/{pid}")
        assert_dsp_error(reply, 404, "ContractNegotiationError", f"no negotiation {pid}")
        for action, body in neg_msgs.items():
            reply = dsp(sender, receiver, "POST", f"/negotiations/{pid}/{action}", body)
            assert_dsp_error(reply, 404, "ContractNegotiationError", pid)

        reply = dsp(sender, receiver, "GET", f"/transfers/{pid}")
        assert_dsp_error(reply, 404, "TransferError", pid)
        for action, type_ in [
            ("start", "TransferStartMessage"),
            ("completion", "TransferCompletionMessage"),
            ("suspension", "TransferSuspensionMessage"),
            ("termination", "TransferTerminationMessage"),
        ]:
            body = cn(type_, pid, "urn:uuid:c")
            reply = dsp(sender, receiver, "POST", f"/transfers/{pid}/{action}", body)
            assert_dsp_error(reply, 404, "TransferError", pid)
        reply = dsp(sender, receiver, "POST", f"/transfers/{pid}/restart", {})
        assert_dsp_error(reply, 404, "TransferError", "restart")

    reply = dsp(consumer, provider, "GET", "/catalog/datasets/no-such-dataset")
    assert_dsp_error(reply, 404, "CatalogError", "no-such-dataset")
    reply = dsp(consumer, provider, "GET", "/catalog/datasets/ds-1")
    assert reply.status == 200 and reply.body["@id"] == "ds-1", reply

    # the one valid request is the only one that reached the decision point (and its log)
    after = (snapshot(provider), snapshot(consumer))
    logged = after[0]["decisions"][len(before[0]["decisions"]) :]
    assert [(row[2], row[4]) for row in logged] == [("catalog", "ds-1")]
    for state in (*before, *after):
        state.pop("decisions")
    assert after == before


def test_foreign_process_is_404(
    provider: ConnectorProcess,
    consumer: ConnectorProcess,
    third: ConnectorProcess,
    payload: Path,
) -> None:
    """A valid token of a third participant never reaches another participant's process."""
    provider.publish(payload)
    agreement_id = negotiate(consumer, provider, "ds-1")
    agreement = consumer.api.get(f"/api/v1/agreements/{agreement_id}")
    neg = consumer.api.get(f"/api/v1/negotiations/{agreement['negotiation_id']}")
    ppid, cpid = neg["provider_pid"], neg["consumer_pid"]
    tp = consumer.api.post("/api/v1/transfers", {"agreementId": agreement_id})
    tp = consumer.api.wait_state("transfers", tp["id"], {"COMPLETED"}, timeout=30)
    tppid, tcpid = tp["provider_pid"], tp["consumer_pid"]
    settle(provider, consumer)
    before = snapshot(provider), snapshot(consumer)

    # The owner may look: the ids are real.
    reply = dsp(consumer, provider, "GET", f"/negotiations/{ppid}")
    assert reply.status == 200 and reply.body["state"] == "FINALIZED", reply
    assert reply.body["consumerPid"] == cpid
    reply = dsp(consumer, provider, "GET", f"/transfers/{tppid}")
    assert reply.status == 200 and reply.body["state"] == "COMPLETED", reply
    reply = dsp(provider, consumer, "GET", f"/negotiations/{cpid}")
    assert reply.status == 200 and reply.body["providerPid"] == ppid, reply

    # The third participant, with its own valid token, learns nothing and changes nothing.
    for receiver, npid, tpid in [(provider, ppid, tppid), (consumer, cpid, tcpid)]:
        reply = dsp(third, receiver, "GET", f"/negotiations/{npid}")
        assert_dsp_error(reply, 404, "ContractNegotiationError", npid)
        assert "FINALIZED" not in json.dumps(reply.body)
        body = cn("ContractNegotiationTerminationMessage", ppid, cpid, reason=["mine now"])
        reply = dsp(third, receiver, "POST", f"/negotiations/{npid}/termination", body)
        assert_dsp_error(reply, 404, "ContractNegotiationError", npid)
        body = cn("ContractNegotiationEventMessage", ppid, cpid, eventType="ACCEPTED")
        reply = dsp(third, receiver, "POST", f"/negotiations/{npid}/events", body)
        assert_dsp_error(reply, 404, "ContractNegotiationError", npid)
        reply = dsp(third, receiver, "GET", f"/transfers/{tpid}")
        assert_dsp_error(reply, 404, "TransferError", tpid)
        assert "COMPLETED" not in json.dumps(reply.body)
        body = cn("TransferTerminationMessage", tppid, tcpid)
        reply = dsp(third, receiver, "POST", f"/transfers/{tpid}/termination", body)
        assert_dsp_error(reply, 404, "TransferError", tpid)

    # Nor can the third participant use the consumer's agreement to get the data.
    body = tp_request(agreement_id, "urn:uuid:t-3", third.dsp)
    reply = dsp(third, provider, "POST", "/transfers/request", body)
    assert_dsp_error(reply, 400, "TransferError", "was not made with", third.did)

    assert (snapshot(provider), snapshot(consumer)) == before


# DSP: invalid transitions --------------------------------------------------------------------


def test_invalid_transitions_at_the_provider(
    provider: ConnectorProcess, consumer: ConnectorProcess, payload: Path, tester: HostilePeer
) -> None:
    provider.publish(payload)
    agreement_id = negotiate(consumer, provider, "ds-1")
    agreement = provider.api.get(f"/api/v1/agreements/{agreement_id}")
    final = provider.api.get(f"/api/v1/negotiations/{agreement['negotiation_id']}")
    assert final["role"] == "provider" and final["state"] == "FINALIZED"
    done = consumer.api.post("/api/v1/transfers", {"agreementId": agreement_id})
    done = consumer.api.wait_state("transfers", done["id"], {"COMPLETED"}, timeout=30)

    # Requested terms differ from the published offer: the provider counter-offers and
    # the consumer waits for its operator, so both rest in OFFERED.
    changed = {"@id": "ds-1:offer:1", "permission": [{"action": "read"}]}
    mine = consumer.api.post(
        "/api/v1/negotiations",
        {"counterPartyAddress": provider.dsp, "datasetId": "ds-1", "offer": changed},
    )
    offered = wait_state(consumer, "negotiations", mine["id"], "OFFERED")
    assert provider.api.get(f"/api/v1/negotiations/{offered['provider_pid']}")["state"] == (
        "OFFERED"
    )

    # A transfer that rests SUSPENDED: requested by a consumer the test plays (its own DID,
    # and its own endpoint as callback: a callback must be the caller's), started by the
    # provider, then suspended by its operator.
    tester_agreement = finalize_as_consumer(provider, tester)[2]
    reply = tester.send(
        provider,
        "/transfers/request",
        tp_request(tester_agreement["@id"], "urn:uuid:t-s", tester.dsp),
    )
    assert reply.status == 201, reply
    suspended_pid = reply.body["providerPid"]
    wait_state(provider, "transfers", suspended_pid, "STARTED")
    provider.api.post(f"/api/v1/transfers/{suspended_pid}/suspend", {"reason": "maintenance"})
    wait_for(lambda: tester.got("/suspension"))
    settle(provider, consumer)
    before = snapshot(provider), snapshot(consumer)

    def send(path: str, body: dict[str, Any]) -> Reply:
        return dsp(consumer, provider, "POST", path, body)

    ppid, cpid = offered["provider_pid"], offered["consumer_pid"]
    # OFFERED: no agreement exists to verify, and only the provider may finalize.
    reply = send(
        f"/negotiations/{ppid}/agreement/verification",
        cn("ContractAgreementVerificationMessage", ppid, cpid),
    )
    assert_dsp_error(reply, 400, "ContractNegotiationError", "not allowed in state OFFERED")
    assert reply.body["providerPid"] == ppid
    reply = send(
        f"/negotiations/{ppid}/events",
        cn("ContractNegotiationEventMessage", ppid, cpid, eventType="FINALIZED"),
    )
    assert_dsp_error(reply, 400, "ContractNegotiationError", "not allowed in state OFFERED")
    # The consumer's pid in place of the provider's is somebody else's process.
    reply = send(
        f"/negotiations/{ppid}/events",
        cn("ContractNegotiationEventMessage", UNKNOWN, cpid, eventType="ACCEPTED"),
    )
    assert_dsp_error(reply, 400, "ContractNegotiationError", "does not belong")
    # A provider-only message sent to the provider.
    reply = send(
        f"/negotiations/{ppid}/offers",
        {
            "@context": CTX,
            "@type": "ContractOfferMessage",
            "providerPid": ppid,
            "consumerPid": cpid,
            "offer": offer(),
        },
    )
    assert_dsp_error(reply, 400, "ContractNegotiationError", "consumer's negotiation")

    # FINALIZED: the negotiation has ended; nothing moves it any more.
    fp, fc = final["provider_pid"], final["consumer_pid"]
    for action, body in [
        ("request", cn_request(consumer, fc, providerPid=fp)),
        ("events", cn("ContractNegotiationEventMessage", fp, fc, eventType="ACCEPTED")),
        ("agreement/verification", cn("ContractAgreementVerificationMessage", fp, fc)),
        ("termination", cn("ContractNegotiationTerminationMessage", fp, fc, reason=["late"])),
    ]:
        reply = send(f"/negotiations/{fp}/{action}", body)
        assert_dsp_error(reply, 400, "ContractNegotiationError", "FINALIZED", "has ended")

    # COMPLETED: the transfer has ended.
    tp_p, tp_c = done["provider_pid"], done["consumer_pid"]
    for action, type_ in [
        ("start", "TransferStartMessage"),
        ("completion", "TransferCompletionMessage"),
        ("suspension", "TransferSuspensionMessage"),
        ("termination", "TransferTerminationMessage"),
    ]:
        reply = send(f"/transfers/{tp_p}/{action}", cn(type_, tp_p, tp_c))
        assert_dsp_error(reply, 400, "TransferError", "COMPLETED", "has ended")
        assert reply.body["providerPid"] == tp_p

    # SUSPENDED: it cannot be completed before it is resumed.
    reply = tester.send(
        provider,
        f"/transfers/{suspended_pid}/completion",
        cn("TransferCompletionMessage", suspended_pid, "urn:uuid:t-s"),
    )
    assert_dsp_error(reply, 400, "TransferError", "not allowed in state SUSPENDED")
    # ...and a consumer may not start (resume) what the provider suspended with a wrong pid.
    reply = tester.send(
        provider,
        f"/transfers/{suspended_pid}/start",
        cn("TransferStartMessage", suspended_pid, UNKNOWN),
    )
    assert_dsp_error(reply, 400, "TransferError", "does not belong")

    assert (snapshot(provider), snapshot(consumer)) == before

    # TERMINATED: the operator ends the offered negotiation; afterwards nothing is accepted.
    consumer.api.post(f"/api/v1/negotiations/{cpid}/terminate", {"reason": "changed my mind"})
    wait_state(provider, "negotiations", ppid, "TERMINATED")
    settle(provider, consumer)
    before = snapshot(provider), snapshot(consumer)
    for action, body in [
        ("request", cn_request(consumer, cpid, providerPid=ppid)),
        ("events", cn("ContractNegotiationEventMessage", ppid, cpid, eventType="ACCEPTED")),
        ("agreement/verification", cn("ContractAgreementVerificationMessage", ppid, cpid)),
    ]:
        reply = send(f"/negotiations/{ppid}/{action}", body)
        assert_dsp_error(reply, 400, "ContractNegotiationError", "TERMINATED", "has ended")
    assert (snapshot(provider), snapshot(consumer)) == before


def test_invalid_transitions_at_the_consumer(
    consumer: ConnectorProcess, tester: HostilePeer
) -> None:
    """The test plays the provider (its own DID, key and DSP endpoint, which receives the
    consumer's messages), so the consumer's processes rest in each state as long as needed.
    (Tokens go only to their audience's endpoint, so the test cannot borrow a real
    provider's DID for a sink of its own.)"""
    provider = tester
    pair = tester.keys
    ppid = tester.provider_pid
    neg = consumer.api.post(
        "/api/v1/negotiations",
        {
            "counterPartyAddress": tester.dsp,
            "datasetId": "remote-ds",
            "offer": {"@id": "remote-offer", "permission": [{"action": "use"}]},
        },
    )
    cpid = neg["id"]
    wait_for(lambda: consumer.api.get(f"/api/v1/negotiations/{cpid}")["provider_pid"] == ppid)
    settle(consumer)
    before = snapshot(consumer)

    def send(path: str, body: dict[str, Any]) -> Reply:
        return tester.send(consumer, path, body)

    terms = {
        "@id": "urn:uuid:agreement-1",
        "@type": "Agreement",
        "target": "remote-ds",
        "assigner": provider.did,
        "assignee": consumer.did,
        "timestamp": "2025-01-01T00:00:00Z",
        "permission": [{"action": "use"}],
    }

    def agreement_msg(body: dict[str, Any], signer: keyfile.KeyPair) -> dict[str, Any]:
        return cn(
            "ContractAgreementMessage",
            ppid,
            cpid,
            agreement=body,
            **{PROVIDER_SIGNATURE: signatures.sign(body, provider.did, signer)},
        )

    # REQUESTED.
    reply = send(
        f"/negotiations/{cpid}/agreement/verification",
        cn("ContractAgreementVerificationMessage", ppid, cpid),
    )
    assert_dsp_error(reply, 400, "ContractNegotiationError", "goes to the provider")
    assert reply.body["consumerPid"] == cpid
    for event in ("FINALIZED", "ACCEPTED"):
        body = cn("ContractNegotiationEventMessage", ppid, cpid, eventType=event)
        reply = send(f"/negotiations/{cpid}/events", body)
        assert_dsp_error(reply, 400, "ContractNegotiationError", "not allowed in state REQUESTED")
    reply = send(f"/negotiations/{cpid}/request", cn_request(consumer, cpid, providerPid=ppid))
    assert_dsp_error(reply, 400, "ContractNegotiationError", "provider's negotiation")
    body = {
        "@context": CTX,
        "@type": "ContractOfferMessage",
        "providerPid": UNKNOWN,
        "consumerPid": cpid,
        "offer": offer("remote-ds"),
    }
    reply = send(f"/negotiations/{cpid}/offers", body)
    assert_dsp_error(reply, 400, "ContractNegotiationError", "does not belong")
    reply = send(
        f"/negotiations/{cpid}/agreement",
        agreement_msg({**terms, "target": "other-ds"}, pair),
    )
    assert_dsp_error(reply, 400, "ContractNegotiationError", "target")
    # (An agreement whose signature does not verify ends the negotiation: see
    # tests/security/test_impersonation.py.)
    assert snapshot(consumer) == before

    # The real agreement: the consumer verifies it, then the "provider" finalizes.
    reply = send(f"/negotiations/{cpid}/agreement", agreement_msg(terms, pair))
    assert reply.status == 200 and reply.body["state"] == "AGREED", reply
    wait_for(lambda: tester.got("/agreement/verification"))
    reply = send(
        f"/negotiations/{cpid}/events",
        cn("ContractNegotiationEventMessage", ppid, cpid, eventType="FINALIZED"),
    )
    assert reply.status == 200 and reply.body["state"] == "FINALIZED", reply

    tp = consumer.api.post("/api/v1/transfers", {"agreementId": terms["@id"]})
    tcpid, tppid = tp["id"], tester.provider_pid
    wait_for(lambda: consumer.api.get(f"/api/v1/transfers/{tcpid}")["provider_pid"] == tppid)
    settle(consumer)
    before = snapshot(consumer)

    # FINALIZED negotiation: ended.
    for action, body in [
        ("agreement", agreement_msg(terms, pair)),
        ("offers", cn("ContractOfferMessage", ppid, cpid, offer=offer("remote-ds"))),
        ("events", cn("ContractNegotiationEventMessage", ppid, cpid, eventType="FINALIZED")),
        ("termination", cn("ContractNegotiationTerminationMessage", ppid, cpid)),
    ]:
        reply = send(f"/negotiations/{cpid}/{action}", body)
        assert_dsp_error(reply, 400, "ContractNegotiationError", "FINALIZED", "has ended")

    # REQUESTED transfer: nothing to complete or suspend yet; only the provider starts.
    for action, type_ in [
        ("completion", "TransferCompletionMessage"),
        ("suspension", "TransferSuspensionMessage"),
    ]:
        reply = send(f"/transfers/{tcpid}/{action}", cn(type_, tppid, tcpid))
        assert_dsp_error(reply, 400, "TransferError", "not allowed in state REQUESTED")
        assert reply.body["consumerPid"] == tcpid
    reply = send(f"/transfers/{tcpid}/start", cn("TransferStartMessage", UNKNOWN, tcpid))
    assert_dsp_error(reply, 400, "TransferError", "does not belong")
    reply = send(f"/transfers/{tcpid}/start", cn("TransferStartMessage", tppid, UNKNOWN))
    assert_dsp_error(reply, 400, "TransferError", "does not belong")
    reply = send("/transfers/request", tp_request(terms["@id"], "urn:uuid:t-9", tester.dsp))
    assert_dsp_error(reply, 400, "TransferError", "unknown agreement")
    assert snapshot(consumer) == before

    # STARTED, then SUSPENDED by the provider: completion must wait for a resume.
    reply = send(f"/transfers/{tcpid}/start", cn("TransferStartMessage", tppid, tcpid))
    assert reply.status == 200 and reply.body["state"] == "STARTED", reply
    body = cn("TransferSuspensionMessage", tppid, tcpid, reason=["maintenance"])
    reply = send(f"/transfers/{tcpid}/suspension", body)
    assert reply.status == 200 and reply.body["state"] == "SUSPENDED", reply
    settle(consumer)
    before = snapshot(consumer)
    reply = send(f"/transfers/{tcpid}/completion", cn("TransferCompletionMessage", tppid, tcpid))
    assert_dsp_error(reply, 400, "TransferError", "not allowed in state SUSPENDED")
    assert snapshot(consumer) == before

    # TERMINATED: nothing after it.
    body = cn("TransferTerminationMessage", tppid, tcpid, reason=["bye"])
    reply = send(f"/transfers/{tcpid}/termination", body)
    assert reply.status == 200 and reply.body["state"] == "TERMINATED", reply
    settle(consumer)
    before = snapshot(consumer)
    for action, type_ in [
        ("start", "TransferStartMessage"),
        ("completion", "TransferCompletionMessage"),
        ("suspension", "TransferSuspensionMessage"),
    ]:
        reply = send(f"/transfers/{tcpid}/{action}", cn(type_, tppid, tcpid))
        assert_dsp_error(reply, 400, "TransferError", "TERMINATED", "has ended")
    assert snapshot(consumer) == before
    # The consumer never sent anything it should not have: the tester saw the protocol.
    assert [r.path.rsplit("/", 1)[-1] for r in tester.received if r.method == "POST"] == [
        "request",
        "verification",
        "request",
    ]


# management API --------------------------------------------------------------------------


def test_management_api_bad_input(
    provider: ConnectorProcess, consumer: ConnectorProcess, payload: Path
) -> None:
    provider.publish(payload)
    agreement_id = negotiate(consumer, provider, "ds-1")
    tp = consumer.api.post("/api/v1/transfers", {"agreementId": agreement_id})
    tp = consumer.api.wait_state("transfers", tp["id"], {"COMPLETED"}, timeout=30)
    neg_id = provider.api.get(f"/api/v1/agreements/{agreement_id}")["negotiation_id"]
    settle(provider, consumer)
    before = snapshot(provider), snapshot(consumer)
    key = str(provider.settings["api_key"])
    base = f"http://127.0.0.1:{provider.management_port}/api/v1"

    def api(method: str, path: str, body: Any = None, raw: bytes | None = None) -> Reply:
        return http(method, base + path, body, raw=raw, headers={"X-Api-Key": key})

    # Authentication first: without the right key, not even an unknown id is revealed.
    for headers in ({}, {"X-Api-Key": ""}, {"X-Api-Key": key + "x"}, {"X-Api-Key": key[:-1]}):
        for method, path in [
            ("GET", "/datasets"),
            ("GET", "/negotiations/nope"),
            ("POST", f"/negotiations/{neg_id}/terminate"),
            ("DELETE", "/datasets/ds-1"),
        ]:
            reply = http(method, base + path, headers=headers)
            assert_problem(reply, 401, "X-Api-Key")
    reply = http("GET", base + "/openapi.json")
    assert reply.status == 200 and reply.body["openapi"].startswith("3.")

    source = {"type": "file", "path": str(payload)}
    for body, raw, fragments in [
        (None, b'{"title": ', ("not valid JSON",)),
        (None, b"\xff", ("not valid JSON",)),
        (None, nested(100_000), ()),
        ([{"source": source}], None, ("JSON object",)),
        ({"title": "x"}, None, ("schema", "source")),
        ({"source": {"type": "ftp", "path": "/x"}}, None, ("source.type",)),
        ({"source": source, "colour": "red"}, None, ("colour",)),
        ({"source": source, "title": 5}, None, ("title",)),
        ({"source": source, "keywords": "a,b"}, None, ("keywords",)),
        ({"source": source, "id": ""}, None, ("id",)),
        ({"source": source, "offers": {"permission": []}}, None, ("offers",)),
        ({"source": source, "offers": [{"permission": []}]}, None, ("offer 1",)),
        ({"source": {"type": "file", "path": "relative.bin"}}, None, ("absolute",)),
        ({"source": {"type": "file", "path": "/no/such/file"}}, None, ("not found",)),
        ({"source": {"type": "http", "url": "ftp://x"}}, None, ("http(s)",)),
        ({"source": source, "id": "ds-1"}, None, ("already exists",)),
    ]:
        assert_problem(api("POST", "/datasets", body, raw), 400, *fragments)

    offer_body = {"@id": "ds-1:offer:1", "permission": [{"action": "use"}]}
    for body, fragments in [
        ({"datasetId": "ds-1", "offer": offer_body}, ("counterPartyAddress",)),
        ({"counterPartyAddress": provider.dsp, "offer": offer_body}, ("datasetId",)),
        ({"counterPartyAddress": provider.dsp, "datasetId": "ds-1"}, ("offer",)),
        (
            {"counterPartyAddress": provider.dsp, "datasetId": "ds-1", "offer": "o"},
            ("offer",),
        ),
        (
            {"counterPartyAddress": provider.dsp, "datasetId": "ds-1", "offer": {}},
            ("offer.@id",),
        ),
        (
            {"counterPartyAddress": "not a url", "datasetId": "ds-1", "offer": offer_body},
            ("counterPartyAddress",),
        ),
        (
            {
                "counterPartyAddress": "ftp://127.0.0.1/dsp",
                "counterPartyId": consumer.did,
                "datasetId": "ds-1",
                "offer": offer_body,
            },
            ("counterPartyAddress",),
        ),
    ]:
        assert_problem(api("POST", "/negotiations", body), 400, *fragments)
    for body, fragments in [
        ({"counterPartyAddress": 5}, ("counterPartyAddress",)),
        ({"counterPartyAddress": "relative/path"}, ("counterPartyAddress",)),
        ({}, ("counterPartyAddress",)),
    ]:
        assert_problem(api("POST", "/catalog/request", body), 400, *fragments)
    for body, fragments in [
        ({}, ("agreementId",)),
        ({"agreementId": agreement_id, "format": "HttpData-FTP"}, ("format",)),
        ({"agreementId": ""}, ("agreementId",)),
        ({"agreementId": agreement_id, "extra": 1}, ("extra",)),
    ]:
        assert_problem(api("POST", "/transfers", body), 400, *fragments)
    # The provider holds the agreement, but it is not the consumer of it.
    assert_problem(api("POST", "/transfers", {"agreementId": agreement_id}), 404, "consumer")
    assert_problem(api("POST", "/transfers", {"agreementId": UNKNOWN}), 404, UNKNOWN)
    for query in ("?limit=abc", "?limit=0", "?limit=5000", "?offset=-1"):
        assert_problem(api("GET", "/negotiations" + query), 400, "limit")

    # Unknown ids.
    for method, path in [
        ("GET", "/datasets/nope"),
        ("DELETE", "/datasets/nope"),
        ("GET", "/negotiations/nope"),
        ("GET", "/agreements/nope"),
        ("GET", "/transfers/nope"),
        ("POST", "/negotiations/nope/accept"),
        ("POST", "/negotiations/nope/agree"),
        ("POST", "/negotiations/nope/terminate"),
        ("POST", "/transfers/nope/suspend"),
        ("POST", "/transfers/nope/resume"),
        ("POST", "/transfers/nope/complete"),
        ("POST", "/transfers/nope/terminate"),
    ]:
        assert_problem(api(method, path), 404, "nope")
    assert_problem(api("GET", "/no-such-thing"), 404)
    assert_problem(api("PUT", "/datasets"), 405)

    # Operator actions that the state or the role does not allow.
    for action, fragments in [
        ("accept", ("for the consumer",)),
        ("verify", ("for the consumer",)),
        ("agree", ("FINALIZED",)),
        ("finalize", ("FINALIZED",)),
        ("terminate", ("FINALIZED", "has ended")),
    ]:
        assert_problem(api("POST", f"/negotiations/{neg_id}/{action}"), 400, *fragments)
    reply = api(
        "POST", f"/negotiations/{neg_id}/offer", {"offer": {"@id": "o-2", "permission": []}}
    )
    assert_problem(reply, 400, "FINALIZED")
    reply = api("POST", f"/negotiations/{neg_id}/request", {"offer": {}})
    assert_problem(reply, 400, "for the consumer")
    reply = api("POST", f"/negotiations/{neg_id}/terminate", raw=b"{oops")
    assert_problem(reply, 400, "not valid JSON")
    reply = api("POST", f"/negotiations/{neg_id}/terminate", {"reason": ["a", "b"]})
    assert_problem(reply, 400, "reason")
    tp_pid = tp["provider_pid"]
    for action in ("suspend", "resume", "complete", "terminate"):
        assert_problem(api("POST", f"/transfers/{tp_pid}/{action}"), 400, "COMPLETED")

    assert (snapshot(provider), snapshot(consumer)) == before
