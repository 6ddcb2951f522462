"""Findings 2 and 3: a DataAddress is a URL a peer names for us to fetch from (pull) or send
to (push). A hostile peer names an internal service; the connector must refuse the address
when it arrives (400, and a terminated transfer for pull), send nothing there, and never
carry text from a remote answer into a reason."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import ConnectorProcess, negotiate, state_of, wait_for
from tests.security.hostile import CONTEXT, PROVIDER_PID, HostileProvider
from tests.security.internal import SECRET, InternalService
from tests.test_usage_control import post_as

Guarded = Callable[..., ConnectorProcess]


def transfer_request(agreement_id: str, consumer: ConnectorProcess, endpoint: str) -> Any:
    return {
        "@context": CONTEXT,
        "@type": "TransferRequestMessage",
        "consumerPid": "urn:uuid:hostile-consumer-pid",
        "agreementId": agreement_id,
        "format": "HttpData-PUSH",
        "callbackAddress": consumer.dsp,
        "dataAddress": {
            "@type": "DataAddress",
            "endpointType": "https://w3id.org/idsa/v4.1/HTTP",
            "endpoint": endpoint,
            "endpointProperties": [
                # the attacker chooses the Authorization the provider would send
                {"@type": "EndpointProperty", "name": "authorization", "value": "admin:admin"},
                {"@type": "EndpointProperty", "name": "authType", "value": "bearer"},
            ],
        },
    }


@pytest.fixture
def pair(guarded: Guarded, payload: Path) -> tuple[ConnectorProcess, ConnectorProcess, str]:
    provider = guarded("provider")
    consumer = guarded("consumer")
    provider.publish(payload)
    return provider, consumer, negotiate(consumer, provider, "ds-1")


@pytest.mark.parametrize(
    "endpoint",
    [
        "{internal}/admin/reset",  # an internal service
        "http://169.254.169.254/latest/meta-data/",  # a cloud metadata service
        "http://user:pw@127.0.0.1:9/x",  # credentials in the URL
        "file:///etc/passwd",  # not http(s)
        "gopher://127.0.0.1:70/x",
    ],
)
def test_a_push_address_the_guard_refuses_is_refused_when_the_request_arrives(
    pair: tuple[ConnectorProcess, ConnectorProcess, str],
    internal: InternalService,
    endpoint: str,
) -> None:
    provider, consumer, agreement_id = pair
    url = endpoint.format(internal=internal.url)
    request = transfer_request(agreement_id, consumer, url)
    status, body = post_as(consumer, provider, "/transfers/request", request)

    assert status == 400, body
    assert body["@type"] == "TransferError", body
    assert any("dataAddress is refused" in r for r in body["reason"]), body
    assert internal.requests == []
    assert provider.api.get("/api/v1/transfers") == []
    assert SECRET not in json.dumps(body)


def test_a_pull_address_naming_an_internal_service_ends_the_transfer_unfetched(
    pair: tuple[ConnectorProcess, ConnectorProcess, str], internal: InternalService
) -> None:
    provider, consumer, agreement_id = pair
    hostile = HostileProvider.take_over(provider)
    try:
        cid = consumer.api.post("/api/v1/transfers", {"agreementId": agreement_id})["id"]
        wait_for(
            "the consumer to learn the provider's pid",
            lambda: consumer.api.get(f"/api/v1/transfers/{cid}")["provider_pid"] == PROVIDER_PID,
        )
        status, body = hostile.start_pull(consumer, cid, internal.url + "/v1/secrets")

        assert status == 400, body
        assert any("pull dataAddress is refused" in r for r in body["reason"]), body
        record = state_of(consumer, "transfers", cid, "TERMINATED")
        assert "refused" in record["reason"][0]
        told = wait_for(
            "the termination to reach the provider",
            lambda: hostile.messages(f"/transfers/{PROVIDER_PID}/termination"),
        )
        assert "refused" in told[0]["reason"][0]
        assert internal.requests == []
        assert SECRET not in json.dumps(record) + json.dumps(told)
    finally:
        hostile.stop()


def test_an_error_answer_from_a_pull_address_is_not_reflected(
    pair: tuple[ConnectorProcess, ConnectorProcess, str],
) -> None:
    """An allowed endpoint that answers an error with a body: the reason the consumer keeps
    and sends says what happened in its own words only."""
    provider, consumer, agreement_id = pair
    hostile = HostileProvider.take_over(provider)
    hostile.data_status = 403
    hostile.data_body = json.dumps({"detail": SECRET}).encode()
    try:
        cid = consumer.api.post("/api/v1/transfers", {"agreementId": agreement_id})["id"]
        wait_for(
            "the consumer to learn the provider's pid",
            lambda: consumer.api.get(f"/api/v1/transfers/{cid}")["provider_pid"] == PROVIDER_PID,
        )
        status, body = hostile.start_pull(consumer, cid, hostile.data_url)
        assert status == 200, body
        record = state_of(consumer, "transfers", cid, "TERMINATED")
        told = wait_for(
            "the termination to reach the provider",
            lambda: hostile.messages(f"/transfers/{PROVIDER_PID}/termination"),
        )
        assert "403" in record["reason"][0]
        assert SECRET not in json.dumps(record) + json.dumps(told)
    finally:
        hostile.stop()


@pytest.fixture
def payload(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "payload.bin"
    path.write_bytes(b"x" * 100_000)
    yield path
