"""DSP catalog paging: an EDC QuerySpec filter (offset, limit, `=` criteria) answered with a
page and the binding's `Link` headers; what we cannot honour is ignored and logged; the
federated crawler follows a member's pages, within its bounds."""

from __future__ import annotations

import base64
import json
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from connector.catalog import filters, paging
from connector.errors import BadRequest
from connector.identity import keys
from connector.identity.tokens import TokenIssuer
from connector.model.jsonld import EDC_DSPACE_CONTEXT
from connector.model.messages import CATALOG_DIGEST, DSP_CONTEXT
from connector.model.messages import CATALOG_UNCHANGED as UNCHANGED
from tests.harness import ConnectorProcess
from tests.test_federated_catalog import CRAWL, hub_for, search, static_members

EDC = "https://w3id.org/edc/v0.0.1/ns/"
IDS = ["ds-a", "ds-b", "ds-c", "ds-d", "ds-e", "ds-f", "ds-g"]
AIR = {"ds-b", "ds-e"}


class Answer:
    def __init__(self, status: int, links: list[str], body: dict[str, Any]) -> None:
        self.status, self.links, self.body = status, links, body

    def ids(self) -> list[str]:
        return [d["@id"] for d in self.body.get("dataset", [])]

    def link(self, rel: str) -> str | None:
        for value in self.links:
            for target, params in re.findall(r"<([^>]*)>([^,]*)", value):
                if f'rel="{rel}"' in params:
                    return str(target)
        return None


@pytest.fixture
def provider_and_caller(tmp_path: Path) -> Iterator[tuple[ConnectorProcess, TokenIssuer]]:
    provider = ConnectorProcess(tmp_path, "provider")
    provider.set(policy_engine="permit-all")
    provider.start()
    caller = ConnectorProcess(tmp_path, "caller").start()  # serves its DID document
    data = tmp_path / "data.csv"
    data.write_text("station,no2\nA,12\n")
    for dataset_id in reversed(IDS):  # published out of order: the catalog is in id order
        keywords = ["air"] if dataset_id in AIR else ["traffic"]
        provider.publish(data, dataset_id, title=f"Data {dataset_id}", keywords=keywords)
    issuer = TokenIssuer(caller.did, keys.load(caller.dir / "keys" / "private.pem"), 60)
    try:
        yield provider, issuer
    finally:
        caller.stop()
        provider.stop()


def ask(provider: ConnectorProcess, issuer: TokenIssuer, body: Any, url: str = "") -> Answer:
    req = urllib.request.Request(
        url or provider.dsp + "/catalog/request",
        data=json.dumps(body).encode(),
        headers={"Authorization": issuer.issue(provider.did), "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return Answer(resp.status, resp.headers.get_all("Link") or [], json.loads(resp.read()))
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, [], json.loads(exc.read()))


def edc_catalog_request(offset: int = 0, limit: int = 50, *criteria: Any) -> dict[str, Any]:
    """A CatalogRequestMessage as EDC 0.15.1 sends it: its QuerySpec compacted with its own
    context (https://w3id.org/edc/dspace/v0.0.1) after the DSP one."""
    return {
        "@context": [DSP_CONTEXT, EDC_DSPACE_CONTEXT],
        "@type": "CatalogRequestMessage",
        "filter": [
            {
                "@type": "QuerySpec",
                "offset": offset,
                "limit": limit,
                "sortOrder": "ASC",
                "filterExpression": [
                    {"@type": "Criterion", "operandLeft": left, "operator": op, "operandRight": r}
                    for left, op, r in criteria
                ],
            }
        ],
    }


def test_edc_query_spec_pages_the_catalog_with_link_headers(
    provider_and_caller: tuple[ConnectorProcess, TokenIssuer],
) -> None:
    provider, issuer = provider_and_caller
    body = edc_catalog_request(2, 3)
    page = ask(provider, issuer, body)
    assert page.status == 200 and page.body["@type"] == "Catalog", page.body
    assert page.ids() == IDS[2:5]
    nxt, prev = page.link("next"), page.link("previous")
    assert nxt and prev and nxt.startswith(provider.dsp + "/catalog/request?continuationToken=")

    last = ask(provider, issuer, body, nxt)  # the same message, to the next link
    assert last.status == 200 and last.ids() == IDS[5:7]
    assert last.link("next") is None and last.link("previous")
    assert ask(provider, issuer, body, prev).ids() == IDS[0:3]

    # walking from the start by the links gives every dataset once, in order
    walked, url, pages = [], "", 0
    while True:
        step = ask(provider, issuer, edc_catalog_request(0, 3), url)
        walked += step.ids()
        pages += 1
        url = step.link("next") or ""
        if not url:
            break
    assert (walked, pages) == (IDS, 3)

    # the whole catalog without a QuerySpec, as before: no paging
    whole = ask(provider, issuer, {"@context": [DSP_CONTEXT], "@type": "CatalogRequestMessage"})
    assert whole.ids() == IDS and whole.links == []

    bad = ask(provider, issuer, body, provider.dsp + "/catalog/request?continuationToken=x!")
    assert bad.status == 400 and bad.body["@type"] == "CatalogError"

    # what our crawler sends: a page, and IfChanged asking for the whole catalog's digest
    digest = whole.body[CATALOG_DIGEST]
    crawl = {
        "@context": [DSP_CONTEXT],
        "@type": "CatalogRequestMessage",
        "filter": [filters.query_spec(3), filters.if_changed("")],
    }
    first = ask(provider, issuer, crawl)
    assert first.ids() == IDS[:3] and first.body[CATALOG_DIGEST] == digest
    later = ask(provider, issuer, crawl, first.link("next") or "")
    assert later.ids() == IDS[3:6] and CATALOG_DIGEST not in later.body
    crawl["filter"] = [filters.query_spec(3), filters.if_changed(digest)]
    same = ask(provider, issuer, crawl)
    assert same.body[UNCHANGED] is True and same.ids() == [] and same.links == []


def test_equality_criteria_select_datasets(
    provider_and_caller: tuple[ConnectorProcess, TokenIssuer],
) -> None:
    provider, issuer = provider_and_caller
    by_id = ask(provider, issuer, edc_catalog_request(0, 50, (EDC + "id", "=", "ds-d")))
    assert by_id.status == 200 and by_id.ids() == ["ds-d"] and by_id.links == []

    # edc:-prefixed terms under the DSP context alone, on a keyword
    prefixed = {
        "@context": [DSP_CONTEXT],
        "@type": "CatalogRequestMessage",
        "filter": [
            {
                "@type": "edc:QuerySpec",
                "edc:limit": 1,
                "edc:filterExpression": [
                    {
                        "edc:operandLeft": "dcat:keyword",
                        "edc:operator": "=",
                        "edc:operandRight": "air",
                    }
                ],
            }
        ],
    }
    first = ask(provider, issuer, prefixed)
    assert first.status == 200 and first.ids() == ["ds-b"]
    second = ask(provider, issuer, prefixed, first.link("next") or "")
    assert second.ids() == ["ds-e"] and second.link("next") is None

    # absolute IRIs (the form our crawler sends), expanded by the JSON-LD processor or not
    absolute = {
        "@context": [DSP_CONTEXT],
        "@type": "CatalogRequestMessage",
        "filter": [{"@type": EDC + "QuerySpec", EDC + "offset": 5, EDC + "limit": 10}],
    }
    assert ask(provider, issuer, absolute).ids() == IDS[5:]


def test_unsupported_criterion_is_ignored_and_logged(
    provider_and_caller: tuple[ConnectorProcess, TokenIssuer],
) -> None:
    provider, issuer = provider_and_caller
    like = edc_catalog_request(0, 50, (EDC + "id", "like", "ds-a%"), (EDC + "id", "=", "ds-c"))
    answer = ask(provider, issuer, like)
    assert answer.status == 200 and answer.ids() == ["ds-c"]  # the `=` is still honoured
    unknown = edc_catalog_request(0, 4, (EDC + "color", "=", "blue"))
    answer = ask(provider, issuer, unknown)
    assert answer.status == 200 and answer.ids() == IDS[:4] and answer.link("next")
    log = provider.log_path.read_text()
    assert "ignored criterion" in log and "like" in log and "color" in log


class PagingMember:
    """TEST DOUBLE for a member that pages its catalog on its own, as EDC does (pages of 2,
    `rel="next"` and EDC's `rel="prev"`); with `loop`, its next link leads back in a circle."""

    def __init__(self, datasets: int, *, loop: bool = False, next_to: str = "") -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        double = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                double.requests.append((self.path, json.loads(self.rfile.read(length))))
                token = parse_qs(urlsplit(self.path).query).get("continuationToken", ["0"])[0]
                start = int(token)
                ids = [f"edc-{n}" for n in range(datasets)][start : start + 2]
                base = f"http://127.0.0.1:{double.port}/dsp/2025-1/catalog/request"
                links = []
                if next_to:
                    links.append(f'<{next_to}>; rel="next"')
                elif start + 2 < datasets:
                    links.append(
                        f'<{base}?continuationToken={2 if loop else start + 2}>; rel="next"'
                    )
                if start > 0:
                    links.append(f'<{base}?continuationToken={start - 2}>; rel="prev"')
                body = json.dumps(double.catalog(ids)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for link in links:
                    self.send_header("Link", link)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.dsp = f"http://127.0.0.1:{self.port}/dsp/2025-1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def catalog(self, ids: list[str]) -> dict[str, Any]:
        did = f"did:web:127.0.0.1%3A{self.port}"
        return {
            "@context": [DSP_CONTEXT],
            "@id": "urn:uuid:edc-catalog",
            "@type": "Catalog",
            "participantId": did,
            "dataset": [
                {
                    "@id": i,
                    "@type": "Dataset",
                    "dct:title": f"EDC dataset {i}",
                    "hasPolicy": [{"@id": f"offer-{i}", "@type": "Offer", "permission": []}],
                    "distribution": [{"format": "HttpData-PULL", "accessService": "x"}],
                }
                for i in ids
            ],
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_crawler_follows_catalog_pages(tmp_path: Path) -> None:
    member = PagingMember(5)
    hub = hub_for(
        tmp_path, federated_members=static_members(extra=[{"dsp": member.dsp, "name": "edc"}])
    )
    try:
        summary = hub.api.post(CRAWL)
        assert (summary["members"], summary["failed"]) == (1, 0), summary
        found = {h["datasetId"] for h in search(hub, limit="50")["hits"]}
        assert found == {f"edc-{n}" for n in range(5)}
        paths = [path for path, _ in member.requests]
        assert paths == [
            "/dsp/2025-1/catalog/request",
            "/dsp/2025-1/catalog/request?continuationToken=2",
            "/dsp/2025-1/catalog/request?continuationToken=4",
        ]
        first_filter = member.requests[0][1]["filter"]
        assert first_filter[0]["@type"] == EDC + "QuerySpec"  # first: EDC reads the first
    finally:
        hub.stop()
        member.close()


def test_crawler_stops_at_pages_that_lead_in_a_circle(tmp_path: Path) -> None:
    member = PagingMember(9, loop=True)
    hub = hub_for(
        tmp_path, federated_members=static_members(extra=[{"dsp": member.dsp, "name": "edc"}])
    )
    try:
        summary = hub.api.post(CRAWL)
        assert summary["failed"] == 1, summary
        assert "circle" in summary["results"][0]["error"]
        assert search(hub)["total"] == 0  # a catalog not read whole is not indexed
        assert len(member.requests) == 2
    finally:
        hub.stop()
        member.close()


def test_continuation_tokens_and_link_headers() -> None:
    """Only a token we could have issued names a page; EDC's and our Link forms are read."""
    page = filters.Page(offset=3, limit=2, criteria=(filters.Criterion(filters.Field.ID, "x"),))
    token = page.token(offset=5, after="ds-e")
    again = filters.from_token(token)
    assert (again.offset, again.limit, again.after, again.criteria) == (5, 2, "ds-e", page.criteria)
    forged = [
        "x!",
        base64.urlsafe_b64encode(b'{"o": -1, "l": 2}').decode(),
        base64.urlsafe_b64encode(b'{"o": 0, "l": 100000}').decode(),
        base64.urlsafe_b64encode(b'{"o": 0, "l": 2, "c": [["password", "x"]]}').decode(),
        base64.urlsafe_b64encode(b'{"o": 0, "l": 2, "a": 7}').decode(),
        "A" * 5000,
    ]
    for bad in forged:
        with pytest.raises(BadRequest):
            filters.from_token(bad)

    base = "http://127.0.0.1:1/dsp/2025-1/catalog/request"
    edc = ['<http://127.0.0.1:1/x?continuationToken=ab==>; rel="prev"', "<?t=2>; rel=next"]
    assert paging.next_link(edc, base) == "http://127.0.0.1:1/dsp/2025-1/catalog/request?t=2"
    ours = [
        f'<{base}?continuationToken=a>; rel="next", <{base}?continuationToken=b>; rel="previous"'
    ]
    assert paging.next_link(ours, base) == f"{base}?continuationToken=a"
    assert paging.next_link(['<x>; rel="previous"'], base) is None


def test_crawler_sends_no_token_to_a_next_link_elsewhere(tmp_path: Path) -> None:
    """A next link off the member's host (here another member's endpoint) gets nothing: the
    token is addressed to the member, and the page is not read."""
    elsewhere = PagingMember(2)
    target = f"http://localhost:{elsewhere.port}/dsp/2025-1/catalog/request"
    member = PagingMember(4, next_to=target)
    hub = hub_for(
        tmp_path, federated_members=static_members(extra=[{"dsp": member.dsp, "name": "edc"}])
    )
    try:
        summary = hub.api.post(CRAWL)
        assert summary["failed"] == 1 and "no token was sent" in summary["results"][0]["error"]
        assert elsewhere.requests == [] and len(member.requests) == 1
        assert search(hub)["total"] == 0
    finally:
        hub.stop()
        member.close()
        elsewhere.close()
