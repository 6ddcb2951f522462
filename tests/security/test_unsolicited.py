"""Unsolicited processes and what a peer may make a connector store (findings 16, 23, 27).

Any DID holder can open a negotiation: an offer it sends must never be countersigned
automatically, its identifiers are bounded, it can keep only so many processes open, and a
DSP message is JSON by its Content-Type."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.harness import ConnectorProcess, wait_for
from tests.security.conftest import Factory
from tests.security.peer import CTX, HostilePeer, message, request_body
from tests.test_bad_input import assert_dsp_error, settle, snapshot


def offer_body(peer: HostilePeer, provider_pid: str | None = None) -> dict[str, Any]:
    """An initial ContractOfferMessage: 50,000 EUR a month for some dataset of the peer's."""
    return {
        "@context": CTX,
        "@type": "ContractOfferMessage",
        "providerPid": provider_pid or f"urn:uuid:{uuid.uuid4()}",
        "callbackAddress": peer.dsp,
        "offer": {
            "@id": "expensive-offer",
            "@type": "Offer",
            "target": "expensive-data",
            "permission": [
                {
                    "action": "use",
                    "duty": [{"action": "compensate", "refinement": "50000 EUR per month"}],
                }
            ],
        },
    }


def timeline_notes(node: ConnectorProcess, pid: str) -> list[str]:
    record = node.api.get(f"/api/v1/negotiations/{pid}")
    return [e["message_type"] for e in record["timeline"] if e["direction"] == "note"]


def test_unsolicited_offer_is_not_auto_accepted(guarded: Factory, mallory: HostilePeer) -> None:
    """Finding 16: with auto_accept_offers, an offer out of the blue was accepted (and the
    agreement that followed countersigned); it must wait for the operator."""
    consumer = guarded("consumer", auto_accept_offers="true")
    reply = mallory.send(consumer, "/negotiations/offers", offer_body(mallory))
    assert reply.status == 201, reply
    cpid = reply.body["consumerPid"]
    wait_for(
        "the consumer's reaction to the offer",
        lambda: "awaiting operator" in timeline_notes(consumer, cpid) or mallory.got("/events"),
    )
    settle(consumer)
    assert not mallory.got("/events"), [r.body for r in mallory.received]
    assert consumer.api.get(f"/api/v1/negotiations/{cpid}")["state"] == "OFFERED"


def test_counter_offer_in_own_negotiation_is_still_auto_accepted(
    guarded: Factory, mallory: HostilePeer
) -> None:
    """What auto_accept_offers is for: the provider's counter-offer to our own request."""
    consumer = guarded("consumer", auto_accept_offers="true")
    neg = consumer.api.post(
        "/api/v1/negotiations",
        {
            "counterPartyAddress": mallory.dsp,
            "datasetId": "expensive-data",
            "offer": {"@id": "cheap-offer", "permission": [{"action": "use"}]},
        },
    )
    cpid = neg["id"]
    wait_for(
        "the provider pid at the consumer",
        lambda: consumer.api.get(f"/api/v1/negotiations/{cpid}")["provider_pid"],
    )
    counter = offer_body(mallory, mallory.provider_pid)
    del counter["callbackAddress"]
    counter["consumerPid"] = cpid
    reply = mallory.send(consumer, f"/negotiations/{cpid}/offers", counter)
    assert reply.status == 200, reply
    accepted = wait_for(
        "ACCEPTED at the provider", lambda: mallory.got(f"/{mallory.provider_pid}/events")
    )
    assert accepted[0].body["eventType"] == "ACCEPTED"


@pytest.mark.parametrize(
    ("pid", "why"),
    [
        ("x" * 100_000, "at most 256"),
        ("urn:uuid:1\x00", "printable"),
        ("urn:uuid:\n1", "printable"),
        ("urn uuid", "whitespace"),
    ],
    ids=["100k", "nul", "newline", "space"],
)
def test_bad_process_ids_are_refused_and_change_nothing(
    guarded: Factory, mallory: HostilePeer, tmp_path: Path, pid: str, why: str
) -> None:
    """Finding 23: a 100 KB consumerPid or one with a NUL was stored as given."""
    node = guarded("node")
    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"data")
    node.publish(payload)
    settle(node)
    before = snapshot(node)
    reply = mallory.send(node, "/negotiations/request", request_body(pid, mallory.dsp))
    assert_dsp_error(reply, 400, "ContractNegotiationError", "consumerPid", why)
    reply = mallory.send(node, "/negotiations/offers", offer_body(mallory, pid))
    assert_dsp_error(reply, 400, "ContractNegotiationError", "providerPid", why)
    assert snapshot(node) == before


def test_open_unsolicited_negotiations_per_peer_are_capped(
    guarded: Factory, mallory: HostilePeer, tmp_path: Path
) -> None:
    """Finding 23: 50 unsolicited offers from one DID were all stored. Beyond
    max_open_processes_per_peer a peer's new negotiations get 429 until one ends; requests
    (to this node as provider) and offers (to it as consumer) count separately."""
    node = guarded("node", max_open_processes_per_peer="2")
    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"data")
    node.publish(payload)

    pids = []
    for _ in range(2):
        reply = mallory.send(
            node, "/negotiations/request", request_body(f"urn:uuid:{uuid.uuid4()}", mallory.dsp)
        )
        assert reply.status == 201, reply
        pids.append(reply.body)
    settle(node)
    reply = mallory.send(
        node, "/negotiations/request", request_body(f"urn:uuid:{uuid.uuid4()}", mallory.dsp)
    )
    assert_dsp_error(reply, 429, "ContractNegotiationError", "max_open_processes_per_peer")
    for _ in range(2):
        assert mallory.send(node, "/negotiations/offers", offer_body(mallory)).status == 201
    reply = mallory.send(node, "/negotiations/offers", offer_body(mallory))
    assert_dsp_error(reply, 429, "ContractNegotiationError", "max_open_processes_per_peer")
    settle(node)
    assert len(node.api.get("/api/v1/negotiations")) == 4

    # one of the requests ends: room for one more
    first = pids[0]
    reply = mallory.send(
        node,
        f"/negotiations/{first['providerPid']}/termination",
        message(
            "ContractNegotiationTerminationMessage",
            first["providerPid"],
            first["consumerPid"],
            reason=["changed my mind"],
        ),
    )
    assert reply.status == 200, reply
    reply = mallory.send(
        node, "/negotiations/request", request_body(f"urn:uuid:{uuid.uuid4()}", mallory.dsp)
    )
    assert reply.status == 201, reply


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_dsp_messages_must_be_json(
    guarded: Factory, mallory: HostilePeer, tmp_path: Path, content_type: str
) -> None:
    """Finding 27: a DSP POST whose Content-Type is not JSON is refused with 415."""
    node = guarded("node")
    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"data")
    node.publish(payload)
    settle(node)
    before = snapshot(node)
    body = request_body(f"urn:uuid:{uuid.uuid4()}", mallory.dsp)
    reply = mallory.send(node, "/negotiations/request", body, content_type=content_type)
    assert_dsp_error(reply, 415, "ContractNegotiationError", "Content-Type")
    assert snapshot(node) == before
    ld = mallory.send(node, "/negotiations/request", body, content_type="application/ld+json")
    assert ld.status == 201, ld
