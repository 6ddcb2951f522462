"""Two real connectors go from an offer to delivered bytes, pull and push."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.harness import ConnectorProcess, negotiate


@pytest.mark.parametrize("fmt", ["HttpData-PULL", "HttpData-PUSH"])
def test_offer_to_delivered_bytes(
    provider: ConnectorProcess, consumer: ConnectorProcess, payload: Path, fmt: str
) -> None:
    provider.publish(payload)
    agreement_id = negotiate(consumer, provider, "ds-1")

    tp = consumer.api.post("/api/v1/transfers", {"agreementId": agreement_id, "format": fmt})
    done = consumer.api.wait_state("transfers", tp["id"], {"COMPLETED"}, timeout=30)

    expected = hashlib.sha256(payload.read_bytes()).hexdigest()
    assert done["sha256"] == expected
    assert done["bytes"] == payload.stat().st_size
    assert hashlib.sha256(Path(done["path"]).read_bytes()).hexdigest() == expected
    # in a pull the provider completes when the consumer's completion message arrives
    provider_side = provider.api.wait_state(
        "transfers", done["provider_pid"], {"COMPLETED"}, timeout=30
    )
    assert provider_side["sha256"] == expected


def test_agreement_signed_by_both_and_provable(
    provider: ConnectorProcess, consumer: ConnectorProcess, payload: Path
) -> None:
    provider.publish(payload)
    agreement_id = negotiate(consumer, provider, "ds-1")
    mine = consumer.api.get(f"/api/v1/agreements/{agreement_id}")
    theirs = provider.api.get(f"/api/v1/agreements/{agreement_id}")
    assert mine["verification"] == {"provider": "valid", "consumer": "valid"}
    assert theirs["verification"] == {"provider": "valid", "consumer": "valid"}
    assert mine["sha256"] == theirs["sha256"]
    assert mine["provider_signature"] == theirs["provider_signature"]
    assert mine["consumer_signature"] == theirs["consumer_signature"]
    assert mine["body"]["assigner"] == provider.did
    assert mine["body"]["assignee"] == consumer.did


def test_timeline_records_every_message(
    provider: ConnectorProcess, consumer: ConnectorProcess, payload: Path
) -> None:
    provider.publish(payload)
    agreement_id = negotiate(consumer, provider, "ds-1")
    agreement = consumer.api.get(f"/api/v1/agreements/{agreement_id}")
    neg = consumer.api.get(f"/api/v1/negotiations/{agreement['negotiation_id']}")
    kinds = [(e["direction"], e["message_type"]) for e in neg["timeline"]]
    assert kinds == [
        ("sent", "ContractRequestMessage"),
        ("received", "ContractAgreementMessage"),
        ("sent", "ContractAgreementVerificationMessage"),
        ("received", "ContractNegotiationEventMessage"),
    ]
