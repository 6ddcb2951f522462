"""DSP messages in another JSON-LD form that means the same (expanded, or with EDC's extra
context) are accepted as the compact DSP form; a context we do not ship is refused, never
fetched."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from connector.model.jsonld import EDC_DSPACE_CONTEXT
from connector.model.messages import DSP_CONTEXT
from tests.harness import ConnectorProcess
from tests.test_bad_input import assert_dsp_error, cn_request, dsp

DSPACE = "https://w3id.org/dspace/2025/1/"
ODRL = "http://www.w3.org/ns/odrl/2/"


def expanded_request(consumer: ConnectorProcess, consumer_pid: str) -> dict[str, Any]:
    """The ContractRequestMessage of `cn_request` in expanded JSON-LD: no @context at all."""
    return {
        "@type": [DSPACE + "ContractRequestMessage"],
        DSPACE + "consumerPid": [{"@id": consumer_pid}],
        DSPACE + "callbackAddress": [{"@value": consumer.dsp}],
        DSPACE + "offer": [
            {
                "@id": "ds-1:offer:1",
                "@type": [ODRL + "Offer"],
                ODRL + "target": [{"@id": "ds-1"}],
                ODRL + "permission": [{ODRL + "action": [{"@id": ODRL + "use"}]}],
            }
        ],
    }


def edc_request(consumer: ConnectorProcess, consumer_pid: str) -> dict[str, Any]:
    """As EDC 0.15.1 sends it: its own context after the DSP one, single values unwrapped."""
    body = cn_request(consumer, consumer_pid)
    body["@context"] = [DSP_CONTEXT, EDC_DSPACE_CONTEXT]
    body["offer"] = {**body["offer"], "permission": {"action": "use"}}
    return body


class ContextServer:
    """Serves a JSON-LD context and counts every request it gets (it must get none)."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                body = b'{"@context": {"@vocab": "https://w3id.org/dspace/2025/1/"}}'
                self.send_response(200)
                self.send_header("Content-Type", "application/ld+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/context.jsonld"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def context_server() -> Iterator[ContextServer]:
    server = ContextServer()
    yield server
    server.close()


def test_expanded_and_edc_forms_are_accepted_as_the_compact_one(
    provider: ConnectorProcess, consumer: ConnectorProcess, payload: Path
) -> None:
    provider.publish(payload)
    forms = {
        "urn:uuid:c-compact": cn_request(consumer, "urn:uuid:c-compact"),
        "urn:uuid:c-expanded": expanded_request(consumer, "urn:uuid:c-expanded"),
        "urn:uuid:c-edc": edc_request(consumer, "urn:uuid:c-edc"),
    }
    for consumer_pid, body in forms.items():
        reply = dsp(consumer, provider, "POST", "/negotiations/request", body)
        assert reply.status == 201, reply
        assert reply.body["@type"] == "ContractNegotiation", reply
        assert reply.body["@context"] == [DSP_CONTEXT]  # we answer in the compact DSP form
        assert reply.body["consumerPid"] == consumer_pid
        assert reply.body["state"] in ("REQUESTED", "OFFERED", "AGREED", "TERMINATED")

    stored = {n["consumer_pid"]: n for n in provider.api.get("/api/v1/negotiations")}
    assert set(stored) == set(forms)
    compact = stored["urn:uuid:c-compact"]
    for consumer_pid in ("urn:uuid:c-expanded", "urn:uuid:c-edc"):
        same = stored[consumer_pid]
        assert same["dataset_id"] == compact["dataset_id"] == "ds-1"
        assert same["offer"] == compact["offer"], (same["offer"], compact["offer"])


def test_unknown_remote_context_is_refused_and_never_fetched(
    provider: ConnectorProcess,
    consumer: ConnectorProcess,
    payload: Path,
    context_server: ContextServer,
) -> None:
    provider.publish(payload)
    body = cn_request(consumer, "urn:uuid:c-remote")
    body["@context"] = [DSP_CONTEXT, context_server.url]
    reply = dsp(consumer, provider, "POST", "/negotiations/request", body)
    assert_dsp_error(reply, 400, "ContractNegotiationError", context_server.url, "never fetched")

    catalog = {"@context": [context_server.url], "@type": "CatalogRequestMessage"}
    reply = dsp(consumer, provider, "POST", "/catalog/request", catalog)
    assert_dsp_error(reply, 400, "CatalogError", context_server.url)

    assert context_server.requests == []
    assert provider.api.get("/api/v1/negotiations") == []
