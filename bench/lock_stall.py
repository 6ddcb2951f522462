"""Lock stall: how long liveness and management reads take while ANOTHER process holds the
connector's SQLite write lock.

A consumer and a provider (real processes, SQLite files) negotiate and transfer once, so
there are records to read; then a separate python process opens the consumer's database and
holds `BEGIN IMMEDIATE` for `--hold` seconds (as an operator's sqlite3 shell or a backup tool
might) while this script issues, back to back, reads that need no write: GET /healthz, list
and get negotiations, get a transfer, list datasets and agreements. The same reads without
the lock, just before, are the reference.

Goal (issue 15): with the lock held for 10 s, every such read answers within 100 ms.

    .venv/bin/python bench/lock_stall.py [--hold 10] [--side consumer|provider]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import deployment
from bench.percentile import pct
from tests.harness import negotiate
from tests.test_store_lock import WriteLockHolder, get, reads

GOAL = 0.1  # seconds


def sample(
    urls: dict[str, str], key: str, until: float, holder: WriteLockHolder | None
) -> dict[str, list[float]]:
    """Each read, round after round, until `until` (or the holder lets go)."""
    out: dict[str, list[float]] = {name: [] for name in urls}
    while time.monotonic() < until and (holder is None or holder.holding):
        for name, url in urls.items():
            status, seconds = get(url, None if name == "GET /healthz" else key)
            if status != 200:
                raise RuntimeError(f"{name}: HTTP {status}")
            out[name].append(seconds)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hold", type=float, default=10.0, help="seconds the lock is held")
    parser.add_argument("--side", choices=["consumer", "provider"], default="consumer")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-lock-", dir=os.environ.get("TMPDIR")) as tmp:
        root = Path(tmp)
        data = root / "data.bin"
        data.write_bytes(os.urandom(64 * 1024))
        with deployment(root) as nodes:
            consumer, provider = nodes.consumer, nodes.provider
            provider.publish(data, "bench-ds")
            agreement = negotiate(consumer, provider, "bench-ds")
            tp = consumer.api.post(
                "/api/v1/transfers", {"agreementId": agreement, "format": "HttpData-PULL"}
            )
            done = consumer.api.wait_state("transfers", tp["id"], {"COMPLETED"}, 30)
            node = consumer if args.side == "consumer" else provider
            negotiation_id = node.api.get("/api/v1/negotiations")[0]["id"]
            transfer_id = done["id"] if node is consumer else str(done["provider_pid"])
            urls = reads(node, negotiation_id, transfer_id)
            key = str(node.settings["api_key"])
            free = sample(urls, key, time.monotonic() + 2, None)
            holder = WriteLockHolder(node.dir / "connector.db", deadline=args.hold)
            held_from = time.monotonic()
            try:
                locked = sample(urls, key, held_from + args.hold, holder)
            finally:
                holder.release()
            held_for = time.monotonic() - held_from

    print(f"lock stall: another process holds the {args.side}'s SQLite write lock for"
          f" {args.hold:g} s (held {held_for:.1f} s); reads back to back, one at a"
          " time")  # fmt: skip
    print("  (shared machine: compare figures of one run only)")
    print(f"  {'read':<24} {'n':>5} {'p99':>9} {'max':>9}   {'unlocked p99':>12}")
    worst = 0.0
    for name, times in locked.items():
        if not times:
            print(f"  {name:<24} {0:>5}   (no answer while the lock was held)")
            worst = float("inf")
            continue
        worst = max(worst, max(times))
        print(f"  {name:<24} {len(times):>5} {pct(times, 0.99) * 1000:7.1f}ms"
              f" {max(times) * 1000:7.1f}ms   {pct(free[name], 0.99) * 1000:10.1f}ms")  # fmt: skip
    everything = [t for times in locked.values() for t in times] or [float("inf")]
    print(f"  all reads: {len(everything)}, p99 {pct(everything, 0.99) * 1000:.1f} ms,"
          f" max {worst * 1000:.1f} ms")  # fmt: skip
    print(
        f"  goal (every read within {GOAL * 1000:.0f} ms): {'met' if worst <= GOAL else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
