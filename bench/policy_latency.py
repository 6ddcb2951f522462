"""Policy decision latency per engine: embedded (OPA-compiled Wasm in wasmtime) vs an OPA server
(sidecar) on loopback, and rego-cpp (PyPI regopy) for comparison when it is installed.

The connector's engines load the shipped library (policies/) through their own classes and
decide the same representative input (purpose, volume, time window, delete duty). Goals from
the issue: embedded p50 <= 200 us, OPA sidecar p50 <= 2 ms.

    .venv/bin/python bench/policy_latency.py [-n 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connector.policy.decision import DecisionInput, Party, Phase  # noqa: E402
from connector.policy.engines import (  # noqa: E402
    ENTRYPOINT,
    EmbeddedEngine,
    Engine,
    OpaServerEngine,
    PolicyBundle,
)
from connector.policy.odrl import normalise  # noqa: E402

OFFER = {
    "permission": [
        {
            "action": "use",
            "constraint": [
                {"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": ["research"]},
                {
                    "leftOperand": "https://w3id.org/tdsc/v1/volumeBytes",
                    "operator": "lteq",
                    "rightOperand": 1_000_000_000,
                },
                {
                    "leftOperand": "dateTime",
                    "operator": "lt",
                    "rightOperand": "2099-01-01T00:00:00Z",
                },
            ],
            "duty": [
                {
                    "action": "delete",
                    "constraint": [
                        {"leftOperand": "delayPeriod", "operator": "eq", "rightOperand": "P30D"}
                    ],
                }
            ],
        }
    ]
}


def decision_input() -> dict[str, Any]:
    data = DecisionInput(
        phase=Phase.TRANSFER,
        provider=Party(id="did:web:provider"),
        consumer=Party(id="did:web:consumer"),
        dataset={"id": "urn:ds", "classification": "general", "owner": "did:web:provider"},
        policy=OFFER,
        request={"purpose": "research", "bytes": 0, "records": 0},
        usage={"bytes": 10_000, "records": 0, "transfers": 1, "uses": 0,
               "agreed_at": "2026-11-01T00:00:00Z", "first_use": None},
    ).model_dump(mode="json")  # fmt: skip
    data["policy"] = normalise(OFFER)
    return data


class RegoCpp:
    """rego-cpp through regopy, prepared entrypoint: the other in-process engine we measured."""

    name = "regopy"

    async def load(self, bundle: PolicyBundle) -> None:
        from regopy import Interpreter

        self.interpreter = Interpreter()
        for name, text in bundle.modules.items():
            self.interpreter.add_module(name, text)
        self.prepared = self.interpreter.build(None, [ENTRYPOINT])

    async def evaluate(self, decision_input: dict[str, Any]) -> dict[str, Any]:
        import json

        from regopy import Input

        self.interpreter.set_input(Input(decision_input))
        out = self.interpreter.query_bundle_entrypoint(self.prepared, ENTRYPOINT)
        return dict(json.loads(str(out))["expressions"][0])

    async def close(self) -> None:
        return None


async def measure(engine: Engine, n: int) -> list[float]:
    await engine.load(PolicyBundle.load(ROOT / "policies"))
    data = decision_input()
    first = await engine.evaluate(data)
    assert first.get("allow") is True, first
    for _ in range(min(200, n)):
        await engine.evaluate(data)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await engine.evaluate(data)
        out.append(time.perf_counter() - t0)
    await engine.close()
    return out


def opa_binary() -> str:
    path = os.environ.get("OPA_BIN") or str(ROOT / ".tools" / "bin" / "opa")
    if not Path(path).exists():
        sys.exit("no opa binary: run `make opa` or set OPA_BIN")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def report(name: str, values: list[float]) -> float:
    ordered = sorted(values)
    p50 = statistics.median(ordered)
    p99 = ordered[int(0.99 * (len(ordered) - 1))]
    print(f"  {name:<10} p50 {p50 * 1e6:8.1f} us   p99 {p99 * 1e6:8.1f} us   n={len(values)}")
    return p50


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=5000)
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen(
        [
            opa_binary(),
            *("run", "--server", "--disable-telemetry"),
            *("--addr", f"127.0.0.1:{port}", "--log-level", "error"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        embedded = asyncio.run(measure(EmbeddedEngine(opa_binary()), args.n))
        sidecar = asyncio.run(measure(OpaServerEngine(f"http://127.0.0.1:{port}"), args.n))
        try:
            import regopy  # noqa: F401

            rego_cpp = asyncio.run(measure(RegoCpp(), max(20, args.n // 50)))
        except ImportError:
            rego_cpp = []
    finally:
        server.terminate()
        server.wait(10)
    print("policy decision latency (transfer phase, purpose + volume + window + delete duty)")
    e50 = report("embedded", embedded)
    s50 = report("opa-server", sidecar)
    if rego_cpp:
        r50 = report("regopy", rego_cpp)
        print(f"  embedded: {r50 / e50:.0f}x faster than rego-cpp, {s50 / e50:.0f}x than OPA")
    print(f"  goals: embedded p50 <= 200 us: {'met' if e50 <= 200e-6 else 'MISSED'};"
          f" OPA sidecar p50 <= 2 ms: {'met' if s50 <= 2e-3 else 'MISSED'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
