"""A hostile peer's own web server on 127.0.0.1 (which the connectors under test may reach):
it serves DID documents and whatever answers a test gives it, counts every request per path,
and can hold requests open without answering. With it a test plays a participant that names
itself with any did:web it likes and signs its own self-issued tokens."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

import jwt

from connector.identity import keys as keyfile
from connector.identity.did import KEY_FRAGMENT, build_document
from tests.harness import ConnectorProcess
from tests.test_bad_input import CTX, Reply, http

HOST = "127.0.0.1"


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False  # hold the request open, answer nothing, until the server stops


@dataclass
class PeerHost:
    answers: dict[str, Answer] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)
    default: Answer = field(default_factory=lambda: Answer(404, b'{"detail": "not here"}'))
    _server: ThreadingHTTPServer | None = None
    _released: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> PeerHost:
        host = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                with host._lock:
                    host.hits[self.path] += 1
                answer = host.answers.get(self.path.split("?", 1)[0], host.default)
                if answer.hang:
                    host._released.wait(60)
                    return
                self.send_response(answer.status)
                for name, value in {"Content-Type": "application/json", **answer.headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            do_GET = do_POST = do_PUT = _any

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def authority(self) -> str:
        """The did:web host part of this server (host and port)."""
        return f"{HOST}%3A{self.port}"

    def did(self, *segments: str) -> str:
        return ":".join(["did:web", self.authority, *(quote(s, safe="") for s in segments)])

    @staticmethod
    def document_path(*segments: str) -> str:
        return "/" + "/".join([*segments, "did.json"]) if segments else "/.well-known/did.json"

    def fetches(self, *segments: str) -> int:
        """How often the DID document at `segments` was asked for."""
        with self._lock:
            return self.hits[self.document_path(*segments)]

    def total(self) -> int:
        with self._lock:
            return sum(self.hits.values())

    def serve(self, path: str, answer: Answer) -> None:
        self.answers[path] = answer

    def identity(
        self, *segments: str, credential_service: str | None = None, dsp: str | None = None
    ) -> Identity:
        """A participant named by this server's did:web (+ segments), with its own key and a
        DID document served here."""
        did = self.did(*segments)
        pair = keyfile.generate()
        document = build_document(
            did, pair, dsp or f"{self.base}/dsp", credential_service or f"{self.base}/dcp"
        )
        self.serve(self.document_path(*segments), Answer(body=json.dumps(document).encode()))
        return Identity(did, pair)

    def stop(self) -> None:
        self._released.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@dataclass
class Identity:
    did: str
    keys: keyfile.KeyPair

    def token(self, audience: str, **claims: Any) -> str:
        return self_issued(self.did, self.keys, audience, **claims)


def self_issued(did: str, pair: keyfile.KeyPair, audience: str, **claims: Any) -> str:
    """A self-issued token as a connector makes one (here by a test playing the caller)."""
    now = int(time.time())
    body = {"iss": did, "sub": did, "aud": audience, "jti": str(uuid.uuid4()), "iat": now,
            "exp": now + 60, **claims}  # fmt: skip
    return jwt.encode(
        body, pair.private, algorithm="EdDSA", headers={"kid": f"{did}#{KEY_FRAGMENT}"}
    )


def catalog_request(provider: ConnectorProcess, authorization: str) -> Reply:
    """A DSP catalog request to `provider` with the given Authorization value."""
    body = {"@context": CTX, "@type": "CatalogRequestMessage", "filter": []}
    return http(
        "POST", provider.dsp + "/catalog/request", body, headers={"Authorization": authorization}
    )


def text_of(reply: Reply) -> str:
    return json.dumps(reply.body) if not isinstance(reply.body, str) else reply.body
