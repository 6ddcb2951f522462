"""`make demo`: two real connectors on loopback, from an offer to a sold, metered, billed and
deleted dataset: a wrong purpose refused with its reason, a negotiation and an intact pull, a
pull cut at the agreed volume, the metering chain verified offline, an invoice, and the copy
deleted with a signed receipt the provider verifies. Each finding is one summary line.

Run with `python -m connector.demo`. Exits 0 when every line holds; else 1, with the reason
(and the process timeline when a step failed outright).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from pathlib import Path
from typing import Any

from connector.metering.verify import key_document, read_chain, verify_chain
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
        self.public = str(settings["public_url"])
        self.dsp = f"{self.public}/dsp/2025-1"
        self.api = ManagementClient(f"http://127.0.0.1:{management}", settings["api_key"])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log = (self.dir / "serve.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "connector", "--config", str(self.config), "serve"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
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


TDSC = "https://w3id.org/tdsc/v1/"
RESEARCH = {"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": ["research"]}
CAP_BYTES = 8 * 1024 * 1024
DELETE_AFTER = "PT2S"


def _price(amount: float, unit: str) -> dict[str, Any]:
    return {
        "action": "compensate",
        "constraint": [
            {"leftOperand": "payAmount", "operator": "eq", "rightOperand": amount},
            {"leftOperand": "unit", "operator": "eq", "rightOperand": TDSC + unit},
            {"leftOperand": TDSC + "currency", "operator": "eq", "rightOperand": "EUR"},
        ],
    }


# research only, 2.00 EUR per GB + 0.05 EUR per transfer, delete 2 s after delivery
SOLD_OFFER = {
    "permission": [
        {
            "action": "use",
            "constraint": [RESEARCH],
            "duty": [
                _price(2.0, "perGB"),
                _price(0.05, "perTransfer"),
                {
                    "action": "delete",
                    "constraint": [
                        {
                            "leftOperand": "delayPeriod",
                            "operator": "eq",
                            "rightOperand": DELETE_AFTER,
                        }
                    ],
                },
            ],
        }
    ]
}
# at most 8 MiB per transfer
CAPPED_OFFER = {
    "permission": [
        {
            "action": "use",
            "constraint": [
                {
                    "leftOperand": TDSC + "transferBytes",
                    "operator": "lteq",
                    "rightOperand": CAP_BYTES,
                }
            ],
        }
    ]
}


class Summary:
    """The demo's findings: each one line, each a claim the run checked."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, bool, str]] = []

    def add(self, label: str, ok: bool, text: str) -> None:
        self.lines.append((label, ok, text))

    @property
    def ok(self) -> bool:
        return all(ok for _, ok, _ in self.lines)


def _did_document(node: Node, where: Path) -> Path:
    with urllib.request.urlopen(node.public + "/.well-known/did.json", timeout=10) as resp:
        where.write_bytes(resp.read())
    return where


def _negotiate(
    consumer: Node, provider: Node, dataset_id: str, purpose: str | None
) -> dict[str, Any]:
    catalog = consumer.api.post("/api/v1/catalog/request", {"counterPartyAddress": provider.dsp})
    entry = next(d for d in catalog.get("dataset", []) if d["@id"] == dataset_id)
    body: dict[str, Any] = {
        "counterPartyAddress": provider.dsp,
        "datasetId": dataset_id,
        "offer": entry["hasPolicy"][0],
    }
    if purpose:
        body["purpose"] = purpose
    neg: dict[str, Any] = consumer.api.post("/api/v1/negotiations", body)
    return neg


def _ended(node: Node, kind: str, pid: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        record: dict[str, Any] = node.api.get(f"/api/v1/{kind}/{pid}")
        if record["state"] in ("FINALIZED", "COMPLETED", "TERMINATED"):
            return record
        if time.monotonic() > deadline:
            raise DemoFailure(f"{kind[:-1]} {pid} still {record['state']} after {timeout:.0f} s")
        time.sleep(0.05)


def run(root: Path, summary: Summary) -> float:
    """Publish, sell, meter, bill and delete between two real connectors; returns seconds."""
    t0 = time.monotonic()
    provider, consumer = Node(root, "provider"), Node(root, "consumer")
    nodes = [provider, consumer]
    neg_id = tp_id = None
    try:
        for node in nodes:
            node.start()
        for node in nodes:
            node.wait_ready()
        started = time.monotonic() - t0
        print(f"provider {provider.did}\nconsumer {consumer.did}")
        print(f"both ready in {started:.1f} s (each compiled and tested its Rego library)")

        data = provider.dir / "city-traffic.bin"
        with data.open("wb") as fh:
            for _ in range(PAYLOAD_BYTES // (1024 * 1024)):
                fh.write(os.urandom(1024 * 1024))
        dataset = provider.api.post(
            "/api/v1/datasets",
            {
                "id": "urn:demo:traffic-counts",
                "title": "Traffic counts (demo): research only, priced, deleted after use",
                "source": {"type": "file", "path": str(data)},
                "offers": [SOLD_OFFER],
            },
        )
        capped = provider.api.post(
            "/api/v1/datasets",
            {
                "id": "urn:demo:traffic-counts-sample",
                "title": "Traffic counts (demo): at most 8 MiB per transfer",
                "source": {"type": "file", "path": str(data)},
                "offers": [CAPPED_OFFER],
            },
        )
        print(f"published {dataset['id']} and {capped['id']} ({dataset['size']} bytes)")

        # 1. a wrong purpose: refused, and the consumer learns why
        refused = _ended(
            consumer,
            "negotiations",
            _negotiate(consumer, provider, dataset["id"], "marketing")["id"],
        )
        why = "; ".join(refused.get("reason") or [])
        summary.add(
            "wrong purpose",
            refused["state"] == "TERMINATED" and "marketing" in why,
            f"purpose 'marketing' refused: {why or refused['state']}",
        )

        # 2. the right purpose: negotiated, signed by both, pulled intact
        t_neg = time.monotonic()
        neg_id = _negotiate(consumer, provider, dataset["id"], "research")["id"]
        done = consumer.api.wait_state("negotiations", neg_id, {"FINALIZED"}, timeout=30)
        neg_ms = (time.monotonic() - t_neg) * 1000
        agreement_id = done["agreement_id"]
        states = _states(consumer.api.get(f"/api/v1/negotiations/{neg_id}"))
        summary.add(
            "negotiation", states[-1] == "FINALIZED", f"{' -> '.join(states)}  ({neg_ms:.0f} ms)"
        )
        agreement = consumer.api.get(f"/api/v1/agreements/{agreement_id}")
        signed = agreement["verification"] == {"provider": "valid", "consumer": "valid"}
        summary.add(
            "agreement",
            signed,
            f"{agreement_id}  signed by provider and consumer"
            + (", both signatures valid" if signed else f": {agreement['verification']}"),
        )

        t_tp = time.monotonic()
        tp_id = consumer.api.post(
            "/api/v1/transfers", {"agreementId": agreement_id, "format": "HttpData-PULL"}
        )["id"]
        moved = consumer.api.wait_state("transfers", tp_id, {"COMPLETED"}, timeout=60)
        tp_s = time.monotonic() - t_tp
        received = hashlib.sha256(Path(moved["path"]).read_bytes()).hexdigest()
        mib = moved["bytes"] / (1024 * 1024)
        states = _states(consumer.api.get(f"/api/v1/transfers/{tp_id}"))
        summary.add(
            "transfer",
            states[-1] == "COMPLETED",
            f"{' -> '.join(states)}  (HttpData-PULL, {mib:.1f} MiB, {mib / tp_s:.0f} MiB/s)",
        )
        summary.add(
            "sha256",
            received == moved["sha256"] == dataset["sha256"],
            f"{received}  (provider = consumer)",
        )

        # 3. a transfer cut at the agreed volume
        capped_neg = _negotiate(consumer, provider, capped["id"], None)["id"]
        capped_agreement = consumer.api.wait_state(
            "negotiations", capped_neg, {"FINALIZED"}, timeout=30
        )["agreement_id"]
        cut_tp = consumer.api.post(
            "/api/v1/transfers", {"agreementId": capped_agreement, "format": "HttpData-PULL"}
        )
        mine = _ended(consumer, "transfers", cut_tp["id"])
        theirs = _ended(provider, "transfers", mine["provider_pid"])
        cut_why = "; ".join(theirs.get("reason") or [])
        summary.add(
            "volume cut",
            theirs["state"] == "TERMINATED" and theirs["bytes"] == CAP_BYTES,
            f"a {dataset['size']}-byte pull under an {CAP_BYTES}-byte cap stopped at"
            f" {theirs['bytes']} bytes: {cut_why or theirs['state']}",
        )

        # 4. the metering chain, exported as `connector metering export` writes it and checked
        #    as `connector metering verify` does: the file and two public keys, no connector
        chain = root / "chain.jsonl"
        export = provider.api.get(f"/api/v1/agreements/{agreement_id}/metering")
        chain.write_text(
            "".join(
                json.dumps(line, sort_keys=True) + "\n"
                for line in [export["header"], *export["chain"]]
            )
        )
        provider_key = _did_document(provider, root / "provider-did.json")
        consumer_key = _did_document(consumer, root / "consumer-did.json")
        header, lines = read_chain(chain)
        result = verify_chain(
            header,
            lines,
            key_document(provider_key, str(header.get("provider"))),
            key_document(consumer_key, str(header.get("consumer"))),
            [],
        )
        report = result.report()
        summary.add(
            "metering",
            result.ok and report["bytes_metered"] == moved["bytes"],
            f"{len(result.records)} records, {report['bytes_metered']} bytes, each signed by the"
            f" provider and receipted by the consumer: verified offline"
            + ("" if result.ok else f" FAILED: {'; '.join(f.text() for f in result.findings)}"),
        )

        # 5. an invoice from the countersigned chain
        period = time.strftime("%Y-%m", time.gmtime())
        bill = provider.api.get(f"/api/v1/agreements/{agreement_id}/invoice?period={period}")
        items = ", ".join(f"{i['description']} {i['amount']}" for i in bill["line_items"])
        summary.add(
            "invoice",
            bill["usage"]["bytes"] == moved["bytes"] and not bill["disputed"],
            f"{period}: {bill['usage']['bytes']} bytes, {bill['usage']['transfers']} transfer;"
            f" {items}; total {bill['total']} {bill['currency']}",
        )

        # 6. the copy deleted on time, the consumer's signed receipt verified by the provider
        duty = _fulfilled(provider, mine_id=moved["provider_pid"])
        copy_gone = not Path(moved["path"]).exists()
        summary.add(
            "deletion",
            copy_gone and duty["verification"] == "valid",
            f"the consumer's copy deleted {DELETE_AFTER[2:].lower()} after delivery as agreed;"
            f" its signed receipt verified by the provider: {duty['verification']}",
        )
        return time.monotonic() - t0
    except (ApiError, StopIteration, KeyError) as exc:
        context = (
            _explain(consumer, "negotiations", neg_id)
            + "\n"
            + _explain(consumer, "transfers", tp_id)
        )
        raise DemoFailure(f"{exc!r}\n{context.strip()}") from exc
    finally:
        for node in nodes:
            node.stop()


def _fulfilled(provider: Node, mine_id: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        duty: dict[str, Any] = provider.api.get(f"/api/v1/deletions/{mine_id}")
        if duty["state"] != "pending" or time.monotonic() > deadline:
            return duty
        time.sleep(0.05)


def main() -> int:
    summary = Summary()
    print("two connectors on loopback: a provider and a consumer ...", flush=True)
    with tempfile.TemporaryDirectory(prefix="connector-demo-") as tmp:
        try:
            seconds = run(Path(tmp), summary)
        except DemoFailure as exc:
            print(f"demo FAILED: {exc}", file=sys.stderr)
            return 1
    print()
    print("demo OK" if summary.ok else "demo FAILED")
    for label, ok, text in summary.lines:
        print(f"  {'ok  ' if ok else 'FAIL'} {label:<13} {text}")
    print(f"  total {seconds:.1f} s")
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
