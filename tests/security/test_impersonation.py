"""Impersonation through a negotiation (findings 1 and 26).

A malicious provider M must not be able to make a consumer believe it agreed with another
provider V, nor collect tokens addressed to V (which M could replay at V as the consumer);
a provider must not finalize an agreement the consumer never countersigned."""

from __future__ import annotations

import contextlib
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest

from connector.identity import keys as keyfile
from connector.identity import signatures
from connector.mgmt_client import ApiError
from connector.model.messages import PROVIDER_SIGNATURE
from tests.harness import ConnectorProcess, wait_for
from tests.security.conftest import Factory
from tests.security.peer import CTX, HostilePeer, message, post, request_body
from tests.test_bad_input import assert_dsp_error, settle


def agreement_terms(assigner: str, assignee: str, dataset_id: str = "ds-1") -> dict[str, Any]:
    return {
        "@id": f"urn:uuid:{uuid.uuid4()}",
        "@type": "Agreement",
        "target": dataset_id,
        "assigner": assigner,
        "assignee": assignee,
        "timestamp": "2026-01-01T00:00:00Z",
        "permission": [{"action": "use"}],
    }


def start_with(consumer: ConnectorProcess, peer: HostilePeer, **extra: str) -> str:
    """The consumer's operator starts a negotiation with `peer`'s DSP endpoint; returns the
    consumer's process id once the peer holds the request."""
    body = {
        "counterPartyAddress": peer.dsp,
        "datasetId": "ds-1",
        "offer": {"@id": "ds-1:offer:1", "permission": [{"action": "use"}]},
        **extra,
    }
    neg = consumer.api.post("/api/v1/negotiations", body)
    wait_for("the request at the peer", lambda: peer.got("/negotiations/request"))
    return str(neg["id"])


def terminated(node: ConnectorProcess, pid: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        record: dict[str, Any] = node.api.get(f"/api/v1/negotiations/{pid}")
        return record if record["state"] == "TERMINATED" else None

    found: dict[str, Any] = wait_for(f"{node.name} negotiation {pid} TERMINATED", check)
    return found


def test_agreement_naming_another_provider_is_refused_and_no_token_for_it_leaves(
    guarded: Factory, mallory: HostilePeer, tmp_path: Path
) -> None:
    """Finding 1: M answers the consumer's request with an agreement whose assigner is V
    (signed by M: valid for M, not for V), then finalizes; the consumer's operator then asks
    for a transfer. Before the fix the consumer finalized, recorded V as the provider and
    sent M tokens addressed to V."""
    victim = guarded("victim")
    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"V's data")
    victim.publish(payload)
    consumer = guarded("consumer")
    cpid = start_with(consumer, mallory)

    terms = agreement_terms(assigner=victim.did, assignee=consumer.did)
    forged = signatures.sign(terms, mallory.did, mallory.keys)
    agreed = mallory.send(
        consumer,
        f"/negotiations/{cpid}/agreement",
        message(
            "ContractAgreementMessage",
            mallory.provider_pid,
            cpid,
            agreement=terms,
            **{PROVIDER_SIGNATURE: forged},
        ),
    )
    finalized = mallory.send(
        consumer,
        f"/negotiations/{cpid}/events",
        message(
            "ContractNegotiationEventMessage", mallory.provider_pid, cpid, eventType="FINALIZED"
        ),
    )
    with contextlib.suppress(ApiError):
        consumer.api.post("/api/v1/transfers", {"agreementId": terms["@id"]})
    settle(consumer)

    # No token addressed to V ever reached M: every token M holds is for M alone.
    assert victim.did not in mallory.audiences(), mallory.audiences()
    assert mallory.audiences() == {mallory.did}
    assert_dsp_error(agreed, 400, "ContractNegotiationError", "assigner", victim.did)
    assert_dsp_error(finalized, 400, "ContractNegotiationError", "TERMINATED")
    record = terminated(consumer, cpid)
    assert "assigner" in " ".join(record["reason"]), record
    assert record["agreement_id"] is None
    with pytest.raises(ApiError) as missing:
        consumer.api.get(f"/api/v1/agreements/{terms['@id']}")
    assert missing.value.status == 404
    # and V never heard of any of it
    assert victim.api.get("/api/v1/negotiations") == []


def test_agreement_for_another_consumer_is_refused(guarded: Factory, mallory: HostilePeer) -> None:
    consumer = guarded("consumer")
    cpid = start_with(consumer, mallory)
    terms = agreement_terms(assigner=mallory.did, assignee="did:web:elsewhere.example")
    reply = mallory.send(
        consumer,
        f"/negotiations/{cpid}/agreement",
        message(
            "ContractAgreementMessage",
            mallory.provider_pid,
            cpid,
            agreement=terms,
            **{PROVIDER_SIGNATURE: signatures.sign(terms, mallory.did, mallory.keys)},
        ),
    )
    assert_dsp_error(reply, 400, "ContractNegotiationError", "assignee")
    assert "assignee" in " ".join(terminated(consumer, cpid)["reason"])


@pytest.mark.parametrize("signature", ["other key", "none"])
def test_agreement_without_a_valid_provider_signature_stops_the_negotiation(
    guarded: Factory, mallory: HostilePeer, signature: str
) -> None:
    """A provider signature not valid for the counterparty (or none at all) ends the
    negotiation: before the fix a bad one was a 400 that left it open, none was accepted."""
    consumer = guarded("consumer")
    cpid = start_with(consumer, mallory)
    terms = agreement_terms(assigner=mallory.did, assignee=consumer.did)
    extra = {}
    if signature == "other key":
        extra = {PROVIDER_SIGNATURE: signatures.sign(terms, mallory.did, keyfile.generate())}
    reply = mallory.send(
        consumer,
        f"/negotiations/{cpid}/agreement",
        message("ContractAgreementMessage", mallory.provider_pid, cpid, agreement=terms, **extra),
    )
    assert_dsp_error(reply, 400, "ContractNegotiationError", "signature")
    record = terminated(consumer, cpid)
    assert "signature" in " ".join(record["reason"]), record
    settle(consumer)
    assert not mallory.got("/agreement/verification")


def test_token_is_never_sent_to_a_url_that_is_not_its_audiences(
    guarded: Factory, mallory: HostilePeer
) -> None:
    """The operator names V's DID with M's address: the consumer refuses to send V's token
    there, for a catalog request and for a negotiation alike."""
    victim = guarded("victim")
    consumer = guarded("consumer")
    with pytest.raises(ApiError) as refused:
        consumer.api.post(
            "/api/v1/catalog/request",
            {"counterPartyAddress": mallory.dsp, "counterPartyId": victim.did},
        )
    assert "no token was sent" in str(refused.value), refused.value
    neg = consumer.api.post(
        "/api/v1/negotiations",
        {
            "counterPartyAddress": mallory.dsp,
            "counterPartyId": victim.did,
            "datasetId": "ds-1",
            "offer": {"@id": "ds-1:offer:1", "permission": [{"action": "use"}]},
        },
    )
    record = terminated(consumer, neg["id"])
    assert "no token was sent" in " ".join(record["reason"]), record
    assert mallory.received == []


def negotiate_as_consumer(
    provider: ConnectorProcess, peer: HostilePeer, payload: Path
) -> tuple[str, str, dict[str, Any]]:
    """The peer asks the provider for the published offer of ds-1 and waits for the signed
    agreement; returns (provider pid, consumer pid, agreement)."""
    provider.publish(payload)
    cpid = f"urn:uuid:{uuid.uuid4()}"
    reply = peer.send(provider, "/negotiations/request", request_body(cpid, peer.dsp))
    assert reply.status == 201, reply
    got = wait_for("the agreement at the peer", lambda: peer.got(f"/negotiations/{cpid}/agreement"))
    return str(reply.body["providerPid"]), cpid, got[0].body["agreement"]


def test_provider_refuses_to_finalize_without_the_consumers_countersignature(
    guarded: Factory, mallory: HostilePeer, tmp_path: Path
) -> None:
    """Finding 26: before the fix a verification without consumerSignature was finalized."""
    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"data")
    provider = guarded("provider")
    ppid, cpid, _agreement = negotiate_as_consumer(provider, mallory, payload)
    reply = mallory.send(
        provider,
        f"/negotiations/{ppid}/agreement/verification",
        message("ContractAgreementVerificationMessage", ppid, cpid),
    )
    assert_dsp_error(reply, 400, "ContractNegotiationError", "countersignature")
    record = terminated(provider, ppid)
    assert "countersignature" in " ".join(record["reason"]), record
    settle(provider)
    assert not mallory.got("/events")


def test_provider_refuses_a_countersignature_by_another_key(
    guarded: Factory, mallory: HostilePeer, tmp_path: Path
) -> None:
    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"data")
    provider = guarded("provider")
    ppid, cpid, agreement = negotiate_as_consumer(provider, mallory, payload)
    impostor = HostilePeer(keys=keyfile.generate())
    bad = signatures.sign(agreement, mallory.did, impostor.keys)
    reply = mallory.send(
        provider,
        f"/negotiations/{ppid}/agreement/verification",
        message(
            "ContractAgreementVerificationMessage",
            ppid,
            cpid,
            **{"https://w3id.org/tdsc/v1/consumerSignature": bad},
        ),
    )
    assert_dsp_error(reply, 400, "ContractNegotiationError", "countersignature")
    terminated(provider, ppid)
    settle(provider)
    assert not mallory.got("/events")


def test_countersigned_or_explicitly_allowed_unsigned_agreements_finalize(
    guarded: Factory, mallory: HostilePeer, tmp_path: Path
) -> None:
    """The valid path still finalizes; `accept_unsigned_agreements` lets an operator finalize
    with a peer that lacks the signature profile."""
    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"data")
    provider = guarded("provider")
    ppid, cpid, agreement = negotiate_as_consumer(provider, mallory, payload)
    reply = mallory.send(
        provider,
        f"/negotiations/{ppid}/agreement/verification",
        message(
            "ContractAgreementVerificationMessage", ppid, cpid, **mallory.countersign(agreement)
        ),
    )
    assert reply.status == 200, reply
    wait_for("FINALIZED at the peer", lambda: mallory.got(f"/negotiations/{cpid}/events"))

    lenient = guarded("lenient", accept_unsigned_agreements="true")
    ppid, cpid, _agreement = negotiate_as_consumer(lenient, mallory, payload)
    reply = mallory.send(
        lenient,
        f"/negotiations/{ppid}/agreement/verification",
        message("ContractAgreementVerificationMessage", ppid, cpid),
    )
    assert reply.status == 200, reply
    wait_for("FINALIZED at the peer", lambda: mallory.got(f"/negotiations/{cpid}/events"))
    assert lenient.api.get(f"/api/v1/negotiations/{ppid}")["state"] == "FINALIZED"


def test_token_for_several_audiences_is_refused(guarded: Factory, mallory: HostilePeer) -> None:
    """Finding 27: a token whose `aud` lists us among others was accepted; anyone else in
    the list could replay it here. A list holding only our DID is accepted."""
    node = guarded("node")

    def token(audience: Any) -> str:
        now = int(time.time())
        claims = {
            "iss": mallory.did,
            "sub": mallory.did,
            "aud": audience,
            "jti": str(uuid.uuid4()),
            "iat": now,
            "exp": now + 60,
        }
        headers = {"kid": f"{mallory.did}#key-1", "typ": "JWT"}
        return jwt.encode(claims, mallory.keys.private, algorithm="EdDSA", headers=headers)

    catalog = {"@context": CTX, "@type": "CatalogRequestMessage"}
    url = node.dsp + "/catalog/request"
    reply = post(url, catalog, token([node.did, "did:web:other.example"]), "application/json")
    assert_dsp_error(reply, 401, "CatalogError", "alone")
    assert post(url, catalog, token([node.did]), "application/json").status == 200
    assert post(url, catalog, token(node.did), "application/json").status == 200
