"""The federated catalog: a crawler connector indexes other real connectors' DSP catalogs."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from connector.identity import keys
from connector.identity.tokens import TokenIssuer
from connector.mgmt_client import ApiError
from connector.ports import free_port
from tests.harness import ConnectorProcess, cli, wait_for

SEARCH = "/api/v1/federated-catalog/datasets"
CRAWL = "/api/v1/federated-catalog/crawl"
MEMBERS = "/api/v1/federated-catalog/members"


def hub_for(root: Path, **settings: str) -> ConnectorProcess:
    hub = ConnectorProcess(root, "hub")
    hub.set(federated_catalog="true", federated_crawl_seconds="0", **settings)
    return hub.start()


def static_members(*nodes: ConnectorProcess, extra: list[dict[str, str]] | None = None) -> str:
    entries = [{"dsp": n.dsp, "name": n.name} for n in nodes] + (extra or [])
    return json.dumps(entries)


def search(hub: ConnectorProcess, **params: str) -> dict[str, Any]:
    result: dict[str, Any] = hub.api.get(f"{SEARCH}?{urlencode(params)}")
    return result


def ids(result: dict[str, Any]) -> set[tuple[str, str]]:
    return {(h["member"]["name"], h["datasetId"]) for h in result["hits"]}


def add(node: ConnectorProcess, data: Path, dataset_id: str, **extra: Any) -> None:
    node.publish(data, dataset_id, **extra)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data.csv"
    path.write_text("station,no2\nA,12\n")
    return path


@pytest.fixture
def members(tmp_path: Path) -> Iterator[tuple[ConnectorProcess, ConnectorProcess]]:
    """Two members: `environment` (the Rego library) and `mobility` (permit-all, so its
    important data is visible to callers without credentials)."""
    env = ConnectorProcess(tmp_path, "environment").start()
    mob = ConnectorProcess(tmp_path, "mobility")
    mob.set(policy_engine="permit-all")
    mob.start()
    yield env, mob
    env.stop()
    mob.stop()


def test_published_dataset_appears_changes_and_disappears(
    tmp_path: Path, members: tuple[ConnectorProcess, ConnectorProcess], data: Path
) -> None:
    env, mob = members
    hub = hub_for(tmp_path, federated_members=static_members(env, mob))
    try:
        first = hub.api.post(CRAWL)
        assert (first["members"], first["failed"]) == (2, 0)
        assert search(hub)["total"] == 0

        add(env, data, "air-2026", title="Air quality 2026", keywords=["no2", "air"])
        assert search(hub, q="air")["total"] == 0  # not before the next crawl
        second = hub.api.post(CRAWL)
        by_name = {r["name"]: r for r in second["results"]}
        assert by_name["environment"]["result"] == "changed"
        assert by_name["environment"]["added"] == 1
        assert by_name["mobility"]["result"] == "unchanged"  # its digest still matches
        [hit] = search(hub, q="air")["hits"]
        assert hit["datasetId"] == "air-2026"
        assert hit["title"] == "Air quality 2026"
        assert hit["member"] == {"id": env.did, "name": "environment", "dspEndpoint": env.dsp}

        # nothing changed: nothing re-indexed
        third = hub.api.post(CRAWL)
        assert (third["changed"], third["unchanged"]) == (0, 2)

        env.api.call("DELETE", "/api/v1/datasets/air-2026")
        add(env, data, "air-2026", title="Air quality 2026, revised", keywords=["pm10"])
        fourth = hub.api.post(CRAWL)
        result = {r["name"]: r for r in fourth["results"]}["environment"]
        assert (result["changed"], result["added"], result["removed"]) == (1, 0, 0)
        [hit] = search(hub, q="pm10")["hits"]
        assert hit["title"] == "Air quality 2026, revised"
        assert search(hub, q="no2")["total"] == 0

        env.api.call("DELETE", "/api/v1/datasets/air-2026")
        fifth = hub.api.post(CRAWL)
        assert {r["name"]: r for r in fifth["results"]}["environment"]["removed"] == 1
        assert search(hub)["total"] == 0
        status = {m["name"]: m for m in hub.api.get(MEMBERS)["members"]}
        assert status["environment"]["datasets"] == 0
        assert status["environment"]["lastSuccessAt"] is not None
    finally:
        hub.stop()


def test_search_by_keyword_theme_publisher_and_classification(
    tmp_path: Path, members: tuple[ConnectorProcess, ConnectorProcess], data: Path
) -> None:
    env, mob = members
    add(env, data, "air", title="Air quality", description="NO2 hourly", keywords=["no2"],
        themes=["environment"])  # fmt: skip
    add(env, data, "noise", title="Noise map", keywords=["noise"], themes=["environment"])
    add(env, data, "core-env", title="Sensor keys", classification="core")
    add(mob, data, "traffic", title="Traffic counts", keywords=["cars"], themes=["mobility"])
    add(mob, data, "parking", title="Parking", keywords=["cars"], themes=["mobility"],
        classification="important")  # fmt: skip
    hub = hub_for(tmp_path, federated_members=static_members(env, mob))
    try:
        hub.api.post(CRAWL)
        assert ids(search(hub)) == {
            ("environment", "air"),
            ("environment", "noise"),
            ("mobility", "traffic"),
            ("mobility", "parking"),
        }  # the core dataset is never offered outside its owner, so never crawled
        assert ids(search(hub, q="cars")) == {("mobility", "traffic"), ("mobility", "parking")}
        assert ids(search(hub, q="hourly")) == {("environment", "air")}
        assert ids(search(hub, q="poll")) == set()
        assert ids(search(hub, theme="Environment")) == {
            ("environment", "air"),
            ("environment", "noise"),
        }
        assert ids(search(hub, publisher=mob.did)) == {
            ("mobility", "traffic"),
            ("mobility", "parking"),
        }
        assert ids(search(hub, publisher="environment")) == {
            ("environment", "air"),
            ("environment", "noise"),
        }
        assert ids(search(hub, classification="important")) == {("mobility", "parking")}
        assert ids(search(hub, classification="core")) == set()
        assert ids(search(hub, q="cars", theme="mobility", classification="general")) == {
            ("mobility", "traffic")
        }
        page = search(hub, limit="1", offset="1", theme="environment")
        assert (page["total"], len(page["hits"])) == (2, 1)

        # a hit carries what a negotiation needs: the member's endpoint and the offer
        [hit] = search(hub, q="noise")["hits"]
        assert hit["offers"][0]["@type"] == "Offer"
        neg = hub.api.post(
            "/api/v1/negotiations",
            {
                "counterPartyAddress": hit["member"]["dspEndpoint"],
                "counterPartyId": hit["member"]["id"],
                "datasetId": hit["datasetId"],
                "offer": hit["offers"][0],
            },
        )
        done = hub.api.wait_state("negotiations", neg["id"], {"FINALIZED"}, timeout=30)
        assert done["dataset_id"] == "noise"
    finally:
        hub.stop()


def test_unreachable_member_is_reported_and_others_are_crawled(
    tmp_path: Path, members: tuple[ConnectorProcess, ConnectorProcess], data: Path
) -> None:
    env, mob = members
    add(mob, data, "traffic", title="Traffic counts")
    gone = f"http://127.0.0.1:{free_port()}/dsp/2025-1"
    extra = [{"dsp": gone, "name": "gone"}]
    hub = hub_for(tmp_path, federated_members=static_members(env, mob, extra=extra))
    try:
        summary = hub.api.post(CRAWL)
        assert (summary["members"], summary["failed"]) == (3, 1)
        failed = {r["name"]: r for r in summary["results"]}["gone"]
        assert failed["result"] == "failed" and gone in failed["error"]
        assert ids(search(hub)) == {("mobility", "traffic")}
        status = {m["name"]: m for m in hub.api.get(MEMBERS)["members"]}
        assert status["gone"]["lastResult"] == "failed"
        assert "failed" in status["gone"]["lastError"]
        assert status["gone"]["lastSuccessAt"] is None
        assert status["mobility"]["lastError"] is None and status["mobility"]["datasets"] == 1
    finally:
        hub.stop()


class AuthorityRegistryDouble:
    """TEST DOUBLE for the data space authority's participant registry (built elsewhere):
    serves `{"participants": [...]}` and records the Authorization header of each request."""

    def __init__(self) -> None:
        self.participants: list[dict[str, Any]] = []
        self.tokens: list[str] = []
        double = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                double.tokens.append(self.headers.get("Authorization", ""))
                body = json.dumps({"participants": double.participants}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/participants"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * 4))
    return claims


def test_registry_members_only_active_ones_are_crawled(
    tmp_path: Path, members: tuple[ConnectorProcess, ConnectorProcess], data: Path
) -> None:
    env, mob = members
    add(env, data, "air", title="Air quality")
    add(mob, data, "traffic", title="Traffic counts")
    registry = AuthorityRegistryDouble()

    def entry(node: ConnectorProcess, status: str) -> dict[str, Any]:
        return {
            "id": node.did,
            "name": node.name,
            "dspEndpoint": node.dsp,
            "status": status,
            "attributes": {"organisation": node.name, "role": "provider", "region": "EU"},
        }

    registry.participants = [entry(env, "active"), entry(mob, "revoked")]
    hub = hub_for(tmp_path, registry_url=registry.url, registry_did="did:web:authority.test")
    try:
        summary = hub.api.post(CRAWL)
        assert summary["sourceErrors"] == []
        assert ids(search(hub)) == {("environment", "air")}
        claims = _claims(registry.tokens[-1])
        assert claims["iss"] == hub.did and claims["aud"] == "did:web:authority.test"
        [status] = hub.api.get(MEMBERS)["members"]
        assert status["attributes"]["region"] == "EU" and status["source"] == "registry"

        registry.participants = [entry(env, "revoked"), entry(mob, "active")]
        summary = hub.api.post(CRAWL)
        assert summary["removedMembers"] == [env.did]
        assert ids(search(hub)) == {("mobility", "traffic")}
        assert [m["id"] for m in hub.api.get(MEMBERS)["members"]] == [mob.did]
    finally:
        hub.stop()
        registry.close()


def test_bad_search_parameters_are_problem_documents(tmp_path: Path) -> None:
    hub = hub_for(tmp_path, federated_members=json.dumps([{"dsp": "http://127.0.0.1:9/dsp"}]))
    plain = ConnectorProcess(tmp_path, "plain").start()
    try:
        for query, expected in [
            ("limit=abc", "limit must be an integer"),
            ("limit=0", "limit must be 1..200"),
            ("offset=-1", "offset must be 0..1000000"),
            ("classification=secret", "classification must be one of general, important, core"),
            ("q=%21%21", "q has no word to search for"),
            ("theme=", "theme must not be empty"),
            ("them=x", "unknown parameter 'them'"),
            ("q=a&q=b", "q is given more than once"),
        ]:
            with pytest.raises(ApiError) as err:
                hub.api.get(f"{SEARCH}?{query}")
            assert err.value.status == 400, query
            assert expected in err.value.errors, (query, err.value.errors)
        with pytest.raises(ApiError) as err:
            plain.api.get(SEARCH)
        assert err.value.status == 404 and "federated_catalog = true" in err.value.detail
    finally:
        hub.stop()
        plain.stop()


def test_catalog_digest_filter_on_the_dsp_endpoint(
    tmp_path: Path, members: tuple[ConnectorProcess, ConnectorProcess], data: Path
) -> None:
    """Our IfChanged filter: a matching digest gets a short "unchanged" catalog; a filter
    element we do not know is ignored."""
    env, _ = members
    add(env, data, "air", title="Air quality", themes=["environment"])
    caller = ConnectorProcess(tmp_path, "caller").start()  # serves its DID document
    issuer = TokenIssuer(caller.did, keys.load(caller.dir / "keys" / "private.pem"), 60)

    def ask(filters: list[Any] | None) -> tuple[int, dict[str, Any]]:
        import urllib.error
        import urllib.request

        body: dict[str, Any] = {
            "@context": ["https://w3id.org/dspace/2025/1/context.jsonld"],
            "@type": "CatalogRequestMessage",
        }
        if filters is not None:
            body["filter"] = filters
        req = urllib.request.Request(
            env.dsp + "/catalog/request",
            data=json.dumps(body).encode(),
            headers={"Authorization": issuer.issue(env.did), "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    ns = "https://w3id.org/tdsc/v1/"
    try:
        _check_digest_filter(ask, env.did, ns)
    finally:
        caller.stop()


def _check_digest_filter(ask: Any, did: str, ns: str) -> None:
    status, full = ask(None)
    assert status == 200 and full["dataset"][0]["dcat:theme"] == ["environment"]
    assert full["dct:publisher"]["@id"] == did
    digest = full[ns + "catalogDigest"]
    status, same = ask([{"@type": ns + "IfChanged", ns + "catalogDigest": digest}])
    assert status == 200 and same[ns + "unchanged"] is True and "dataset" not in same
    status, other = ask([{"@type": ns + "IfChanged", ns + "catalogDigest": "sha256:00"}])
    assert status == 200 and other[ns + "catalogDigest"] == digest and other["dataset"]
    # a filter element we cannot honour is left out (and logged), not refused
    status, ignored = ask([{"@type": "SomethingElse"}])
    assert status == 200 and ignored[ns + "catalogDigest"] == digest and ignored["dataset"]


def test_periodic_crawl_picks_up_a_new_dataset(
    tmp_path: Path, members: tuple[ConnectorProcess, ConnectorProcess], data: Path
) -> None:
    env, _ = members
    hub = ConnectorProcess(tmp_path, "hub")
    hub.set(
        federated_catalog="true",
        federated_crawl_seconds="0.5",
        federated_members=static_members(env),
    )
    hub.start()
    try:
        add(env, data, "air", title="Air quality")
        wait_for("the periodic crawl to index air", lambda: search(hub, q="air")["total"] == 1)
    finally:
        hub.stop()


def test_cli_crawl_and_search(
    tmp_path: Path, members: tuple[ConnectorProcess, ConnectorProcess], data: Path
) -> None:
    env, mob = members
    published = cli(
        "--config", str(mob.config), "datasets", "add", "--id", "traffic", "--title",
        "Traffic counts", "--file", str(data), "--keyword", "cars", "--theme", "mobility",
    )  # fmt: skip
    assert published.returncode == 0, published.stderr
    assert json.loads(published.stdout)["themes"] == ["mobility"]
    hub = hub_for(tmp_path, federated_members=static_members(env, mob))
    try:
        crawled = cli("--config", str(hub.config), "catalog", "crawl")
        assert crawled.returncode == 0, crawled.stderr
        assert "2 members" in crawled.stdout and "0 failed" in crawled.stdout
        found = cli("--config", str(hub.config), "catalog", "search", "cars", "--theme", "mobility")
        assert found.returncode == 0, found.stderr
        assert "traffic" in found.stdout and mob.dsp in found.stdout
        bad = cli("--config", str(hub.config), "catalog", "search", "--limit", "0")
        assert bad.returncode != 0 and "limit must be 1..200" in bad.stderr
    finally:
        hub.stop()
