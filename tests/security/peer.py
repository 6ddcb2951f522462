"""A hostile participant played by the test: its own key and did:web DID (its did.json served
from its own listener on 127.0.0.1), raw DSP messages it sends with its own self-issued tokens,
and a DSP endpoint that acknowledges whatever it is sent and records it, tokens included.

A real connector can only tell it apart from an honest peer by what it says, which is the
point: every check the connectors make on a counterparty has to hold against it."""

from __future__ import annotations

import json
import ssl
import threading
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt

from connector.identity import keys as keyfile
from connector.identity import signatures
from connector.identity.did import build_document, did_from_url
from connector.identity.tokens import TokenIssuer
from connector.model.messages import CONSUMER_SIGNATURE, DSP_CONTEXT
from tests.harness import ConnectorProcess, wait_for

CTX = [DSP_CONTEXT]
DSP = "/dsp/2025-1"


@dataclass
class Reply:
    status: int
    content_type: str
    body: Any


@dataclass
class Received:
    method: str
    path: str
    body: Any
    # the unverified claims of the token it came with (None: no token)
    claims: dict[str, Any] | None


@dataclass
class HostilePeer:
    """Start with `start()`; `dsp` is its DSP base URL, `did` its DID."""

    tls: tuple[Path, Path] | None = None  # (certificate, key): serve HTTPS
    trust: Path | None = None  # CA bundle for its own HTTPS requests
    named_dsp: str | None = None  # the DSP endpoint its DID document names (default: its own)
    keys: keyfile.KeyPair = field(default_factory=keyfile.generate)
    received: list[Received] = field(default_factory=list)
    provider_pid: str = field(default_factory=lambda: f"urn:uuid:{uuid.uuid4()}")
    _server: ThreadingHTTPServer | None = None

    def start(self) -> HostilePeer:
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/.well-known/did.json":
                    self._answer(200, peer.document())
                else:
                    self._record(None)
                    self._answer(404, {"detail": "nothing here"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                self._record(body)
                self._answer(*peer.answer(self.path, body))

            def _record(self, body: Any) -> None:
                token = self.headers.get("Authorization")
                if token and token.startswith("Bearer "):
                    token = token[len("Bearer ") :]
                claims = jwt.decode(token, options={"verify_signature": False}) if token else None
                peer.received.append(Received(self.command, self.path, body, claims))

            def _answer(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(self.tls[0]), str(self.tls[1]))
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # identity -------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        assert self._server is not None
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}"

    @property
    def dsp(self) -> str:
        return self.base_url + DSP

    @property
    def did(self) -> str:
        return did_from_url(self.base_url)

    def document(self) -> dict[str, Any]:
        dsp = self.named_dsp or self.dsp
        return build_document(self.did, self.keys, dsp, self.base_url + "/dcp/v1")

    def token(self, audience: str) -> str:
        return TokenIssuer(self.did, self.keys, 120).issue(audience)

    def countersign(self, agreement: dict[str, Any]) -> dict[str, str]:
        return {CONSUMER_SIGNATURE: signatures.sign(agreement, self.did, self.keys)}

    # what it answers and what it got ---------------------------------------------------------

    def answer(self, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        """An initial request is acknowledged with a process; anything else with 200."""
        consumer_pid = body.get("consumerPid") if isinstance(body, dict) else None
        if path.endswith("/negotiations/request") and path.count("/") == 4:
            return 201, self.ack("ContractNegotiation", consumer_pid, "REQUESTED")
        if path.endswith("/transfers/request"):
            return 201, self.ack("TransferProcess", consumer_pid, "REQUESTED")
        return 200, {}

    def ack(self, type_: str, consumer_pid: Any, state: str) -> dict[str, Any]:
        return {
            "@context": CTX,
            "@type": type_,
            "providerPid": self.provider_pid,
            "consumerPid": consumer_pid,
            "state": state,
        }

    def got(self, suffix: str) -> list[Received]:
        return [r for r in self.received if r.path.endswith(suffix)]

    def audiences(self) -> set[str]:
        """The `aud` of every token it was sent."""
        return {str(r.claims.get("aud")) for r in self.received if r.claims is not None}

    # sending ---------------------------------------------------------------------------------

    def send(
        self,
        to: ConnectorProcess,
        path: str,
        body: Any,
        *,
        content_type: str | None = "application/json",
    ) -> Reply:
        """POST `body` to `to`'s DSP endpoint `path` with this peer's token for `to` (and the
        given Content-Type; None: no Content-Type header at all)."""
        context = ssl.create_default_context(cafile=str(self.trust)) if self.trust else None
        return post(to.dsp + path, body, self.token(to.did), content_type, context)


def post(
    url: str,
    body: Any,
    authorization: str,
    content_type: str | None,
    context: ssl.SSLContext | None = None,
) -> Reply:
    headers = {"Authorization": authorization}
    if content_type is not None:
        headers["Content-Type"] = content_type
    req = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30, context=context) as resp:
            status, ctype, text = resp.status, resp.headers.get_content_type(), resp.read()
    except urllib.error.HTTPError as exc:
        status, ctype, text = exc.code, exc.headers.get_content_type(), exc.read()
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = text.decode(errors="replace")
    return Reply(status, ctype, parsed)


def request_body(
    consumer_pid: str, callback: str, dataset_id: str = "ds-1", offer_id: str = "ds-1:offer:1"
) -> dict[str, Any]:
    """An initial ContractRequestMessage for the published default offer of `dataset_id`."""
    return {
        "@context": CTX,
        "@type": "ContractRequestMessage",
        "consumerPid": consumer_pid,
        "callbackAddress": callback,
        "offer": {
            "@id": offer_id,
            "@type": "Offer",
            "target": dataset_id,
            "permission": [{"action": "use"}],
        },
    }


def message(type_: str, provider_pid: str, consumer_pid: str, **extra: Any) -> dict[str, Any]:
    return {
        "@context": CTX,
        "@type": type_,
        "providerPid": provider_pid,
        "consumerPid": consumer_pid,
        **extra,
    }


def finalize_as_consumer(
    provider: ConnectorProcess, peer: HostilePeer, dataset_id: str = "ds-1"
) -> tuple[str, str, dict[str, Any]]:
    """The peer negotiates the published first offer of `dataset_id` with `provider`, as an
    honest consumer would (countersigned), up to FINALIZED; (provider pid, consumer pid,
    agreement)."""
    cpid = f"urn:uuid:{uuid.uuid4()}"
    offer_id = f"{dataset_id}:offer:1"
    reply = peer.send(
        provider, "/negotiations/request", request_body(cpid, peer.dsp, dataset_id, offer_id)
    )
    assert reply.status == 201, reply
    ppid = str(reply.body["providerPid"])
    agreed = wait_for("the agreement", lambda: peer.got(f"/negotiations/{cpid}/agreement"))
    agreement: dict[str, Any] = agreed[0].body["agreement"]
    reply = peer.send(
        provider,
        f"/negotiations/{ppid}/agreement/verification",
        message("ContractAgreementVerificationMessage", ppid, cpid, **peer.countersign(agreement)),
    )
    assert reply.status == 200, reply
    wait_for("FINALIZED", lambda: peer.got(f"/negotiations/{cpid}/events"))
    return ppid, cpid, agreement
