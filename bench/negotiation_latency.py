"""Negotiation latency: request to FINALIZED between two real connectors on loopback.

Starts a provider and a consumer (separate processes, real keys and SQLite files),
runs N sequential negotiations and reports the median and tail, taken from the
consumer's own timeline (negotiation created -> FINALIZED event received). As a
baseline measured in the same run it times the same number of sequential HTTP
round trips (four: request, agreement, verification, finalized) against a bare
aiohttp server, so the ratio shows what identity, signatures, persistence and the
state machine cost on top of raw HTTP.

    .venv/bin/python bench/negotiation_latency.py [-n 100]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.percentile import pct
from tests.harness import ConnectorProcess

ROUND_TRIPS = 4


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


async def raw_baseline(n: int) -> list[float]:
    async def echo(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response(body, status=200)

    app = web.Application()
    app.router.add_post("/m", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    out = []
    async with aiohttp.ClientSession() as session:
        for _ in range(n):
            t0 = time.perf_counter()
            for _ in range(ROUND_TRIPS):
                async with session.post(f"http://127.0.0.1:{port}/m", json={"x": 1}) as r:
                    await r.read()
            out.append(time.perf_counter() - t0)
    await runner.cleanup()
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-neg-") as tmp:
        root = Path(tmp)
        data = root / "data.bin"
        data.write_bytes(b"x" * 1024)
        provider = ConnectorProcess(root, "provider").start()
        consumer = ConnectorProcess(root, "consumer").start()
        try:
            provider.publish(data, "bench-ds")
            catalog = consumer.api.post(
                "/api/v1/catalog/request", {"counterPartyAddress": provider.dsp}
            )
            offer = catalog["dataset"][0]["hasPolicy"][0]
            internal, wall = [], []
            for _ in range(args.n):
                t0 = time.perf_counter()
                neg = consumer.api.post(
                    "/api/v1/negotiations",
                    {"counterPartyAddress": provider.dsp, "datasetId": "bench-ds", "offer": offer},
                )
                done = consumer.api.wait_state("negotiations", neg["id"], {"FINALIZED"}, 30)
                wall.append(time.perf_counter() - t0)
                view = consumer.api.get(f"/api/v1/negotiations/{done['id']}")
                finalized = next(e for e in view["timeline"] if e["state"] == "FINALIZED")
                internal.append(_ts(finalized["at"]) - _ts(view["created_at"]))
        finally:
            consumer.stop()
            provider.stop()
    base = asyncio.run(raw_baseline(args.n))
    med, base_med = statistics.median(internal), statistics.median(base)
    print(f"negotiations: {args.n} sequential, request -> FINALIZED, two processes on loopback")
    print(
        f"  connector   median {med * 1000:.1f} ms  p90 {pct(internal, 0.9) * 1000:.1f} ms"
        f"  p99 {pct(internal, 0.99) * 1000:.1f} ms"
    )
    print(f"  via API     median {statistics.median(wall) * 1000:.1f} ms (incl. polling)")
    print(f"  raw aiohttp median {base_med * 1000:.2f} ms for {ROUND_TRIPS} round trips")
    print(f"  ratio       {med / base_med:.1f}x raw HTTP; Eclipse EDC's published median: 3800 ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
