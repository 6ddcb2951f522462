"""Signed metering, receipts, offline verification, invoices and resumed pulls, with two real
connectors. The only test double is the upstream HTTP data source (outside the project)."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import signal
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.harness import (
    ConnectorProcess,
    cli,
    entries,
    negotiate,
    received_files,
    received_size,
    wait_for,
)

MIB = 1024 * 1024
SIZE = 3 * MIB + 17  # three full 1 MiB windows and a short one


class SlowSource:
    """Test double for an upstream HTTP data source: serves fixed bytes slowly (ignoring Range,
    as many upstreams do), so a test can act while a transfer is under way."""

    def __init__(self, data: bytes, chunk: int = 128 * 1024, pause: float = 0.05) -> None:
        source = self
        self.data = data
        self.requests: list[str | None] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                source.requests.append(self.headers.get("Range"))
                self.send_response(200)
                self.send_header("Content-Length", str(len(source.data)))
                self.end_headers()
                try:
                    for at in range(0, len(source.data), chunk):
                        self.wfile.write(source.data[at : at + chunk])
                        self.wfile.flush()
                        threading.Event().wait(pause)
                except OSError:
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/data"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def data() -> bytes:
    return os.urandom(SIZE)


@pytest.fixture
def slow(data: bytes) -> Iterator[SlowSource]:
    source = SlowSource(data)
    yield source
    source.close()


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[ConnectorProcess, ConnectorProcess]]:
    provider = ConnectorProcess(tmp_path, "provider")
    consumer = ConnectorProcess(tmp_path, "consumer")
    for node in (provider, consumer):
        node.set(metering_window_bytes=str(MIB), metering_receipt_seconds="10")
        node.start()
    yield provider, consumer
    consumer.stop()
    provider.stop()


PRICED = {
    "permission": [
        {
            "action": "use",
            "duty": [
                _duty
                for _duty in (
                    {"action": "compensate", "constraint": [
                        {"leftOperand": "payAmount", "operator": "eq", "rightOperand": 1000},
                        {"leftOperand": "unit", "operator": "eq",
                         "rightOperand": "https://w3id.org/tdsc/v1/perGB"},
                        {"leftOperand": "https://w3id.org/tdsc/v1/currency", "operator": "eq",
                         "rightOperand": "EUR"},
                        {"leftOperand": "https://w3id.org/tdsc/v1/freeQuota", "operator": "eq",
                         "rightOperand": 0.001},
                    ]},
                    {"action": "compensate", "constraint": [
                        {"leftOperand": "payAmount", "operator": "eq", "rightOperand": 0.1},
                        {"leftOperand": "unit", "operator": "eq", "rightOperand": "perTransfer"},
                        {"leftOperand": "https://w3id.org/tdsc/v1/currency", "operator": "eq",
                         "rightOperand": "EUR"},
                    ]},
                    {"action": "compensate", "constraint": [
                        {"leftOperand": "payAmount", "operator": "eq", "rightOperand": 5},
                        {"leftOperand": "unit", "operator": "eq", "rightOperand": "perMonth"},
                        {"leftOperand": "https://w3id.org/tdsc/v1/currency", "operator": "eq",
                         "rightOperand": "EUR"},
                    ]},
                )
            ],
        }
    ]
}  # fmt: skip


def agree(
    provider: ConnectorProcess,
    consumer: ConnectorProcess,
    tmp_path: Path,
    data: bytes,
    **extra: Any,
) -> str:
    """Publish `data` as ds-1 and negotiate it; the agreement id."""
    payload = tmp_path / "payload.bin"
    payload.write_bytes(data)
    provider.publish(payload, **extra)
    return negotiate(consumer, provider, "ds-1")


def agree_slow(
    provider: ConnectorProcess,
    consumer: ConnectorProcess,
    slow: SlowSource,
    dataset_id: str = "ds-1",
    **extra: Any,
) -> str:
    """Publish the slow upstream and negotiate it; the agreement id."""
    source = {"type": "http", "url": slow.url}
    body = {"id": dataset_id, "title": "slow", "source": source, **extra}
    provider.api.post("/api/v1/datasets", body)
    return negotiate(consumer, provider, dataset_id)


def transfer(consumer: ConnectorProcess, agreement_id: str, fmt: str) -> dict[str, Any]:
    tp: dict[str, Any] = consumer.api.post(
        "/api/v1/transfers", {"agreementId": agreement_id, "format": fmt}
    )
    return tp


def received(consumer: ConnectorProcess, cid: str) -> Path:
    return consumer.dir / "received" / f"{cid.rsplit(':', 1)[-1]}.bin"


def export(node: ConnectorProcess, agreement_id: str, out: Path) -> list[dict[str, Any]]:
    run = cli("--config", str(node.config), "metering", "export", "--agreement", agreement_id,
              "--out", str(out))  # fmt: skip
    assert run.returncode == 0, run.stderr
    return [json.loads(line) for line in out.read_text().splitlines()]


def did_document(node: ConnectorProcess, where: Path) -> Path:
    import urllib.request

    with urllib.request.urlopen(node.base_url + "/.well-known/did.json") as resp:
        where.write_bytes(resp.read())
    return where


def verify(tmp_path: Path, provider: ConnectorProcess, consumer: ConnectorProcess, chain: Path):  # type: ignore[no-untyped-def]
    return cli(
        "metering", "verify", str(chain),
        "--provider-key", str(did_document(provider, tmp_path / "provider-did.json")),
        "--consumer-key", str(did_document(consumer, tmp_path / "consumer-did.json")),
    )  # fmt: skip


def write_lines(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


@pytest.mark.parametrize("fmt", ["HttpData-PULL", "HttpData-PUSH"])
def test_every_window_is_signed_receipted_and_verifies_offline(
    nodes: tuple[ConnectorProcess, ConnectorProcess], tmp_path: Path, data: bytes, fmt: str
) -> None:
    provider, consumer = nodes
    agreement_id = agree(provider, consumer, tmp_path, data)
    tp = transfer(consumer, agreement_id, fmt)
    done = consumer.api.wait_state("transfers", tp["id"], {"COMPLETED"}, timeout=30)
    assert done["sha256"] == hashlib.sha256(data).hexdigest()

    theirs = provider.api.get(f"/api/v1/agreements/{agreement_id}/metering")
    mine = consumer.api.get(f"/api/v1/agreements/{agreement_id}/metering")
    records = [line["record"] for line in theirs["chain"]]
    assert [r["kind"] for r in records] == ["start", "window", "window", "window", "complete"]
    assert [(r["offset"], r["length"]) for r in records] == [
        (0, 0), (0, MIB), (MIB, MIB), (2 * MIB, MIB), (3 * MIB, 17)
    ]  # fmt: skip
    for r in records[1:]:
        window = data[r["offset"] : r["offset"] + r["length"]]
        assert r["sha256"] == hashlib.sha256(window).hexdigest()
        assert r["records"] == window.count(b"\n")
    assert all(line["receipt"] for line in theirs["chain"])
    assert [line["hash"] for line in mine["chain"]] == [line["hash"] for line in theirs["chain"]]
    assert [line["receipt"] for line in mine["chain"]] == [
        line["receipt"] for line in theirs["chain"]
    ]

    lines = export(provider, agreement_id, tmp_path / "chain.jsonl")
    assert lines[0]["type"] == "tdsc-metering-chain" and lines[0]["count"] == 5
    run = verify(tmp_path, provider, consumer, tmp_path / "chain.jsonl")
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"5 records, {SIZE} bytes metered" in run.stdout


def test_tampering_of_every_kind_is_reported(
    nodes: tuple[ConnectorProcess, ConnectorProcess], tmp_path: Path, data: bytes
) -> None:
    provider, consumer = nodes
    agreement_id = agree(provider, consumer, tmp_path, data)
    for _ in range(2):  # two transfers: one chain across both
        tp = transfer(consumer, agreement_id, "HttpData-PULL")
        consumer.api.wait_state("transfers", tp["id"], {"COMPLETED"}, timeout=30)
    header, *chain = export(provider, agreement_id, tmp_path / "chain.jsonl")
    assert len(chain) == 10
    assert verify(tmp_path, provider, consumer, tmp_path / "chain.jsonl").returncode == 0

    altered = copy.deepcopy(chain)
    altered[2]["record"]["length"] -= 1
    dropped = chain[:3] + chain[4:]
    reordered = [chain[0], chain[2], chain[1], *chain[3:]]
    inserted = [*chain[:5], chain[2], *chain[5:]]
    unreceipted = copy.deepcopy(chain)
    unreceipted[6]["receipt"] = None
    forged_receipt = copy.deepcopy(chain)
    forged_receipt[7]["receipt"] = chain[7]["signature"]  # the provider's, not the consumer's
    truncated = chain[:-1]
    cases = {
        "altered": (altered, "record 2: altered"),
        "dropped": (dropped, "dropped: record 3 missing"),
        "reordered": (reordered, "record 1: reordered"),
        "inserted": (inserted, "record 2: inserted"),
        "unreceipted": (unreceipted, "record 6: unreceipted: no receipt"),
        "forged receipt": (forged_receipt, "record 7: unreceipted: receipt invalid"),
        "truncated": (truncated, "dropped: the header counts 10 records"),
    }
    for name, (lines, expected) in cases.items():
        path = write_lines(tmp_path / f"{name}.jsonl", [header, *lines])
        run = verify(tmp_path, provider, consumer, path)
        assert run.returncode == 1, (name, run.stdout)
        assert expected in run.stdout, (name, run.stdout)

    # not a chain at all, and a key file that is not a key: clear errors, no traceback
    bad = verify(tmp_path, provider, consumer, write_lines(tmp_path / "x.jsonl", [{"a": 1}]))
    assert bad.returncode != 0 and "no chain header" in bad.stderr
    run = cli("metering", "verify", str(tmp_path / "chain.jsonl"),
              "--provider-key", str(tmp_path / "payload.bin"),
              "--consumer-key", str(tmp_path / "payload.bin"))  # fmt: skip
    assert run.returncode != 0 and "cannot read key file" in run.stderr


def test_verify_json_gives_each_transfers_receipted_byte_ranges(
    nodes: tuple[ConnectorProcess, ConnectorProcess], tmp_path: Path, data: bytes
) -> None:
    """`metering verify --json`: the findings and, per transfer, which bytes validly receipted
    records cover, so a checker can hold them against what the consumer received."""
    provider, consumer = nodes
    agreement_id = agree(provider, consumer, tmp_path, data)
    pids = []
    for _ in range(2):
        tp = transfer(consumer, agreement_id, "HttpData-PULL")
        done = consumer.api.wait_state("transfers", tp["id"], {"COMPLETED"}, timeout=30)
        pids.append(done["provider_pid"])
    header, *chain = export(provider, agreement_id, tmp_path / "chain.jsonl")
    keys = [str(did_document(node, tmp_path / f"{node.name}-did.json"))
            for node in (provider, consumer)]  # fmt: skip

    def run(path: Path, *extra: str) -> tuple[int, dict[str, Any]]:
        done = cli("metering", "verify", str(path), "--provider-key", keys[0],
                   "--consumer-key", keys[1], "--json", *extra)  # fmt: skip
        return done.returncode, json.loads(done.stdout)

    code, report = run(tmp_path / "chain.jsonl")
    assert code == 0
    assert report == {
        "agreement": agreement_id, "ok": True, "findings": [], "records": 10,
        "bytes_metered": 2 * SIZE,
        "transfers": {pid: {"receipted": [[0, SIZE]], "receipted_bytes": SIZE,
                            "unreceipted": []} for pid in pids},
    }  # fmt: skip

    # record 2 (bytes [1 MiB, 2 MiB) of the first transfer) loses its receipt; record 7 (of
    # the second) gets the provider's signature as its receipt: neither covers its bytes
    tampered = copy.deepcopy(chain)
    tampered[2]["receipt"] = None
    tampered[7]["receipt"] = tampered[7]["signature"]
    second = tampered[7]["record"]
    code, report = run(write_lines(tmp_path / "tampered.jsonl", [header, *tampered]))
    assert code == 1 and report["ok"] is False
    assert [(f["seq"], f["problem"]) for f in report["findings"]] == [
        (2, "unreceipted"), (7, "unreceipted")
    ]  # fmt: skip
    assert report["findings"][0]["line"] == 4 and "no receipt" in report["findings"][0]["detail"]
    gap = [second["offset"], second["offset"] + second["length"]]
    assert report["transfers"] == {
        pids[0]: {"receipted": [[0, MIB], [2 * MIB, SIZE]], "receipted_bytes": SIZE - MIB,
                  "unreceipted": [[MIB, 2 * MIB]]},
        pids[1]: {"receipted": [[0, gap[0]], [gap[1], SIZE]],
                  "receipted_bytes": SIZE - second["length"], "unreceipted": [gap]},
    }  # fmt: skip

    # without --json: one line per transfer with its receipted ranges
    plain = verify(tmp_path, provider, consumer, tmp_path / "tampered.jsonl")
    assert plain.returncode == 1
    assert (
        f"transfer {pids[0]}: {SIZE - MIB} bytes receipted: [0, {MIB}), [{2 * MIB}, {SIZE});"
        f" unreceipted: [{MIB}, {2 * MIB})"
    ) in plain.stdout, plain.stdout
    whole = verify(tmp_path, provider, consumer, tmp_path / "chain.jsonl")
    assert f"transfer {pids[1]}: {SIZE} bytes receipted: [0, {SIZE})" in whole.stdout


@pytest.mark.parametrize("fmt", ["HttpData-PULL", "HttpData-PUSH"])
def test_a_window_that_does_not_match_is_refused_and_ends_the_transfer(
    nodes: tuple[ConnectorProcess, ConnectorProcess], slow: SlowSource, fmt: str
) -> None:
    provider, consumer = nodes
    agreement_id = agree_slow(provider, consumer, slow)
    tp = transfer(consumer, agreement_id, fmt)
    # (before the first window is complete: the consumer checks windows while it downloads)
    wait_for("data to arrive", lambda: received_size(consumer, tp["id"]) > 256 * 1024)
    [path] = received_files(consumer, tp["id"])  # a push is received beside the copy
    with path.open("r+b") as fh:  # the consumer's copy goes bad (disk, memory, a middlebox)
        fh.seek(100)
        fh.write(b"\x00" if slow.data[100] else b"\x01")

    ended = consumer.api.wait_state("transfers", tp["id"], {"TERMINATED", "COMPLETED"}, timeout=30)
    assert ended["state"] == "TERMINATED"
    why = " ".join(ended["reason"])
    assert "metering record 1" in why and "bytes 0-1048575 hash to" in why, why
    provider_side = provider.api.wait_state(
        "transfers", ended["provider_pid"], {"TERMINATED"}, timeout=30
    )
    assert "metering record 1" in " ".join(provider_side["reason"])
    chain = provider.api.get(f"/api/v1/agreements/{agreement_id}/metering")["chain"]
    refused = [line for line in chain if line["refusal"]]
    assert [line["record"]["seq"] for line in refused] == [1]
    assert all(line["receipt"] for line in chain if line["record"]["seq"] != 1)

    period = datetime.now(UTC).strftime("%Y-%m")
    bill = provider.api.get(f"/api/v1/agreements/{agreement_id}/invoice?period={period}")
    assert [d["seq"] for d in bill["disputed"]] == [1]
    assert bill["usage"]["bytes"] == SIZE - MIB  # the refused window is not billed


def test_invoice_from_the_countersigned_chain(
    nodes: tuple[ConnectorProcess, ConnectorProcess], tmp_path: Path, data: bytes
) -> None:
    provider, consumer = nodes
    agreement_id = agree(provider, consumer, tmp_path, data, offers=[PRICED])
    payload = tmp_path / "payload.bin"
    tp = transfer(consumer, agreement_id, "HttpData-PULL")
    consumer.api.wait_state("transfers", tp["id"], {"COMPLETED"}, timeout=30)

    period = datetime.now(UTC).strftime("%Y-%m")
    run = cli("--config", str(provider.config), "billing", "invoice", "--agreement", agreement_id,
              "--period", period)  # fmt: skip
    assert run.returncode == 0, run.stderr
    bill = json.loads(run.stdout)
    assert bill["currency"] == "EUR"
    assert bill["usage"] == {"bytes": SIZE, "records": data.count(b"\n"), "transfers": 1}
    amounts = {item["description"]: item["amount"] for item in bill["line_items"]}
    # (3145745 B = 0.003145745 GB, 0.001 GB free) x 1000 EUR/GB = 2.145745 EUR
    assert amounts == {"perGB (GB)": "2.15", "perTransfer (transfers)": "0.10",
                       "perMonth (month)": "5.00"}  # fmt: skip
    assert bill["total"] == "7.25"
    assert bill["disputed"] == []
    assert bill["chain"]["length"] == 5 and all(r["receipt"] for r in bill["chain"]["records"])

    csv_run = cli("--config", str(provider.config), "billing", "invoice", "--agreement",
                  agreement_id, "--period", period, "--format", "csv")  # fmt: skip
    assert csv_run.returncode == 0 and "total,,,,,7.25" in csv_run.stdout
    other = cli("--config", str(provider.config), "billing", "invoice", "--agreement",
                agreement_id, "--period", "1999-01")  # fmt: skip
    assert json.loads(other.stdout)["usage"]["bytes"] == 0
    bad = cli("--config", str(provider.config), "billing", "invoice", "--agreement",
              agreement_id, "--period", "2026-13")  # fmt: skip
    assert bad.returncode != 0 and "period must be YYYY-MM" in bad.stderr

    unpriceable = copy.deepcopy(PRICED)
    unpriceable["permission"][0]["duty"][0]["constraint"][1]["rightOperand"] = "perBanana"
    with pytest.raises(Exception, match="unit is 'perBanana'"):
        provider.publish(payload, dataset_id="ds-2", offers=[unpriceable])


def test_an_interrupted_pull_resumes_with_range_and_is_billed_once(
    nodes: tuple[ConnectorProcess, ConnectorProcess], slow: SlowSource, data: bytes
) -> None:
    provider, consumer = nodes
    agreement_id = agree_slow(provider, consumer, slow, offers=[PRICED])
    tp = transfer(consumer, agreement_id, "HttpData-PULL")
    path = received(consumer, tp["id"])
    wait_for("half the data to arrive", lambda: path.exists() and path.stat().st_size > SIZE // 2)
    consumer.kill()
    kept = path.stat().st_size
    consumer.start()

    done = consumer.api.wait_state("transfers", tp["id"], {"COMPLETED"}, timeout=60)
    assert done["sha256"] == hashlib.sha256(data).hexdigest()
    provider_side = provider.api.get(f"/api/v1/transfers/{done['provider_pid']}")
    served = [e["detail"] for e in provider_side["timeline"] if e["detail"].startswith("served")]
    assert served and served[-1].startswith(f"served bytes {kept}-{SIZE - 1}"), served
    assert slow.requests[-1] == f"bytes={kept}-"  # the provider asked its upstream for the rest

    chain = provider.api.get(f"/api/v1/agreements/{agreement_id}/metering")["chain"]
    assert any(line["record"]["kind"] == "interrupted" for line in chain)
    assert all(line["receipt"] for line in chain)
    period = datetime.now(UTC).strftime("%Y-%m")
    bill = provider.api.get(f"/api/v1/agreements/{agreement_id}/invoice?period={period}")
    assert bill["usage"]["bytes"] == SIZE  # resent bytes are metered again, billed once
    assert bill["disputed"] == []


def test_a_provider_stopped_mid_pull_closes_its_records_and_the_pull_resumes(
    tmp_path: Path, data: bytes
) -> None:
    """SIGTERM while a pull is served: after the grace the stream is cut, the chain gets an
    `interrupted` record, and the restarted provider serves the rest (Range)."""
    slow = SlowSource(data, pause=0.2)  # about 5 s for the whole stream
    provider = ConnectorProcess(tmp_path, "provider")
    consumer = ConnectorProcess(tmp_path, "consumer")
    provider.set(metering_window_bytes=str(MIB), shutdown_grace_seconds="0")
    consumer.set(retry_base_seconds="0.2", retry_max_seconds="1")
    try:
        provider.start()
        consumer.start()
        agreement_id = agree_slow(provider, consumer, slow)
        tp = transfer(consumer, agreement_id, "HttpData-PULL")
        wait_for("data to arrive", lambda: received_size(consumer, tp["id"]) > MIB // 2)
        assert provider.proc is not None
        provider.proc.send_signal(signal.SIGTERM)
        assert provider.proc.wait(8) == 0  # not the 60 s aiohttp waits by default
        provider.start()
        done = consumer.api.wait_state("transfers", tp["id"], {"COMPLETED"}, timeout=60)
        assert done["sha256"] == hashlib.sha256(data).hexdigest()
        chain = provider.api.get(f"/api/v1/agreements/{agreement_id}/metering")["chain"]
    finally:
        consumer.stop()
        provider.stop()
        slow.close()
    kinds = [line["record"]["kind"] for line in chain]
    cut = kinds.index("interrupted")
    assert kinds[cut + 1] == "start" and kinds[-1] == "complete", kinds
    resumed = chain[cut + 1]["record"]["offset"]
    assert resumed == chain[cut]["record"]["offset"] + chain[cut]["record"]["length"] > 0
    assert all(line["receipt"] for line in chain)


def test_windows_also_close_by_time(tmp_path: Path, slow: SlowSource) -> None:
    """A slow stream gets a signed record every `metering_window_seconds`, not only per size."""
    provider = ConnectorProcess(tmp_path, "provider")
    consumer = ConnectorProcess(tmp_path, "consumer")
    provider.set(metering_window_bytes=str(64 * MIB), metering_window_seconds="0.2")
    try:
        provider.start()
        consumer.start()
        agreement_id = agree_slow(provider, consumer, slow)
        tp = transfer(consumer, agreement_id, "HttpData-PULL")
        consumer.api.wait_state("transfers", tp["id"], {"COMPLETED"}, timeout=30)
        chain = provider.api.get(f"/api/v1/agreements/{agreement_id}/metering")["chain"]
    finally:
        consumer.stop()
        provider.stop()
    records = [line["record"] for line in chain]
    windows = [r for r in records if r["kind"] == "window"]
    assert len(windows) >= 3, records  # about 1.2 s of data, far below 64 MiB
    ends = [r["offset"] + r["length"] for r in records]
    assert [r["offset"] for r in records[1:]] == ends[:-1]  # contiguous, no gap, no overlap
    assert ends[-1] == SIZE
    assert all(line["receipt"] for line in chain)


def test_metering_and_billing_endpoints_refuse_bad_input(
    nodes: tuple[ConnectorProcess, ConnectorProcess], tmp_path: Path, data: bytes, slow: SlowSource
) -> None:
    from tests.test_bad_input import assert_dsp_error, assert_problem, dsp, http

    provider, consumer = nodes
    agreement_id = agree(provider, consumer, tmp_path, data)
    tp = transfer(consumer, agreement_id, "HttpData-PULL")
    done = consumer.api.wait_state("transfers", tp["id"], {"COMPLETED"}, timeout=30)
    pid = done["provider_pid"]
    before = provider.api.get(f"/api/v1/agreements/{agreement_id}/metering")["chain"]
    first = before[1]
    path = f"/metering/transfers/{pid}/receipts"

    reply = dsp(consumer, provider, "POST", path, raw=b"{not json")
    assert_dsp_error(reply, 400, "TransferError", "not valid JSON")
    reply = dsp(consumer, provider, "POST", path, {"answers": "all fine"})
    assert_dsp_error(reply, 400, "TransferError", "answers")
    reply = dsp(consumer, provider, "POST", path, {"answers": [{"seq": 99, "hash": "x"}]})
    assert_dsp_error(reply, 400, "TransferError", "record 99 is not in this transfer's chain")
    forged = {"seq": 1, "hash": first["hash"], "receipt": first["signature"]}  # provider's own
    reply = dsp(consumer, provider, "POST", path, {"answers": [forged]})
    assert_dsp_error(reply, 400, "TransferError", "does not verify")
    reply = dsp(consumer, provider, "POST", path, {"answers": [{"seq": 1, "hash": first["hash"]}]})
    assert_dsp_error(reply, 400, "TransferError", "a receipt or a refusal reason is needed")
    # only the transfer's consumer may read or answer its records
    reply = dsp(provider, provider, "GET", f"/metering/transfers/{pid}")
    assert_dsp_error(reply, 404, "TransferError", pid)
    after = provider.api.get(f"/api/v1/agreements/{agreement_id}/metering")["chain"]
    assert after == before

    api = provider.api.base + f"/api/v1/agreements/{agreement_id}/invoice"
    key = {"X-Api-Key": provider.api.key}
    period = datetime.now(UTC).strftime("%Y-%m")
    csv_reply = http("GET", f"{api}?period={period}&format=csv", headers=key)
    assert csv_reply.status == 200 and csv_reply.content_type == "text/csv"
    assert_problem(http("GET", f"{api}?period={period}&format=xml", headers=key), 400, "format")
    assert_problem(http("GET", api, headers=key), 400, "period must be YYYY-MM")
    unknown = provider.api.base + "/api/v1/agreements/nope/invoice?period=2026-01"
    assert_problem(http("GET", unknown, headers=key), 404, "no agreement nope")

    # the data plane serves only open-ended byte ranges (what a resuming pull asks for)
    slow_agreement = agree_slow(provider, consumer, slow, "ds-slow")
    started = transfer(consumer, slow_agreement, "HttpData-PULL")
    running = consumer.api.wait_state("transfers", started["id"], {"STARTED"}, timeout=30)
    address = running["data_address"]
    token = next(p["value"] for p in address["endpointProperties"] if p["name"] == "authorization")
    for bad in ("bytes=0-10", "items=0-", "bytes=-5"):
        reply = http("GET", address["endpoint"], headers={"Authorization": f"Bearer {token}",
                                                          "Range": bad})  # fmt: skip
        assert_problem(reply, 416, "bytes=N-")


def _cut_push(url: str, token: str, sent: bytes, announced: int) -> None:
    """Send a push whose connection drops after `sent` of `announced` bytes."""
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(url)
    head = (
        f"POST {where.path} HTTP/1.1\r\nHost: {where.netloc}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {announced}\r\n\r\n"
    )
    with socket.create_connection((where.hostname or "127.0.0.1", where.port or 80)) as sock:
        sock.sendall(head.encode() + sent)


def test_a_second_push_that_breaks_off_leaves_the_first_intact(
    nodes: tuple[ConnectorProcess, ConnectorProcess], slow: SlowSource, data: bytes
) -> None:
    """A push may arrive twice (a replica handing a running push to another): the copy being
    received, checked and metered is never truncated by the other delivery."""
    provider, consumer = nodes
    agreement_id = agree_slow(provider, consumer, slow)
    tp = transfer(consumer, agreement_id, "HttpData-PUSH")
    pid = consumer.api.wait_state("transfers", tp["id"], {"STARTED"}, timeout=30)["provider_pid"]
    address = provider.api.get(f"/api/v1/transfers/{pid}")["data_address"]
    token = next(p["value"] for p in address["endpointProperties"] if p["name"] == "authorization")
    target = received(consumer, tp["id"])
    wait_for(
        "the first push to write",
        lambda: any(path.stat().st_size > 0 for path in target.parent.glob(target.name + "*")),
    )
    _cut_push(address["endpoint"], token, os.urandom(MIB), SIZE)

    done = consumer.api.wait_state("transfers", tp["id"], {"COMPLETED"}, timeout=30)
    assert done["sha256"] == hashlib.sha256(data).hexdigest()
    assert received(consumer, tp["id"]).read_bytes() == data
    assert not list(received(consumer, tp["id"]).parent.glob("*.part"))
    broken = [e["detail"] for e in entries(done, "failed", "push")]
    assert len(broken) == 1 and "interrupted after" in broken[0], broken
    chain = consumer.api.get(f"/api/v1/agreements/{agreement_id}/metering")["chain"]
    assert chain and all(line["receipt"] for line in chain)
