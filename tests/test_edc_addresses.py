"""DataAddresses a stock Eclipse EDC 0.15.1 writes and reads (issue 16).

EDC reads only `endpointType` and `endpointProperties` of a DSP DataAddress; its names are
IRIs under https://w3id.org/edc/v0.0.1/ns/. Its EDR API hands its client the properties
under that namespace (`endpoint`, `authorization`, sent raw in `Authorization`); its push
destination is `HttpData` (`baseUrl`, `path`, a header `authKey: authCode`). The peers here
are real connector processes and test doubles that speak EDC's form."""

from __future__ import annotations

import hashlib
import os
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from connector.dataplane.addresses import (
    EDC,
    Endpoint,
    Unservable,
    pull_address,
    push_destination,
    resolve,
)
from tests.harness import ConnectorProcess, negotiate, state_of, wait_for
from tests.security.hostile import CONTEXT, PROVIDER_PID, HostileProvider
from tests.security.peer import HostilePeer, message
from tests.security.test_impersonation import negotiate_as_consumer
from tests.test_bad_input import tp_request

DATA = os.urandom(300_000)


def edc_prop(name: str, value: str) -> dict[str, str]:
    return {"@type": "EndpointProperty", "name": EDC + name, "value": value}


def edr(address: dict[str, Any]) -> dict[str, str]:
    """What EDC's EDR API returns its client for a DataAddress it got in a
    TransferStartMessage: the EDC-named endpoint properties, compacted (unprefixed names
    and the top-level `endpoint` are not kept)."""
    return {
        p["name"].removeprefix(EDC): p["value"]
        for p in address["endpointProperties"]
        if p["name"].startswith(EDC)
    }


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpEnd:
    """A loopback HTTP server standing for an EDC-side endpoint: answers GET with `data`,
    takes any POST/PUT body (chunked or not), records every request with its headers."""

    data: bytes = b""
    requests: list[Request] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    def start(self) -> HttpEnd:
        end = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    parts = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            return b"".join(parts)
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _record(self, body: bytes) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                end.requests.append(Request(self.command, self.path, headers, body))

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._record(b"")
                self._answer(200, end.data)

            def do_POST(self) -> None:
                self._record(self._body())
                self._answer(200, b"")

            do_PUT = do_POST

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@pytest.fixture
def end() -> Iterator[HttpEnd]:
    server = HttpEnd(data=DATA).start()
    yield server
    server.stop()


@pytest.fixture
def edc_consumer() -> Iterator[HostilePeer]:
    """A consumer that speaks DSP as EDC does (a test double with its own DID and key)."""
    peer = HostilePeer().start()
    yield peer
    peer.stop()


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    path = tmp_path / "payload.bin"
    path.write_bytes(DATA)
    return path


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# reading and writing the forms (no processes) ---------------------------------------------


def test_our_pull_address_carries_the_names_edc_keeps() -> None:
    address = pull_address("https://p.example/data/pull/x", "TOKEN")
    assert address["endpoint"] == "https://p.example/data/pull/x"  # our form, kept
    assert edr(address) == {
        "endpoint": "https://p.example/data/pull/x",
        "endpointType": "https://w3id.org/idsa/v4.1/HTTP",
        "authorization": "TOKEN",
        "authType": "bearer",
    }
    assert resolve(address, push=False) == Endpoint(
        "https://p.example/data/pull/x", {"Authorization": "Bearer TOKEN"}, "GET"
    )


def test_an_edc_pull_address_is_read_from_its_endpoint_properties() -> None:
    address = {
        "@type": "DataAddress",
        "endpointType": "https://w3id.org/idsa/v4.1/HTTP",
        "endpointProperties": [
            edc_prop("endpoint", "https://edc.example/public"),
            edc_prop("endpointType", "https://w3id.org/idsa/v4.1/HTTP"),
            edc_prop("authorization", "eyJ.edc.token"),
            edc_prop("authType", "bearer"),
        ],
    }
    target = resolve(address, push=False)
    assert target.url == "https://edc.example/public"
    assert target.headers == {"Authorization": "eyJ.edc.token"}  # raw, as EDC's data plane reads it


def test_an_edc_http_data_destination_is_read() -> None:
    address = {
        "@type": "DataAddress",
        "endpointType": "HttpData",
        "endpointProperties": [
            edc_prop("baseUrl", "https://sink.example/api/"),
            edc_prop("path", "/upload/1"),
            edc_prop("queryParams", "a=1"),
            edc_prop("method", "put"),
            edc_prop("authKey", "X-Api-Key"),
            edc_prop("authCode", "s3cret"),
        ],
    }
    assert resolve(address, push=True) == Endpoint(
        "https://sink.example/api/upload/1?a=1", {"X-Api-Key": "s3cret"}, "PUT"
    )
    # EDC-style properties as unprefixed top-level members are read too
    flat = {"@type": "DataAddress", "endpointType": "HttpData", "baseUrl": "https://s.example/"}
    assert resolve(flat, push=True) == Endpoint("https://s.example/", {}, "POST")


def test_our_push_destination_is_edc_http_data_and_still_ours() -> None:
    address = push_destination("https://c.example/data/push/x", "TOKEN")
    assert address["endpointType"] == "HttpData"
    assert edr(address) == {
        "baseUrl": "https://c.example/data/push/x",
        "authKey": "Authorization",
        "authCode": "Bearer TOKEN",
    }
    assert resolve(address, push=True) == Endpoint(
        "https://c.example/data/push/x", {"Authorization": "Bearer TOKEN"}, "POST"
    )
    # what an EDC provider reads of it (type and EDC-named properties only)
    edc_view = {
        "endpointType": address["endpointType"],
        "endpointProperties": [
            p for p in address["endpointProperties"] if p["name"].startswith(EDC)
        ],
    }
    assert resolve(edc_view, push=True) == Endpoint(
        "https://c.example/data/push/x", {"Authorization": "Bearer TOKEN"}, "POST"
    )


@pytest.mark.parametrize(
    ("address", "why"),
    [
        (
            {"endpointType": "AmazonS3", "endpointProperties": [edc_prop("bucketName", "b")]},
            "AmazonS3",
        ),
        ({"endpointType": "HttpData", "endpointProperties": []}, "no endpoint"),
        (
            {
                "endpointType": "HttpData",
                "endpointProperties": [
                    edc_prop("baseUrl", "https://s.example"),
                    edc_prop("secretName", "vault-key"),
                ],
            },
            "vault",
        ),
        (
            {
                "endpointType": "HttpData",
                "endpointProperties": [
                    edc_prop("baseUrl", "https://s.example"),
                    edc_prop("authKey", "Host"),
                    edc_prop("authCode", "evil.example"),
                ],
            },
            "authKey",
        ),
        (
            {
                "endpointType": "HttpData",
                "endpointProperties": [
                    edc_prop("baseUrl", "https://s.example"),
                    edc_prop("authKey", "X-A"),
                    edc_prop("authCode", "a\r\nX-B: b"),
                ],
            },
            "line break",
        ),
        (
            {
                "endpointType": "HttpData",
                "endpointProperties": [
                    edc_prop("baseUrl", "https://s.example"),
                    edc_prop("method", "DELETE"),
                ],
            },
            "method",
        ),
        (
            {
                "endpointType": "HttpData",
                "endpointProperties": [edc_prop("baseUrl", "file:///etc/passwd")],
            },
            "http(s)",
        ),
    ],
)
def test_destinations_we_cannot_serve_are_unservable(address: dict[str, Any], why: str) -> None:
    with pytest.raises(Unservable, match=why.replace("(", r"\(").replace(")", r"\)")):
        resolve(address, push=True)


# with real connector processes ------------------------------------------------------------


def test_an_edc_pull_address_is_read_by_our_consumer(
    provider: ConnectorProcess, consumer: ConnectorProcess, payload: Path, end: HttpEnd
) -> None:
    """The provider's TransferStartMessage carries EDC's form only (no `endpoint`, the
    token under EDC's name): the consumer fetches from that endpoint with the token as EDC's
    data plane reads it, and completes with the data."""
    provider.publish(payload)
    agreement_id = negotiate(consumer, provider, "ds-1")
    hostile = HostileProvider.take_over(provider)  # now the provider speaks as EDC does
    try:
        cid = consumer.api.post("/api/v1/transfers", {"agreementId": agreement_id})["id"]
        wait_for(
            "the consumer to learn the provider's pid",
            lambda: consumer.api.get(f"/api/v1/transfers/{cid}")["provider_pid"] == PROVIDER_PID,
        )
        start = {
            "@context": [*CONTEXT, "https://w3id.org/edc/dspace/v0.0.1"],
            "@type": "TransferStartMessage",
            "providerPid": PROVIDER_PID,
            "consumerPid": cid,
            "dataAddress": {
                "@type": "DataAddress",
                "endpointType": "https://w3id.org/idsa/v4.1/HTTP",
                "endpointProperties": [
                    edc_prop("endpoint", end.url + "/public"),
                    edc_prop("endpointType", "https://w3id.org/idsa/v4.1/HTTP"),
                    edc_prop("authorization", "eyJ.edc-token.sig"),
                    edc_prop("authType", "bearer"),
                ],
            },
        }
        status, body = hostile.send(consumer, f"/transfers/{cid}/start", start)
        assert status == 200, body
        record = state_of(consumer, "transfers", cid, "COMPLETED")
        assert record["sha256"] == sha(DATA) and record["bytes"] == len(DATA)
        (got,) = end.requests
        assert (got.method, got.path) == ("GET", "/public")
        assert got.headers["authorization"] == "eyJ.edc-token.sig"
    finally:
        hostile.stop()


def _finalized(provider: ConnectorProcess, peer: HostilePeer, payload: Path) -> dict[str, Any]:
    """An agreement the EDC-speaking consumer negotiated and verified; FINALIZED."""
    ppid, cpid, agreement = negotiate_as_consumer(provider, peer, payload)
    reply = peer.send(
        provider,
        f"/negotiations/{ppid}/agreement/verification",
        message("ContractAgreementVerificationMessage", ppid, cpid, **peer.countersign(agreement)),
    )
    assert reply.status == 200, reply
    wait_for("FINALIZED at the peer", lambda: peer.got(f"/negotiations/{cpid}/events"))
    return agreement


def test_an_edc_client_pulls_with_what_its_edr_api_returns(
    provider: ConnectorProcess, edc_consumer: HostilePeer, payload: Path
) -> None:
    """EDC's consumer keeps the DataAddress of our TransferStartMessage as its EDR; its
    client GETs the EDR's `endpoint` with `Authorization: <authorization>` (no Bearer)."""
    agreement = _finalized(provider, edc_consumer, payload)
    tcpid = f"urn:uuid:{uuid.uuid4()}"
    reply = edc_consumer.send(
        provider, "/transfers/request", tp_request(agreement["@id"], tcpid, edc_consumer.dsp)
    )
    assert reply.status == 201, reply
    (start,) = wait_for("the start", lambda: edc_consumer.got(f"/transfers/{tcpid}/start"))
    reference = edr(start.body["dataAddress"])
    assert reference["endpointType"] == "https://w3id.org/idsa/v4.1/HTTP"
    request = urllib.request.Request(
        reference["endpoint"], headers={"Authorization": reference["authorization"]}
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert resp.status == 200
        assert sha(resp.read()) == sha(DATA)
    wrong = urllib.request.Request(
        reference["endpoint"], headers={"Authorization": reference["authorization"][:-4] + "AAAA"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(wrong, timeout=30)
    assert refused.value.code == 401


def test_an_edc_http_data_destination_is_pushed_to(
    provider: ConnectorProcess, edc_consumer: HostilePeer, payload: Path, end: HttpEnd
) -> None:
    """EDC's TransferRequestMessage for a push names an HttpData destination: accepted, and
    the data go to baseUrl + path with the `authKey: authCode` header."""
    provider.stop()  # EDC sends no metering receipts: the provider waits for them briefly
    provider.set(metering_receipt_seconds="1")
    provider.start()
    agreement = _finalized(provider, edc_consumer, payload)
    tcpid = f"urn:uuid:{uuid.uuid4()}"
    destination = {
        "@type": "DataAddress",
        "endpointType": "HttpData",
        "endpointProperties": [
            edc_prop("baseUrl", end.url + "/sink"),
            edc_prop("path", "incoming"),
            edc_prop("authKey", "X-Api-Key"),
            edc_prop("authCode", "edc-sink-key"),
        ],
    }
    body = tp_request(
        agreement["@id"], tcpid, edc_consumer.dsp, format="HttpData-PUSH", dataAddress=destination
    )
    reply = edc_consumer.send(provider, "/transfers/request", body)
    assert reply.status == 201, reply
    wait_for("the push to arrive", lambda: [r for r in end.requests if r.method == "POST"])
    (got,) = [r for r in end.requests if r.method == "POST"]
    assert got.path == "/sink/incoming"
    assert got.headers["x-api-key"] == "edc-sink-key"
    assert "authorization" not in got.headers
    assert sha(got.body) == sha(DATA)
    wait_for(
        "the completion at the peer", lambda: edc_consumer.got(f"/transfers/{tcpid}/completion")
    )


@pytest.mark.parametrize(
    "destination",
    [
        {
            "@type": "DataAddress",
            "endpointType": "AmazonS3",
            "endpointProperties": [edc_prop("bucketName", "b"), edc_prop("region", "eu")],
        },
        {
            "@type": "DataAddress",
            "endpointType": "HttpData",
            "endpointProperties": [edc_prop("baseUrl", "{end}"), edc_prop("secretName", "k")],
        },
        {"@type": "DataAddress", "endpointType": "HttpData", "endpointProperties": []},
    ],
)
def test_a_destination_we_cannot_serve_is_refused_when_the_request_arrives(
    provider: ConnectorProcess,
    edc_consumer: HostilePeer,
    payload: Path,
    end: HttpEnd,
    destination: dict[str, Any],
) -> None:
    agreement = _finalized(provider, edc_consumer, payload)
    props = [
        {**p, "value": p["value"].format(end=end.url)} for p in destination["endpointProperties"]
    ]
    destination = {**destination, "endpointProperties": props}
    body = tp_request(
        agreement["@id"],
        f"urn:uuid:{uuid.uuid4()}",
        edc_consumer.dsp,
        format="HttpData-PUSH",
        dataAddress=destination,
    )
    reply = edc_consumer.send(provider, "/transfers/request", body)
    assert reply.status == 400, reply
    assert reply.body["@type"] == "TransferError", reply
    assert any("dataAddress is refused" in r for r in reply.body["reason"]), reply
    assert provider.api.get("/api/v1/transfers") == []
    assert not edc_consumer.got("/start")
    assert end.requests == []
