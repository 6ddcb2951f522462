"""Every DSP message two connectors exchange validates against the DSP 2025-1 JSON Schemas.

The schemas come from the Eclipse DSP TCK's jars on Maven Central (fetched by `make test`
before the tests run), so this checks against the same files the TCK uses.
"""

from __future__ import annotations

import json
import urllib.request
import zipfile
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft201909Validator
from referencing import Registry, Resource

from connector.identity import keys
from connector.identity.tokens import TokenIssuer
from tests.harness import ConnectorProcess, negotiate

REPO = Path(__file__).resolve().parent.parent
JAR_DIRS = [
    REPO / "tests" / "tck" / "target" / "dependency",
    Path.home() / ".m2" / "repository" / "org" / "eclipse" / "dataspacetck",
]
SCHEMA_OF = {
    "Catalog": "catalog/catalog-schema.json",
    "Dataset": "catalog/dataset-schema.json",
    "CatalogRequestMessage": "catalog/catalog-request-message-schema.json",
    "ContractRequestMessage": "negotiation/contract-request-message-schema.json",
    "ContractOfferMessage": "negotiation/contract-offer-message-schema.json",
    "ContractAgreementMessage": "negotiation/contract-agreement-message-schema.json",
    "ContractAgreementVerificationMessage": (
        "negotiation/contract-agreement-verification-message-schema.json"
    ),
    "ContractNegotiationEventMessage": "negotiation/contract-negotiation-event-message-schema.json",
    "ContractNegotiationTerminationMessage": (
        "negotiation/contract-negotiation-termination-message-schema.json"
    ),
    "ContractNegotiation": "negotiation/contract-negotiation-schema.json",
    "ContractNegotiationError": "negotiation/contract-negotiation-error-schema.json",
    "TransferRequestMessage": "transfer/transfer-request-message-schema.json",
    "TransferStartMessage": "transfer/transfer-start-message-schema.json",
    "TransferProcess": "transfer/transfer-process-schema.json",
}


@cache
def schemas() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for root in JAR_DIRS:
        for jar in sorted(root.rglob("*.jar")) if root.exists() else []:
            with zipfile.ZipFile(jar) as z:
                for name in z.namelist():
                    if name.endswith("-schema.json"):
                        found[name] = json.loads(z.read(name))
    if not found:
        pytest.fail("DSP schemas not found: run `make tck-deps` (Maven) first")
    return found


def validate(message: dict[str, Any]) -> None:
    docs = schemas()
    registry: Registry[Any] = Registry().with_resources(
        (doc["$id"], Resource.from_contents(doc)) for doc in docs.values() if "$id" in doc
    )
    schema = docs[SCHEMA_OF[message["@type"]]]
    Draft201909Validator(schema, registry=registry).validate(message)


def _dsp_get(caller: ConnectorProcess, callee: ConnectorProcess, path: str) -> Any:
    issuer = TokenIssuer(caller.did, keys.load(caller.dir / "keys" / "private.pem"), 60)
    req = urllib.request.Request(
        callee.dsp + path, headers={"Authorization": issuer.issue(callee.did)}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def _bodies(node: ConnectorProcess, kind: str, pid: str) -> list[dict[str, Any]]:
    view = node.api.get(f"/api/v1/{kind}/{pid}")
    return [
        e["body"]
        for e in view["timeline"]
        if e["direction"] in ("sent", "received") and isinstance(e["body"], dict)
    ]


def test_exchanged_messages_match_the_spec_schemas(
    provider: ConnectorProcess, consumer: ConnectorProcess, payload: Path
) -> None:
    provider.publish(payload)
    catalog = consumer.api.post("/api/v1/catalog/request", {"counterPartyAddress": provider.dsp})
    agreement_id = negotiate(consumer, provider, "ds-1")
    agreement = consumer.api.get(f"/api/v1/agreements/{agreement_id}")
    neg_c = agreement["negotiation_id"]
    neg_p = consumer.api.get(f"/api/v1/negotiations/{neg_c}")["provider_pid"]
    messages = [catalog, _dsp_get(consumer, provider, "/catalog/datasets/ds-1")]
    messages += _bodies(consumer, "negotiations", neg_c) + _bodies(provider, "negotiations", neg_p)
    messages.append(_dsp_get(consumer, provider, f"/negotiations/{neg_p}"))
    messages.append(_dsp_get(provider, consumer, f"/negotiations/{neg_c}"))
    for fmt in ("HttpData-PULL", "HttpData-PUSH"):
        tp = consumer.api.post("/api/v1/transfers", {"agreementId": agreement_id, "format": fmt})
        done = consumer.api.wait_state("transfers", tp["id"], {"COMPLETED"}, timeout=30)
        messages += _bodies(consumer, "transfers", tp["id"])
        messages.append(_dsp_get(consumer, provider, f"/transfers/{done['provider_pid']}"))

    checked = {m["@type"] for m in messages if m["@type"] in SCHEMA_OF}
    for message in messages:
        if message["@type"] in SCHEMA_OF:
            validate(message)
    assert {
        "Catalog",
        "Dataset",
        "ContractRequestMessage",
        "ContractAgreementMessage",
        "ContractAgreementVerificationMessage",
        "ContractNegotiationEventMessage",
        "ContractNegotiation",
        "TransferRequestMessage",
        "TransferStartMessage",
        "TransferProcess",
    } <= checked


def test_schema_check_catches_an_invalid_message() -> None:
    """The check is real: a message missing a required field fails it."""
    with pytest.raises(Exception, match="consumerPid"):
        validate(
            {
                "@context": ["https://w3id.org/dspace/2025/1/context.jsonld"],
                "@type": "ContractNegotiation",
                "providerPid": "urn:uuid:1",
                "state": "REQUESTED",
            }
        )
