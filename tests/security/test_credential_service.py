"""Finding 11: the caller's DID document names the CredentialService a verifier asks for a
presentation. A caller that names a service inside the operator's network must not get a
request through, and whatever a credential service answers must not come back in the 403."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from connector.egress import Egress, EgressPolicy
from connector.identity.did import DidResolver
from connector.model.messages import DSP_CONTEXT
from tests.harness import ConnectorProcess
from tests.security.conftest import Factory
from tests.security.internal import SECRET, InternalService
from tests.security.peer_host import Answer, PeerHost, catalog_request, text_of
from tests.test_bad_input import Reply, assert_dsp_error

ISSUER = "did:web:authority.example"


@pytest.fixture
def verifier(guarded: Factory) -> ConnectorProcess:
    """A provider that asks every caller for a membership credential of a trusted issuer."""
    return guarded(
        "provider",
        trusted_issuers=json.dumps([ISSUER]),
        require_membership="true",
        credential_cache_seconds="0",
    )


def refused(reply: Reply, did: str) -> list[str]:
    assert_dsp_error(reply, 403, "CatalogError", "membership credential")
    assert DSP_CONTEXT in reply.body["@context"]
    text = text_of(reply)
    assert SECRET not in text
    return [r.replace(did, "<caller>") for r in reply.body["reason"]]


def test_an_internal_credential_service_is_not_asked(
    verifier: ConnectorProcess, peer: PeerHost, internal: InternalService
) -> None:
    mallory = peer.identity("mallory", credential_service=internal.url)
    reply = catalog_request(verifier, mallory.token(verifier.did, token="opaque-access-token"))
    reasons = refused(reply, mallory.did)
    assert internal.requests == []
    assert not any(str(internal.port) in r or "127.0.0.2" in r for r in reasons), reasons


def test_a_credential_service_answer_is_not_reflected(
    verifier: ConnectorProcess, peer: PeerHost, internal: InternalService
) -> None:
    """An error answer (its `detail`, its status) stays with the verifier; the caller reads
    the same reason whether its service was refused, failed, or answered an error."""
    body = json.dumps({"detail": SECRET, "title": SECRET}).encode()
    peer.serve("/eve-cs/presentations/query", Answer(500, body))
    peer.serve("/bob-cs/presentations/query", Answer(200, b"<html>" + SECRET.encode()))
    eve = peer.identity("eve", credential_service=peer.base + "/eve-cs")
    bob = peer.identity("bob", credential_service=peer.base + "/bob-cs")
    mallory = peer.identity("mallory", credential_service=internal.url)
    seen = []
    for caller in (eve, bob, mallory):
        reply = catalog_request(verifier, caller.token(verifier.did, token="opaque"))
        seen.append(refused(reply, caller.did))
    assert peer.hits["/eve-cs/presentations/query"] == 1
    assert peer.hits["/bob-cs/presentations/query"] == 1
    assert seen[0] == seen[1] == seen[2], seen
    assert not any("500" in r for r in seen[0]), seen
    assert internal.requests == []


def test_the_claims_cache_is_bounded() -> None:
    """Refusals are not cached (decided afresh on the next request); clean verifications are,
    in an LRU that stays within its bound however many callers come."""
    from connector.credentials.verifier import CLAIMS_CACHE_MAX, CredentialVerifier, claims_of

    async def scenario() -> tuple[int, int]:
        egress = Egress(EgressPolicy())
        resolver = DidResolver(egress, insecure_http=False, ttl_seconds=0)
        verifier = CredentialVerifier(egress, resolver, "did:web:me.example", [ISSUER], 30)
        for n in range(100):
            await verifier.claims(f"did:web:c{n}.example", None)  # no access token: refused
        refused = len(verifier._claims)

        async def clean(caller: str, access_token: str | None) -> dict[str, Any]:
            return claims_of([], [])  # stands in for a verification without problems

        verifier._verify = clean  # type: ignore[method-assign]
        for n in range(CLAIMS_CACHE_MAX + 100):
            await verifier.claims(f"did:web:m{n}.example", "token")
        await egress.close()
        return refused, len(verifier._claims)

    assert asyncio.run(scenario()) == (0, CLAIMS_CACHE_MAX)
