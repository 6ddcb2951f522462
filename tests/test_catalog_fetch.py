"""Our consumer's `POST /api/v1/catalog/request` returns a provider's whole catalog: pages asked
by QuerySpec and followed by offset when the provider (as EDC) pages without `Link` headers, or
by `rel="next"` when it sends them; a provider that ignores the QuerySpec is asked once more, not
forever; a caller's own querySpec gets exactly that page."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from connector.catalog.fetch import PAGE_SIZE
from connector.model.messages import DSP_CONTEXT
from tests.harness import ConnectorProcess

EDC = "https://w3id.org/edc/v0.0.1/ns/"


def spec_of(message: dict[str, Any]) -> dict[str, Any]:
    for element in message.get("filter") or []:
        if isinstance(element, dict) and element.get("@type") in (EDC + "QuerySpec", "QuerySpec"):
            return element
    return {}


class OffsetMember:
    """TEST DOUBLE for a provider that pages by the QuerySpec's offset and limit and sends no
    `Link` header (as an EDC 0.15.1 provider answers), or, with `ignores_spec`, answers every
    request with its first full page."""

    def __init__(self, datasets: int, *, ignores_spec: bool = False) -> None:
        self.asked: list[tuple[int, int]] = []
        double = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                spec = spec_of(json.loads(self.rfile.read(length)))
                offset = int(spec.get(EDC + "offset", spec.get("offset", 0)))
                limit = int(spec.get(EDC + "limit", spec.get("limit", 50)))
                double.asked.append((offset, limit))
                if ignores_spec:
                    offset, limit = 0, PAGE_SIZE
                ids = [f"edc-{n:05d}" for n in range(datasets)][offset : offset + limit]
                body = json.dumps(double.catalog(ids)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.dsp = f"http://127.0.0.1:{self.port}/protocol/2025-1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def catalog(self, ids: list[str]) -> dict[str, Any]:
        return {
            "@context": [DSP_CONTEXT],
            "@id": "urn:uuid:edc-catalog",
            "@type": "Catalog",
            "participantId": f"did:web:127.0.0.1%3A{self.port}",
            "dataset": [{"@id": i, "@type": "Dataset", "hasPolicy": []} for i in ids],
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def consumer(tmp_path: Path) -> Iterator[ConnectorProcess]:
    node = ConnectorProcess(tmp_path, "consumer").start()
    try:
        yield node
    finally:
        node.stop()


def ids_of(catalog: dict[str, Any]) -> list[str]:
    return [d["@id"] for d in catalog["dataset"]]


def test_pages_without_link_headers_are_followed_by_offset(consumer: ConnectorProcess) -> None:
    total = PAGE_SIZE * 2 + 7
    member = OffsetMember(total)
    try:
        catalog = consumer.api.post("/api/v1/catalog/request", {"counterPartyAddress": member.dsp})
        assert ids_of(catalog) == [f"edc-{n:05d}" for n in range(total)]
        assert member.asked == [(0, PAGE_SIZE), (PAGE_SIZE, PAGE_SIZE), (2 * PAGE_SIZE, PAGE_SIZE)]
    finally:
        member.close()


def test_a_provider_ignoring_the_query_spec_is_not_asked_forever(
    consumer: ConnectorProcess,
) -> None:
    member = OffsetMember(PAGE_SIZE * 3, ignores_spec=True)
    try:
        catalog = consumer.api.post("/api/v1/catalog/request", {"counterPartyAddress": member.dsp})
        assert ids_of(catalog) == [f"edc-{n:05d}" for n in range(PAGE_SIZE)]
        # the second page brought nothing new: the walk ends there
        assert member.asked == [(0, PAGE_SIZE), (PAGE_SIZE, PAGE_SIZE)]
    finally:
        member.close()


def test_a_query_spec_of_the_caller_gets_that_page(consumer: ConnectorProcess) -> None:
    member = OffsetMember(300)
    try:
        spec = {"@type": EDC + "QuerySpec", EDC + "offset": 120, EDC + "limit": 30}
        catalog = consumer.api.post(
            "/api/v1/catalog/request", {"counterPartyAddress": member.dsp, "querySpec": spec}
        )
        assert ids_of(catalog) == [f"edc-{n:05d}" for n in range(120, 150)]
        assert member.asked == [(120, 30)]
    finally:
        member.close()


def test_our_provider_answers_a_page_and_the_whole_catalog(
    tmp_path: Path, consumer: ConnectorProcess
) -> None:
    """Against our own provider: the caller's querySpec page, and every dataset without one."""
    provider = ConnectorProcess(tmp_path, "provider")
    provider.set(policy_engine="permit-all")
    provider.start()
    try:
        data = tmp_path / "data.csv"
        data.write_text("a,b\n1,2\n")
        for n in range(3):
            provider.publish(data, f"ds-{n}")
        spec = {"@type": EDC + "QuerySpec", EDC + "offset": 1, EDC + "limit": 1}
        one = consumer.api.post(
            "/api/v1/catalog/request", {"counterPartyAddress": provider.dsp, "querySpec": spec}
        )
        assert ids_of(one) == ["ds-1"]
        whole = consumer.api.post("/api/v1/catalog/request", {"counterPartyAddress": provider.dsp})
        assert ids_of(whole) == ["ds-0", "ds-1", "ds-2"]
    finally:
        provider.stop()
