"""Federated catalog: crawl N real connectors with D datasets each, then search the index.

Starts N provider connectors (separate processes, real keys, the embedded Rego engine deciding
every offer at catalog phase) and one crawler connector with `federated_catalog = true`.
Each provider's datasets are written into its SQLite store with the connector's own store code
before it starts (the management API would take minutes for 50,000 datasets); what is measured
is the real connector serving its real DSP catalog.

Measured: the full crawl (POST /federated-catalog/crawl), a re-crawl with nothing changed, a
re-crawl after one dataset changed, and search latency (p50/p99 over the management API) for
each filter kind over the whole index. Baselines in the same run: (a) raw aiohttp fetching the
same N catalog documents from a bare server (transport + JSON, no identity, policy or index),
(b) the providers answering N catalog requests directly (their render time, no indexing).

    OPA_BIN=.tools/bin/opa .venv/bin/python bench/federated_catalog.py [-n 50] [-d 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.percentile import pct
from connector.identity import keys
from connector.identity.tokens import TokenIssuer
from connector.model.messages import CATALOG_DIGEST
from connector.model.records import Dataset
from connector.store.sqlite import SqliteStore
from tests.harness import ConnectorProcess

THEMES = ["mobility", "environment", "energy", "health", "economy", "education", "tourism"]
WORDS = ["traffic", "air", "noise", "parking", "water", "solar", "bus", "waste", "budget", "bike"]
POLICIES: list[list[dict[str, Any]]] = [
    [{"action": "use"}],
    [
        {
            "action": "use",
            "constraint": [
                {
                    "leftOperand": "purpose",
                    "operator": "isAnyOf",
                    "rightOperand": ["research", "planning"],
                }
            ],
        }
    ],
    [
        {
            "action": "use",
            "constraint": [{"leftOperand": "count", "operator": "lteq", "rightOperand": 10}],
        }
    ],
]


def seed(node: ConnectorProcess, member: int, count: int) -> None:
    store = SqliteStore(node.dir / "connector.db")
    with store.transaction():
        for i in range(count):
            word = WORDS[(member + i) % len(WORDS)]
            theme = THEMES[i % len(THEMES)]
            store.put_dataset(
                Dataset(
                    id=f"urn:city:{member}:{i}",
                    title=f"{word.title()} data {i} of member {member}",
                    description=f"Hourly {word} measurements for district {i % 40}",
                    keywords=[word, f"district-{i % 40}"],
                    themes=[theme],
                    source={"type": "http", "url": f"http://127.0.0.1:9/{i}"},
                    offers=[
                        {
                            "@id": f"urn:city:{member}:{i}:offer:1",
                            "@type": "Offer",
                            "permission": POLICIES[i % len(POLICIES)],
                        }
                    ],
                )
            )
    store.close()


def launch(node: ConnectorProcess) -> None:
    log = node.log_path.open("ab")
    node.proc = subprocess.Popen(
        [sys.executable, "-m", "connector", "--config", str(node.config), "serve"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **node.env},
    )


def wait_ready(nodes: list[ConnectorProcess], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    pending = list(nodes)
    while pending and time.monotonic() < deadline:
        for node in list(pending):
            assert node.proc is not None
            if node.proc.poll() is not None:
                raise RuntimeError(f"{node.name} exited: {node.log_path.read_text()[-2000:]}")
            try:
                node.api.get("/api/v1/datasets?limit=1")
                pending.remove(node)
            except Exception:
                pass
        time.sleep(0.2)
    if pending:
        raise RuntimeError(f"{len(pending)} connectors not ready")


async def direct_catalogs(hub: ConnectorProcess, providers: list[ConnectorProcess]) -> float:
    """Baseline (b): the providers answer the crawler's catalog request, nothing indexed."""
    issuer = TokenIssuer(hub.did, keys.load(hub.dir / "keys" / "private.pem"), 120)
    body = {
        "@context": ["https://w3id.org/dspace/2025/1/context.jsonld"],
        "@type": "CatalogRequestMessage",
    }
    limit = asyncio.Semaphore(16)
    async with aiohttp.ClientSession() as session:

        async def one(p: ConnectorProcess) -> None:
            async with limit:
                headers = {"Authorization": issuer.issue(p.did)}
                async with session.post(
                    p.dsp + "/catalog/request", json=body, headers=headers
                ) as r:
                    assert r.status == 200, await r.text()
                    await r.json()

        t0 = time.perf_counter()
        await asyncio.gather(*(one(p) for p in providers))
        return time.perf_counter() - t0


async def raw_fetch(documents: list[bytes]) -> float:
    """Baseline (a): a bare aiohttp server hands out the same catalog documents."""

    async def serve(request: web.Request) -> web.Response:
        return web.Response(
            body=documents[int(request.match_info["n"])], content_type="application/json"
        )

    app = web.Application()
    app.router.add_post("/{n}", serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    limit = asyncio.Semaphore(16)
    async with aiohttp.ClientSession() as session:

        async def one(n: int) -> None:
            async with limit, session.post(f"http://127.0.0.1:{port}/{n}", json={}) as r:
                await r.json()

        t0 = time.perf_counter()
        await asyncio.gather(*(one(n) for n in range(len(documents))))
        elapsed = time.perf_counter() - t0
    await runner.cleanup()
    return elapsed


def crawl(hub: ConnectorProcess) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    summary: dict[str, Any] = hub.api.post("/api/v1/federated-catalog/crawl")
    return time.perf_counter() - t0, summary


def search_latency(hub: ConnectorProcess, params: list[dict[str, str]]) -> list[float]:
    out = []
    for p in params:
        t0 = time.perf_counter()
        hub.api.get("/api/v1/federated-catalog/datasets?" + urlencode(p))
        out.append(time.perf_counter() - t0)
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=50, help="provider connectors")
    parser.add_argument("-d", type=int, default=1000, help="datasets per provider")
    parser.add_argument("--queries", type=int, default=200, help="searches per filter kind")
    parser.add_argument("--start-batch", type=int, default=4, help="connectors started at once")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-fedcat-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        providers = [ConnectorProcess(root, f"member-{n:02d}") for n in range(args.n)]
        for n, node in enumerate(providers):
            seed(node, n, args.d)
        hub = ConnectorProcess(root, "hub")
        members = [{"dsp": p.dsp, "name": p.name} for p in providers]
        hub.set(
            federated_catalog="true",
            federated_crawl_seconds="0",
            federated_members=json.dumps(members),
        )
        everyone = [*providers, hub]
        try:
            # a few at a time: each start compiles the policies and runs their unit tests
            for n in range(0, len(everyone), args.start_batch):
                batch = everyone[n : n + args.start_batch]
                for node in batch:
                    launch(node)
                wait_ready(batch)
            print(
                f"started {args.n} providers with {args.d} datasets each and a crawler"
                f" in {time.perf_counter() - t0:.0f} s"
            )
            full_s, full = crawl(hub)
            assert full["failed"] == 0, full
            assert full["datasets"] == args.n * args.d, full["datasets"]
            same_s, same = crawl(hub)
            assert same["unchanged"] == args.n, same
            first = providers[0]
            first.api.call("DELETE", "/api/v1/datasets/urn:city:0:0")
            first.api.post(
                "/api/v1/datasets",
                {
                    "id": "urn:city:0:0",
                    "title": "Bus stops, revised",
                    "keywords": ["bus"],
                    "themes": ["mobility"],
                    "source": {"type": "http", "url": "http://127.0.0.1:9/"},
                },
            )
            one_s, one = crawl(hub)
            assert one["changed"] == 1 and one["unchanged"] == args.n - 1, one

            direct_s = asyncio.run(direct_catalogs(hub, providers))
            documents = []
            issuer = TokenIssuer(hub.did, keys.load(hub.dir / "keys" / "private.pem"), 120)
            import urllib.request

            for p in providers:
                req = urllib.request.Request(
                    p.dsp + "/catalog/request",
                    data=json.dumps(
                        {
                            "@context": ["https://w3id.org/dspace/2025/1/context.jsonld"],
                            "@type": "CatalogRequestMessage",
                        }
                    ).encode(),
                    headers={
                        "Authorization": issuer.issue(p.did),
                        "Content-Type": "application/json",
                    },
                )
                with urllib.request.urlopen(req, timeout=60) as resp:
                    documents.append(resp.read())
            size = sum(len(d) for d in documents)
            assert CATALOG_DIGEST in json.loads(documents[0])
            raw_s = asyncio.run(raw_fetch(documents))

            q = args.queries
            kinds = {
                "q (keyword)": [{"q": WORDS[i % len(WORDS)]} for i in range(q)],
                "q (2 words)": [{"q": f"{WORDS[i % len(WORDS)]} district"} for i in range(q)],
                "theme": [{"theme": THEMES[i % len(THEMES)]} for i in range(q)],
                "publisher": [{"publisher": providers[i % args.n].name} for i in range(q)],
                "publisher DID": [{"publisher": providers[i % args.n].did} for i in range(q)],
                "classification": [{"classification": "general"} for _ in range(q)],
                "all four": [
                    {
                        "q": WORDS[i % len(WORDS)],
                        "theme": THEMES[i % len(THEMES)],
                        "publisher": providers[i % args.n].name,
                        "classification": "general",
                    }
                    for i in range(q)
                ],
                "deep page": [{"theme": "mobility", "offset": "5000"} for _ in range(q)],
                # a word in every dataset: above the ranking limit, listed in index order
                "q (all match)": [{"q": "district"} for _ in range(q)],
                "q all, deep": [{"q": "district", "offset": "5000"} for _ in range(q)],
            }
            search_latency(hub, kinds["q (keyword)"][:20])  # warm up
            latencies = {k: search_latency(hub, v) for k, v in kinds.items()}
        finally:
            for node in everyone:
                if node.proc is not None:
                    node.stop()
    total = args.n * args.d
    print(f"federated catalog: {args.n} connectors x {args.d} datasets = {total} on loopback")
    print(f"  full crawl            {full_s:7.2f} s  (server {full['durationMs'] / 1000:.2f} s)")
    print(f"  re-crawl, unchanged   {same_s:7.2f} s")
    print(f"  re-crawl, 1 changed   {one_s:7.2f} s")
    print(
        f"  baseline (a) raw aiohttp fetch of the same {args.n} documents"
        f" ({size / 1e6:.1f} MB): {raw_s:.2f} s -> full crawl is {full_s / raw_s:.1f}x"
    )
    print(
        f"  baseline (b) providers render the {args.n} catalogs, nothing indexed:"
        f" {direct_s:.2f} s -> full crawl is {full_s / direct_s:.2f}x"
    )
    print("  search over the management API (ms):")
    for kind, values in latencies.items():
        p50, p99 = pct(values, 0.5) * 1000, pct(values, 0.99) * 1000
        print(f"    {kind:<16} p50 {p50:6.2f}  p99 {p99:6.2f}")
    ok = full_s < 60 and all(pct(v, 0.99) < 0.05 for v in latencies.values())
    print(f"  goal (crawl < 60 s, search < 50 ms): {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
