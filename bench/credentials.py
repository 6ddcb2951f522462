"""What membership verification costs a DSP request: catalog requests from a member to a
provider that requires a verified membership credential, against the same provider that asks
for none (the baseline, measured in the same run).

Three providers (separate processes) serve the same one-dataset catalog: `plain` (no
trusted issuers), `cached` (trusted authority, claims reused for 30 s, the default) and
`fresh` (credential_cache_seconds = 0: every request asks the member's credential service for
a presentation, checks the presentation, both credentials and the authority's status list).
The member's catalog requests go through its management API, as an operator's would.

    .venv/bin/python bench/credentials.py [-n 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.percentile import pct
from tests.harness import ConnectorProcess, wait_for


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-vc-") as tmp:
        root = Path(tmp)
        data = root / "data.bin"
        data.write_bytes(b"x" * 1024)
        authority = ConnectorProcess(root, "authority", extra_init=("--authority",)).start()
        nodes = [authority]
        try:
            trust = ("--trusted-issuer", authority.did, "--require-membership")
            providers = {
                "plain": ConnectorProcess(root, "plain"),
                "cached": ConnectorProcess(root, "cached", extra_init=trust),
                "fresh": ConnectorProcess(root, "fresh", extra_init=trust),
            }
            providers["fresh"].set(credential_cache_seconds="0")
            for p in providers.values():
                nodes.append(p.start())
                p.publish(data, "ds")
            member = ConnectorProcess(root, "member")
            authority.api.post(
                "/api/v1/authority/participants",
                {"id": member.did, "name": "member", "organisation": "Member AG",
                 "roles": ["research"], "dspEndpoint": member.dsp},
            )  # fmt: skip
            member.set(issuer_url=authority.base_url)
            nodes.append(member.start())
            wait_for("credentials", lambda: member.api.get("/api/v1/credentials"))
            results: dict[str, list[float]] = {}
            for name, provider in providers.items():
                body = {"counterPartyAddress": provider.dsp}
                for _ in range(20):  # warm-up: connections, DID documents
                    member.api.post("/api/v1/catalog/request", body)
                samples = []
                for _ in range(args.n):
                    t0 = time.perf_counter()
                    member.api.post("/api/v1/catalog/request", body)
                    samples.append((time.perf_counter() - t0) * 1000)
                results[name] = samples
            base = statistics.median(results["plain"])
            print(f"catalog request through the member's management API, n={args.n} each")
            for name, samples in results.items():
                p50 = statistics.median(samples)
                print(
                    f"  {name:7s} p50 {p50:6.2f} ms  p99 {pct(samples, 0.99):6.2f} ms"
                    f"  ({p50 / base:.2f}x plain)"
                )
        finally:
            for node in nodes:
                node.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
