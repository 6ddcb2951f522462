"""Concurrency: N negotiations at once, then N small pulls at once, between two real
connectors on loopback, against a raw aiohttp baseline measured in the same run.

Every negotiation is started through the consumer's management API at the same moment and
counted done when the consumer's record is FINALIZED; then one pull per agreement, all at
once, counted done when COMPLETED. Latency is from the request sent to the record's last
update (its `updated_at`), so polling adds nothing to it; throughput is N over the time from
the first request to the last record done. The baseline: N concurrent exchanges of four JSON
round trips (a negotiation's four messages) between an aiohttp client and a bare aiohttp
server in another process.

Goals (issue 15): >= 250 negotiations/s, p99 <= 1.5 s for N = 200; transfers/s and peak RSS
reported.

    .venv/bin/python bench/concurrency.py [-n 200] [--store sqlite|postgres]
        [--provider-replicas 2 (with --store postgres)] [--transfer-kib 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    ROUND_TRIPS,
    STORES,
    Deployment,
    deployment,
    first_offer,
    peak_rss_mb,
    raw_exchanges,
    ts,
)
from bench.percentile import pct
from tests.harness import ConnectorProcess

POLL = 0.1  # seconds between two looks at the consumer's records (latency does not depend on it)


@dataclass
class Phase:
    """N processes started at once: each one's latency, the wall time, how they ended."""

    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    ended: dict[str, str] = field(default_factory=dict)  # id -> final state
    records: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def line(self, what: str, done: str, n: int) -> str:
        if not self.latencies:
            return f"  {what:<14} none {done}"
        return (
            f"  {what:<14} {self.rate:7.1f}/s  ({self.seconds:.2f} s)  p50"
            f" {statistics.median(self.latencies):.2f} s  p99 {pct(self.latencies, 0.99):.2f} s"
            f"  {done} {len(self.latencies)}/{n}"
        )


class Management:
    """The consumer's management API over one aiohttp session (many calls at once)."""

    def __init__(self, node: ConnectorProcess, session: aiohttp.ClientSession) -> None:
        self.base = f"http://127.0.0.1:{node.management_port}/api/v1"
        self.headers = {"X-Api-Key": str(node.settings["api_key"])}
        self.session = session

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        async with self.session.request(
            method, self.base + path, json=body, headers=self.headers
        ) as resp:
            data = await resp.json(content_type=None)
            if resp.status >= 400:
                raise RuntimeError(f"{method} {path}: HTTP {resp.status}: {data}")
            return data

    async def records(self, kind: str) -> dict[str, dict[str, Any]]:
        """Every record of `kind` (negotiations, transfers), page by page."""
        out: dict[str, dict[str, Any]] = {}
        offset = 0
        while True:
            page = await self.call("GET", f"/{kind}?limit=1000&offset={offset}")
            out.update({r["id"]: r for r in page})
            if len(page) < 1000:
                return out
            offset += 1000


async def run_phase(
    api: Management, kind: str, bodies: list[dict[str, Any]], done: set[str], timeout: float
) -> Phase:
    """POST every body to /{kind} at once; wait until each record is in a state of `done`
    or has ended otherwise (TERMINATED)."""
    phase = Phase()
    sent: dict[str, float] = {}

    async def start(body: dict[str, Any]) -> None:
        t0 = time.time()
        record = await api.call("POST", f"/{kind}", body)
        sent[record["id"]] = t0

    first = time.time()
    records: dict[str, dict[str, Any]] = {}
    ended: dict[str, dict[str, Any]] = {}
    await asyncio.gather(*(start(b) for b in bodies))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = await api.records(kind)
        over = done | {"TERMINATED"}
        ended = {pid: r for pid, r in records.items() if pid in sent and r["state"] in over}
        if len(ended) == len(sent):
            break
        await asyncio.sleep(POLL)
    phase.records = {pid: records[pid] for pid in sent}
    phase.ended = {pid: r["state"] for pid, r in ended.items()}
    finished = [r for pid, r in ended.items() if r["state"] in done]
    phase.latencies = [ts(r["updated_at"]) - sent[r["id"]] for r in finished]
    if finished:
        phase.seconds = max(ts(r["updated_at"]) for r in finished) - first
    return phase


async def measure(nodes: Deployment, n: int, timeout: float) -> tuple[Phase, Phase]:
    provider = nodes.provider
    offer = first_offer(nodes.consumer, provider, "bench-ds")
    connector = aiohttp.TCPConnector(limit=0)
    timeouts = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=timeouts) as session:
        api = Management(nodes.consumer, session)
        body = {"counterPartyAddress": provider.dsp, "datasetId": "bench-ds", "offer": offer}
        negotiations = await run_phase(api, "negotiations", [body] * n, {"FINALIZED"}, timeout)
        agreements = [
            r["agreement_id"] for r in negotiations.records.values() if r["state"] == "FINALIZED"
        ]
        pulls = [{"agreementId": a, "format": "HttpData-PULL"} for a in agreements]
        transfers = await run_phase(api, "transfers", pulls, {"COMPLETED"}, timeout)
    return negotiations, transfers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=200, help="negotiations (and transfers) at once")
    parser.add_argument("--store", choices=STORES, default="sqlite")
    parser.add_argument("--provider-replicas", type=int, default=1)
    parser.add_argument("--transfer-kib", type=int, default=16, help="size of each pull")
    parser.add_argument("--timeout", type=float, default=120.0, help="per phase, seconds")
    args = parser.parse_args()
    if args.provider_replicas > 1 and args.store != "postgres":
        parser.error("provider replicas share one PostgreSQL database: add --store postgres")
    with tempfile.TemporaryDirectory(prefix="bench-conc-", dir=os.environ.get("TMPDIR")) as tmp:
        root = Path(tmp)
        data = root / "data.bin"
        data.write_bytes(os.urandom(args.transfer_kib * 1024))
        with deployment(root, args.store, args.provider_replicas) as nodes:
            nodes.provider.publish(data, "bench-ds")
            negotiations, transfers = asyncio.run(measure(nodes, args.n, args.timeout))
            rss = [(node.name, peak_rss_mb(node)) for node in nodes.nodes]
            described = nodes.describe()
    raw, raw_seconds = asyncio.run(raw_exchanges(args.n, concurrent=True))
    raw_rate = args.n / raw_seconds

    n = args.n
    print(f"concurrency: {n} negotiations at once, then {len(transfers.ended) or n} pulls of"
          f" {args.transfer_kib} KiB at once; {described}")  # fmt: skip
    print(f"  (shared machine, {os.cpu_count()} cores: compare figures of one run only)")
    print(negotiations.line("negotiations", "finalized", n))
    print(transfers.line("transfers", "completed", len(negotiations.latencies)))
    print(f"  {'raw aiohttp':<14} {raw_rate:7.1f}/s  ({raw_seconds:.2f} s)  p50"
          f" {statistics.median(raw):.3f} s  p99 {pct(raw, 0.99):.3f} s  ({n} exchanges of"
          f" {ROUND_TRIPS} round trips at once, server in its own process)")  # fmt: skip
    if negotiations.latencies:
        p50 = statistics.median(negotiations.latencies)
        print(f"  ratio          negotiations/s {negotiations.rate / raw_rate:.1%} of raw;"
              f" p50 {p50 / statistics.median(raw):.1f}x raw")  # fmt: skip
    print("  peak RSS       " + ", ".join(f"{name} {mb:.0f} MB" for name, mb in rss))
    failed = [f"{pid}: {state}" for phase in (negotiations, transfers)
              for pid, state in phase.ended.items() if state == "TERMINATED"]  # fmt: skip
    missing = (n - len(negotiations.ended)) + (len(negotiations.latencies) - len(transfers.ended))
    if failed or missing:
        print(f"  NOT ALL DONE: {len(failed)} terminated, {missing} unfinished after"
              f" {args.timeout:.0f} s " + "; ".join(failed[:5]))  # fmt: skip
    ok = (
        negotiations.rate >= 250
        and bool(negotiations.latencies)
        and pct(negotiations.latencies, 0.99) <= 1.5
    )
    print(f"  goals (>= 250 negotiations/s, p99 <= 1.5 s): {'met' if ok else 'MISSED'}")
    return 1 if failed or missing else 0


if __name__ == "__main__":
    sys.exit(main())
