"""Finding 13: the federated crawler POSTs, with our token, to the DSP endpoint a member names,
and showed the answer in the member status. An internal endpoint is refused at onboarding (the
authority) and at crawl time (the egress guard), and the status shows no remote text."""

from __future__ import annotations

import json
from typing import Any

import pytest

from connector.mgmt_client import ApiError
from tests.harness import ConnectorProcess
from tests.security.conftest import Factory
from tests.security.internal import SECRET, InternalService
from tests.security.peer_host import Answer, PeerHost


def onboard(authority: ConnectorProcess, did: str, endpoint: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"id": did, "name": "m", "organisation": "M GmbH"}
    if endpoint is not None:
        body["dspEndpoint"] = endpoint
    result: dict[str, Any] = authority.api.post("/api/v1/authority/participants", body)
    return result


def test_onboarding_refuses_a_dsp_endpoint_the_egress_policy_refuses(
    guarded: Factory, peer: PeerHost, internal: InternalService
) -> None:
    authority = guarded("authority", authority="true")
    peer.identity("inside", dsp=internal.url + "/dsp")  # its DID document names the endpoint
    cases = [
        (peer.did("given"), internal.url + "/dsp", "127.0.0.2"),
        (peer.did("inside"), None, "127.0.0.2"),
        (peer.did("creds"), f"http://user:pw@127.0.0.1:{peer.port}/dsp", "credentials"),
        (peer.did("meta"), "http://169.254.169.254/latest", "169.254.169.254"),
        (peer.did("scheme"), "file:///etc/passwd", "https"),
        (f"did:web:{peer.authority}:a%2Fb", peer.base + "/dsp", "did:web"),
    ]
    for did, endpoint, why in cases:
        with pytest.raises(ApiError) as refused:
            onboard(authority, did, endpoint)
        assert refused.value.status == 400, (did, endpoint, refused.value)
        assert why in str(refused.value), (did, endpoint, refused.value)
    assert authority.api.get("/api/v1/authority/participants") == []
    assert onboard(authority, peer.did("fine"), peer.base + "/fine/dsp")["status"] == "active"
    assert internal.requests == []


def test_the_crawler_reaches_no_internal_endpoint_and_shows_no_answer(
    guarded: Factory, peer: PeerHost, internal: InternalService
) -> None:
    """Members as the registry lists them (an authority with a laxer policy, or a DNS name that
    changed address): one endpoint internal, one a peer that answers errors with a secret."""
    peer.identity("named", dsp=internal.url + "/dsp")  # its DID document names it
    participants = [
        {"id": peer.did("inside"), "name": "inside", "status": "active",
         "dspEndpoint": internal.url + "/dsp"},
        {"id": peer.did("named"), "name": "named", "status": "active",
         "dspEndpoint": internal.url + "/dsp"},
        {"id": peer.did("leaky"), "name": "leaky", "status": "active",
         "dspEndpoint": peer.base + "/leaky/dsp"},
        {"id": peer.did("junk"), "name": "junk", "status": "active",
         "dspEndpoint": peer.base + "/junk/dsp"},
    ]  # fmt: skip
    peer.serve("/registry", Answer(body=json.dumps({"participants": participants}).encode()))
    error = json.dumps({"@type": "CatalogError", "reason": [SECRET], "detail": SECRET})
    peer.serve("/leaky/dsp/catalog/request", Answer(500, error.encode()))
    peer.serve("/junk/dsp/catalog/request", Answer(200, json.dumps({"x": SECRET}).encode()))
    crawler = guarded(
        "crawler",
        federated_catalog="true",
        registry_url=peer.base + "/registry",
        federated_crawl_seconds="0",
    )
    summary = crawler.api.post("/api/v1/federated-catalog/crawl", {})
    assert summary["members"] == 4 and summary["failed"] == 4, summary
    status = crawler.api.get("/api/v1/federated-catalog/members")
    shown = json.dumps([summary, status])
    assert SECRET not in shown
    assert internal.requests == []
    assert peer.hits["/leaky/dsp/catalog/request"] >= 1  # it was asked, its answer not shown
    errors = {m["name"]: m["lastError"] for m in status["members"]}
    # the endpoint is not the member's: refused before the egress guard is even asked
    assert "not the member's" in errors["inside"] and "127.0.0.2" in errors["inside"], errors
    assert "egress" in errors["named"] and "127.0.0.2" in errors["named"], errors
    assert "answered HTTP 500" in errors["leaky"], errors
    assert "not a DSP catalog" in errors["junk"], errors
