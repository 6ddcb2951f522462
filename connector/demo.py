"""`make demo`: two real connectors on loopback go from an offer to verified bytes.

Run with `python -m connector.demo`. Exits 0 on success; on any failure it prints the
reason (with the process timeline) and exits 1.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

from connector.mgmt_client import ApiError, ManagementClient
from connector.ports import free_port

PAYLOAD_BYTES = 32 * 1024 * 1024


class DemoFailure(Exception):
    pass


class Node:
    def __init__(self, root: Path, name: str) -> None:
        self.name = name
        self.dir = root / name
        public, management = free_port(), free_port()
        done = subprocess.run(
            [sys.executable, "-m", "connector", "init", "--dir", str(self.dir), "--name", name,
             "--public-port", str(public), "--management-port", str(management), "--dev"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise DemoFailure(f"connector init for {name} failed: {done.stderr.strip()}")
        self.did = done.stdout.split("DID:")[-1].strip()
        self.config = self.dir / "connector.toml"
        settings = tomllib.loads(self.config.read_text())
        self.dsp = f"{settings['public_url']}/dsp/2025-1"
        self.api = ManagementClient(f"http://127.0.0.1:{management}", settings["api_key"])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log = (self.dir / "serve.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "connector", "--config", str(self.config), "serve"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                tail = (self.dir / "serve.log").read_text()[-1500:]
                raise DemoFailure(f"{self.name} exited at start-up:\n{tail}")
            try:
                self.api.get("/api/v1/datasets")
                return
            except ApiError:
                time.sleep(0.05)
        raise DemoFailure(f"{self.name} did not answer within {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _states(record: dict[str, Any]) -> list[str]:
    seen: list[str] = []
    for entry in record.get("timeline", []):
        state = entry.get("state")
        if state and (not seen or seen[-1] != state):
            seen.append(state)
    if not seen or seen[-1] != record["state"]:
        seen.append(record["state"])
    return seen


def _explain(node: Node, kind: str, pid: str | None) -> str:
    if not pid:
        return ""
    try:
        record = node.api.get(f"/api/v1/{kind}/{pid}")
    except ApiError:
        return ""
    lines = [f"{node.name} {kind[:-1]} {pid}: {record['state']}"]
    lines += [
        f"  {e['direction']:<8} {e['message_type']} {e.get('status') or ''} {e.get('detail') or ''}"
        for e in record.get("timeline", [])
    ]
    return "\n".join(lines)


def run(root: Path) -> dict[str, Any]:
    t0 = time.monotonic()
    provider, consumer = Node(root, "provider"), Node(root, "consumer")
    nodes = [provider, consumer]
    neg_id = tp_id = None
    try:
        for node in nodes:
            node.start()
        for node in nodes:
            node.wait_ready()
        print(f"provider {provider.did}\nconsumer {consumer.did}")

        data = provider.dir / "city-traffic.bin"
        with data.open("wb") as fh:
            for _ in range(PAYLOAD_BYTES // (1024 * 1024)):
                fh.write(os.urandom(1024 * 1024))
        dataset = provider.api.post(
            "/api/v1/datasets",
            {
                "id": "urn:demo:traffic-counts",
                "title": "Traffic counts (demo)",
                "source": {"type": "file", "path": str(data)},
                "offers": [{"permission": [{"action": "use"}]}],
            },
        )
        print(f"published {dataset['id']} ({dataset['size']} bytes)")

        t_neg = time.monotonic()
        catalog = consumer.api.post(
            "/api/v1/catalog/request", {"counterPartyAddress": provider.dsp}
        )
        entry = next(d for d in catalog.get("dataset", []) if d["@id"] == dataset["id"])
        neg = consumer.api.post(
            "/api/v1/negotiations",
            {
                "counterPartyAddress": provider.dsp,
                "datasetId": dataset["id"],
                "offer": entry["hasPolicy"][0],
            },
        )
        neg_id = neg["id"]
        done = consumer.api.wait_state("negotiations", neg_id, {"FINALIZED"}, timeout=30)
        neg_seconds = time.monotonic() - t_neg
        neg_view = consumer.api.get(f"/api/v1/negotiations/{neg_id}")
        agreement = consumer.api.get(f"/api/v1/agreements/{done['agreement_id']}")
        if agreement["verification"] != {"provider": "valid", "consumer": "valid"}:
            raise DemoFailure(f"agreement signatures: {agreement['verification']}")

        t_tp = time.monotonic()
        tp = consumer.api.post(
            "/api/v1/transfers", {"agreementId": done["agreement_id"], "format": "HttpData-PULL"}
        )
        tp_id = tp["id"]
        moved = consumer.api.wait_state("transfers", tp_id, {"COMPLETED"}, timeout=60)
        tp_seconds = time.monotonic() - t_tp
        tp_view = consumer.api.get(f"/api/v1/transfers/{tp_id}")

        received = hashlib.sha256(Path(moved["path"]).read_bytes()).hexdigest()
        if not (received == moved["sha256"] == dataset["sha256"]):
            raise DemoFailure(
                f"SHA-256 mismatch: provider {dataset['sha256']}, consumer recorded "
                f"{moved['sha256']}, file {received}"
            )
        return {
            "negotiation": _states(neg_view),
            "negotiation_s": neg_seconds,
            "agreement": agreement["id"],
            "transfer": _states(tp_view),
            "transfer_s": tp_seconds,
            "bytes": moved["bytes"],
            "sha256": received,
            "total_s": time.monotonic() - t0,
        }
    except (ApiError, StopIteration) as exc:
        context = (
            _explain(consumer, "negotiations", neg_id)
            + "\n"
            + _explain(consumer, "transfers", tp_id)
        )
        raise DemoFailure(f"{exc}\n{context.strip()}") from exc
    finally:
        for node in nodes:
            node.stop()


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="connector-demo-") as tmp:
        try:
            result = run(Path(tmp))
        except DemoFailure as exc:
            print(f"demo FAILED: {exc}", file=sys.stderr)
            return 1
    mib = result["bytes"] / (1024 * 1024)
    print()
    print("demo OK")
    neg_ms, tp_ms = result["negotiation_s"] * 1000, result["transfer_s"] * 1000
    print(f"  negotiation  {' -> '.join(result['negotiation'])}  ({neg_ms:.0f} ms)")
    print(f"  agreement    {result['agreement']}  signed by provider and consumer, both valid")
    print(f"  transfer     {' -> '.join(result['transfer'])}  (HttpData-PULL, {tp_ms:.0f} ms)")
    print(
        f"  bytes        {result['bytes']} ({mib:.1f} MiB), {mib / result['transfer_s']:.0f} MiB/s"
    )
    print(f"  sha256       {result['sha256']}  (provider = consumer)")
    print(f"  total        {result['total_s']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
