"""Where a peer's callbackAddress may point (findings 12 and 24).

The provider sends its messages, with its signed token, to the callbackAddress the caller
names. It must be the caller's own: on its did:web host (host and port) or under the DSP
endpoint its DID document names; https (plain http only in development mode); no
credentials, query or fragment. Anything else is a 400 when the request arrives, and
nothing is ever sent there."""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.harness import ConnectorProcess, wait_for
from tests.security.conftest import Factory
from tests.security.internal import InternalService
from tests.security.peer import HostilePeer, message, request_body
from tests.security.test_impersonation import negotiate_as_consumer
from tests.test_bad_input import assert_dsp_error, settle, snapshot, tp_request
from tests.test_tls import make_pki, tls_node


def bad_callbacks(
    peer: HostilePeer, internal: InternalService, victim: ConnectorProcess
) -> list[str]:
    """Callbacks that are not the caller's: another host, another port on its host (here the
    provider's own management API), a query or fragment to cut the path off, credentials,
    other schemes."""
    host_port = peer.base_url.split("//", 1)[1]
    return [
        internal.url + "/dsp/2025-1",
        f"http://127.0.0.1:{victim.management_port}/api/v1/datasets",
        peer.dsp + "#",
        peer.dsp + "?",
        f"{internal.url}/steal?x=",
        peer.dsp + "/x?y=1",
        f"http://user:secret@{host_port}/dsp/2025-1",
        f"ftp://{host_port}/dsp/2025-1",
        "/dsp/2025-1",
        peer.dsp + " ",
        "http://" + "a" * 3000 + ".example/",
    ]


def test_negotiation_callbacks_must_be_the_callers(
    guarded: Factory, mallory: HostilePeer, internal: InternalService, tmp_path: Path
) -> None:
    """Finding 12: a trailing `#` or `?` let the provider's messages (and token) reach any
    path; any host was accepted too."""
    provider = guarded("provider")
    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"data")
    provider.publish(payload)
    settle(provider)
    before = snapshot(provider)
    for callback in bad_callbacks(mallory, internal, provider):
        body = request_body(f"urn:uuid:{uuid.uuid4()}", callback)
        reply = mallory.send(provider, "/negotiations/request", body)
        assert_dsp_error(reply, 400, "ContractNegotiationError", "callbackAddress")
    settle(provider)
    assert snapshot(provider) == before
    assert internal.requests == []
    # its own DSP endpoint is fine, and the agreement goes there
    cpid = f"urn:uuid:{uuid.uuid4()}"
    reply = mallory.send(provider, "/negotiations/request", request_body(cpid, mallory.dsp))
    assert reply.status == 201, reply
    wait_for("the agreement at the peer", lambda: mallory.got(f"/negotiations/{cpid}/agreement"))


def test_offer_callbacks_must_be_the_callers(
    guarded: Factory, mallory: HostilePeer, internal: InternalService
) -> None:
    consumer = guarded("consumer")
    settle(consumer)
    before = snapshot(consumer)
    for callback in bad_callbacks(mallory, internal, consumer):
        body = {
            "@context": ["https://w3id.org/dspace/2025/1/context.jsonld"],
            "@type": "ContractOfferMessage",
            "providerPid": f"urn:uuid:{uuid.uuid4()}",
            "callbackAddress": callback,
            "offer": {"@id": "o-1", "target": "d-1", "permission": [{"action": "use"}]},
        }
        reply = mallory.send(consumer, "/negotiations/offers", body)
        assert_dsp_error(reply, 400, "ContractNegotiationError", "callbackAddress")
    assert snapshot(consumer) == before


def test_transfer_callbacks_must_be_the_callers(
    guarded: Factory, mallory: HostilePeer, internal: InternalService, tmp_path: Path
) -> None:
    provider = guarded("provider")
    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"data")
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
    settle(provider)
    before = snapshot(provider)
    for callback in bad_callbacks(mallory, internal, provider):
        body = tp_request(agreement["@id"], f"urn:uuid:{uuid.uuid4()}", callback)
        reply = mallory.send(provider, "/transfers/request", body)
        assert_dsp_error(reply, 400, "TransferError", "callbackAddress")
    settle(provider)
    assert snapshot(provider) == before
    assert internal.requests == []
    tcpid = f"urn:uuid:{uuid.uuid4()}"
    reply = mallory.send(
        provider, "/transfers/request", tp_request(agreement["@id"], tcpid, mallory.dsp)
    )
    assert reply.status == 201, reply
    wait_for("the start at the peer", lambda: mallory.got(f"/transfers/{tcpid}/start"))


def test_callback_may_be_the_dsp_endpoint_its_did_document_names(
    guarded: Factory, internal: InternalService, tmp_path: Path
) -> None:
    """A DSP endpoint on another host than the DID's is the caller's when its DID document
    names it (here: the peer's document names a second listener of its own)."""
    elsewhere = HostilePeer().start()
    named = elsewhere.dsp
    peer = HostilePeer(named_dsp=named).start()
    try:
        provider = guarded("provider")
        payload = tmp_path / "payload.bin"
        payload.write_bytes(b"data")
        provider.publish(payload)
        cpid = f"urn:uuid:{uuid.uuid4()}"
        reply = peer.send(provider, "/negotiations/request", request_body(cpid, named))
        assert reply.status == 201, reply
        wait_for("the agreement at the named endpoint", lambda: elsewhere.got("/agreement"))
        reply = peer.send(
            provider,
            "/negotiations/request",
            request_body(f"urn:uuid:{uuid.uuid4()}", internal.url + "/dsp/2025-1"),
        )
        assert_dsp_error(reply, 400, "ContractNegotiationError", "callbackAddress")
    finally:
        peer.stop()
        elsewhere.stop()


def test_plain_http_callback_is_refused_in_production_mode(tmp_path: Path) -> None:
    """Finding 24: an HTTPS provider (no development mode) accepted a plain-HTTP callback."""
    pki = make_pki(tmp_path / "pki")
    provider = tls_node(tmp_path, "provider", pki).start()
    peer = HostilePeer(tls=(pki.cert, pki.key), trust=pki.ca).start()
    try:
        payload = tmp_path / "payload.bin"
        payload.write_bytes(b"data")
        provider.publish(payload)
        settle(provider)
        before = snapshot(provider)
        plain = peer.dsp.replace("https://", "http://", 1)
        reply = peer.send(
            provider, "/negotiations/request", request_body(f"urn:uuid:{uuid.uuid4()}", plain)
        )
        assert_dsp_error(reply, 400, "ContractNegotiationError", "callbackAddress", "https")
        assert snapshot(provider) == before
        cpid = f"urn:uuid:{uuid.uuid4()}"
        reply = peer.send(provider, "/negotiations/request", request_body(cpid, peer.dsp))
        assert reply.status == 201, reply
        wait_for("the agreement at the peer", lambda: peer.got(f"/negotiations/{cpid}/agreement"))
    finally:
        peer.stop()
        provider.stop()
