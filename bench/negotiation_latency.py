"""Negotiation latency: request to FINALIZED between two real connectors on loopback.

Starts a provider and a consumer (separate processes, real keys and SQLite files),
runs N sequential negotiations and reports the median and tail, taken from the
consumer's own timeline (negotiation created -> FINALIZED event received). As a
baseline measured in the same run it times the same number of sequential HTTP
round trips (four: request, agreement, verification, finalized) against a bare
aiohttp server in its own process (as each connector is), so the ratio shows what
identity, signatures, persistence and the state machine cost on top of raw HTTP.

Goal (issue 15): p50 at most 8 ms with SQLite's synchronous=FULL (the store's setting).

    .venv/bin/python bench/negotiation_latency.py [-n 100] [--store sqlite|postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROUND_TRIPS, STORES, deployment, first_offer, raw_exchanges, ts
from bench.percentile import pct


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=100)
    parser.add_argument("--store", choices=STORES, default="sqlite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-neg-", dir=os.environ.get("TMPDIR")) as tmp:
        root = Path(tmp)
        data = root / "data.bin"
        data.write_bytes(b"x" * 1024)
        with deployment(root, args.store) as nodes:
            consumer, provider = nodes.consumer, nodes.provider
            provider.publish(data, "bench-ds")
            offer = first_offer(consumer, provider, "bench-ds")
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
                internal.append(ts(finalized["at"]) - ts(view["created_at"]))
            described = nodes.describe()
    base, _ = asyncio.run(raw_exchanges(args.n, concurrent=False))
    med, base_med = statistics.median(internal), statistics.median(base)
    print(f"negotiations: {args.n} sequential, request -> FINALIZED; {described}")
    print("  (shared machine: compare figures of one run only)")
    print(
        f"  connector   p50 {med * 1000:.1f} ms  p90 {pct(internal, 0.9) * 1000:.1f} ms"
        f"  p99 {pct(internal, 0.99) * 1000:.1f} ms"
    )
    print(f"  via API     p50 {statistics.median(wall) * 1000:.1f} ms (incl. polling)")
    print(f"  raw aiohttp p50 {base_med * 1000:.2f} ms for {ROUND_TRIPS} round trips"
          " (server in its own process)")  # fmt: skip
    print(f"  ratio       {med / base_med:.1f}x raw HTTP; Eclipse EDC's published median: 3800 ms")
    print(f"  goal (p50 <= 8 ms): {'met' if med <= 0.008 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
