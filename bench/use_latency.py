"""Use API latency and deletion punctuality between two real connectors on loopback.

Delivers a small file under an agreement with a purpose constraint, a `log` duty (so every
use record is also reported to the provider) and a `delete` duty, then times N sequential
uses through the consumer's use API (policy decision at phase use, signed use record, the
file streamed back), next to N plain reads of the same file from disk as a baseline. Then it
waits for the deletion and reports how long after the first use the copy was deleted
(deadline = first use + delayPeriod, rounded up to the second) and when the provider had the
verified receipt.

    .venv/bin/python bench/use_latency.py [-n 200] [--delay PT2S]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.percentile import pct
from connector.model.usage import parse_time
from tests.harness import ConnectorProcess, negotiate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--delay", default="PT2S")
    parser.add_argument("--size", type=int, default=64 * 1024)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        payload = root / "payload.bin"
        payload.write_bytes(os.urandom(args.size))
        provider = ConnectorProcess(root, "provider").start()
        consumer = ConnectorProcess(root, "consumer").start()
        try:
            offer = {
                "permission": [
                    {
                        "action": "use",
                        "constraint": [
                            {"leftOperand": "purpose", "operator": "isAnyOf",
                             "rightOperand": ["research"]},
                        ],
                        "duty": [
                            {"action": "log"},
                            {"action": "delete", "constraint": [
                                {"leftOperand": "delayPeriod", "operator": "eq",
                                 "rightOperand": "P1D"}]},
                        ],
                    }
                ]
            }  # fmt: skip
            provider.publish(payload, offers=[offer])
            agreement_id = negotiate(consumer, provider, "ds-1", purpose="research")
            tp = consumer.api.post("/api/v1/transfers", {"agreementId": agreement_id})
            done = consumer.api.wait_state("transfers", tp["id"], {"COMPLETED"}, 30)
            url = (
                f"http://127.0.0.1:{consumer.management_port}/api/v1/agreements/"
                f"{agreement_id}/data?purpose=research"
            )
            key = str(consumer.settings["api_key"])
            uses, reads = [], []
            for _ in range(args.n):
                t0 = time.perf_counter()
                req = urllib.request.Request(url, headers={"X-Api-Key": key})
                with urllib.request.urlopen(req, timeout=30) as resp:
                    assert len(resp.read()) == args.size
                uses.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                assert len(Path(done["path"]).read_bytes()) == args.size
                reads.append(time.perf_counter() - t0)
            ms = [u * 1000 for u in uses]
            print(f"{args.n} uses of {args.size} bytes (decision + signed record + stream):")
            print(f"  p50 {statistics.median(ms):.2f} ms, p90 {pct(ms, 0.9):.2f} ms,"
                  f" p99 {pct(ms, 0.99):.2f} ms; plain file read p50"
                  f" {statistics.median(reads) * 1e6:.0f} us")  # fmt: skip
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                reported = consumer.api.get(f"/api/v1/agreements/{agreement_id}/uses")
                if all(u["reported_at"] for u in reported["uses"]):
                    break
                time.sleep(0.05)
            theirs = provider.api.get(f"/api/v1/agreements/{agreement_id}/uses")["count"]
            print(f"  use records at the provider, each signature checked: {theirs}/{args.n}")
        finally:
            consumer.stop()
            provider.stop()

        # punctuality: a fresh pair, one use, the deletion `--delay` later
        provider = ConnectorProcess(root, "provider2").start()
        consumer = ConnectorProcess(root, "consumer2").start()
        try:
            offer["permission"][0]["duty"][1]["constraint"][0]["rightOperand"] = args.delay
            provider.publish(payload, offers=[offer])
            agreement_id = negotiate(consumer, provider, "ds-1", purpose="research")
            tp = consumer.api.post("/api/v1/transfers", {"agreementId": agreement_id})
            done = consumer.api.wait_state("transfers", tp["id"], {"COMPLETED"}, 30)
            url = (
                f"http://127.0.0.1:{consumer.management_port}/api/v1/agreements/"
                f"{agreement_id}/data?purpose=research"
            )
            key = str(consumer.settings["api_key"])
            req = urllib.request.Request(url, headers={"X-Api-Key": key})
            with urllib.request.urlopen(req, timeout=30) as resp:
                resp.read()
            used = consumer.api.get(f"/api/v1/agreements/{agreement_id}/uses")["uses"][0]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                theirs = provider.api.get(f"/api/v1/deletions/{done['provider_pid']}")
                if theirs["state"] == "fulfilled":
                    break
                time.sleep(0.02)
            received_at = time.time()
            used_at = parse_time(used["record"]["at"])
            deleted_at = parse_time(theirs["receipt"]["deleted_at"])
            print(f"deletion with delayPeriod {args.delay}: deleted"
                  f" {deleted_at - used_at:.2f} s after the first use (deadline"
                  f" {theirs['receipt']['deadline']}); receipt verified at the provider"
                  f" {received_at - deleted_at:.2f} s after the deletion")  # fmt: skip
        finally:
            consumer.stop()
            provider.stop()


if __name__ == "__main__":
    main()
