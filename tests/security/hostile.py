"""A hostile provider (a test double): after a real negotiation, the test stops the real
provider and takes over its address with this listener, which holds the provider's DID
document and key. It acknowledges the consumer's transfer request, records every message,
serves `/data` as the test says, and lets the test send signed DSP messages as the provider."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from connector.identity import keys as keyfile
from connector.identity.tokens import TokenIssuer
from tests.harness import ConnectorProcess

CONTEXT = ["https://w3id.org/dspace/2025/1/context.jsonld"]
PROVIDER_PID = "urn:uuid:hostile-provider-pid"


@dataclass
class Received:
    method: str
    path: str
    body: bytes


@dataclass
class HostileProvider:
    provider: ConnectorProcess  # stopped; its port, DID document and key are taken over
    did_document: bytes
    data_status: int = 200
    data_body: bytes = b""
    received: list[Received] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @classmethod
    def take_over(cls, provider: ConnectorProcess) -> HostileProvider:
        with urllib.request.urlopen(provider.base_url + "/.well-known/did.json") as resp:
            document = resp.read()
        provider.stop()
        return cls(provider, document).start()

    def start(self) -> HostileProvider:
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self, status: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                peer.received.append(Received("GET", self.path, b""))
                if self.path == "/.well-known/did.json":
                    self._answer(200, peer.did_document)
                elif self.path.startswith("/data"):
                    self._answer(peer.data_status, peer.data_body, "application/octet-stream")
                else:
                    self._answer(404, b"{}")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                peer.received.append(Received("POST", self.path, body))
                if self.path.endswith("/transfers/request"):
                    message = json.loads(body)
                    ack = {
                        "@context": CONTEXT,
                        "@type": "TransferProcess",
                        "providerPid": PROVIDER_PID,
                        "consumerPid": message["consumerPid"],
                        "state": "REQUESTED",
                    }
                    self._answer(201, json.dumps(ack).encode())
                else:
                    self._answer(200, b"")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.provider.public_port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def data_url(self) -> str:
        return f"{self.provider.base_url}/data/hostile"

    def messages(self, suffix: str) -> list[dict[str, Any]]:
        return [
            json.loads(r.body)
            for r in self.received
            if r.method == "POST" and r.path.endswith(suffix) and r.body
        ]

    def send(self, consumer: ConnectorProcess, path: str, body: Any) -> tuple[int, Any]:
        """A DSP message signed with the provider's real key, to the consumer."""
        pair = keyfile.load(self.provider.dir / "keys" / "private.pem")
        req = urllib.request.Request(
            consumer.dsp + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={
                "Authorization": TokenIssuer(self.provider.did, pair, 60).issue(consumer.did),
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def start_pull(
        self, consumer: ConnectorProcess, cid: str, endpoint: str, token: str = "t"
    ) -> tuple[int, Any]:
        """TransferStartMessage naming `endpoint` as the pull DataAddress."""
        message = {
            "@context": CONTEXT,
            "@type": "TransferStartMessage",
            "providerPid": PROVIDER_PID,
            "consumerPid": cid,
            "dataAddress": {
                "@type": "DataAddress",
                "endpointType": "https://w3id.org/idsa/v4.1/HTTP",
                "endpoint": endpoint,
                "endpointProperties": [
                    {"@type": "EndpointProperty", "name": "authorization", "value": token},
                    {"@type": "EndpointProperty", "name": "authType", "value": "bearer"},
                ],
            },
        }
        return self.send(consumer, f"/transfers/{cid}/start", message)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
