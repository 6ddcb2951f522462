"""Finding 10: deletion duties could be dodged. A signed schedule with deadline 2999 moved an
overdue duty back to pending; a receipt with `deleted: []` dated 2000 fulfilled the duty and
`deletions verify` accepted it.

The consumer here is hostile: after a real delivery its connector is stopped (so it deletes
nothing) and the test speaks in its name, with its real key, while a small listener of the test
keeps serving its DID document on its address."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from connector.identity import keys as keyfile
from connector.identity import signatures
from connector.model.usage import format_time, parse_time
from tests.harness import ConnectorProcess, cli
from tests.test_usage_control import deliver, did_document, duty_of, offer, post_as

DELETE_3S = {
    "action": "delete",
    "constraint": [{"leftOperand": "delayPeriod", "operator": "eq", "rightOperand": "PT3S"}],
}
DELETE_1H = {
    "action": "delete",
    "constraint": [{"leftOperand": "delayPeriod", "operator": "eq", "rightOperand": "PT1H"}],
}


class DidHost:
    """Serves one DID document where the stopped consumer used to answer."""

    def __init__(self, port: int, document: bytes) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/.well-known/did.json":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(document)))
                self.end_headers()
                self.wfile.write(document)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[ConnectorProcess, ConnectorProcess]]:
    provider = ConnectorProcess(tmp_path, "provider")
    consumer = ConnectorProcess(tmp_path, "consumer")
    provider.set(deletion_grace_seconds="1")
    provider.start()
    consumer.start()
    yield provider, consumer
    consumer.stop()
    provider.stop()


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    path = tmp_path / "data.csv"
    path.write_bytes(b"id,value\n" + b"".join(b"%d,%d\n" % (i, i * i) for i in range(500)))
    return path


def go_rogue(consumer: ConnectorProcess, tmp_path: Path) -> DidHost:
    """Stop the consumer's connector (it will delete nothing) and keep its DID resolvable."""
    document = did_document(consumer, tmp_path / "consumer-did.json").read_bytes()
    consumer.stop()
    return DidHost(consumer.public_port, document)


def signed(consumer: ConnectorProcess, record: dict[str, Any]) -> dict[str, Any]:
    pair = keyfile.load(consumer.dir / "keys" / "private.pem")
    return {"record": record, "signature": signatures.sign(record, consumer.did, pair)}


def schedule(
    provider: ConnectorProcess,
    consumer: ConnectorProcess,
    agreement_id: str,
    transfer: str,
    deadline: str,
    fixed_by: str,
    at: str,
) -> dict[str, Any]:
    return signed(consumer, {
        "type": "tdsc-deletion-schedule", "agreement": agreement_id, "dataset": "ds-1",
        "provider": provider.did, "consumer": consumer.did, "transfer": transfer,
        "deadline": deadline, "fixed_by": fixed_by, "at": at,
    })  # fmt: skip


def receipt(
    provider: ConnectorProcess,
    consumer: ConnectorProcess,
    agreement_id: str,
    transfer: str,
    deleted: list[dict[str, Any]],
    deleted_at: str,
) -> dict[str, Any]:
    return signed(consumer, {
        "type": "tdsc-deletion-receipt", "agreement": agreement_id, "dataset": "ds-1",
        "provider": provider.did, "consumer": consumer.did, "transfer": transfer,
        "deleted": deleted, "deadline": deleted_at, "reason": "deleted, honestly",
        "deleted_at": deleted_at,
    })  # fmt: skip


def test_an_overdue_deletion_cannot_be_postponed_or_fulfilled_with_an_empty_receipt(
    nodes: tuple[ConnectorProcess, ConnectorProcess], payload: Path, tmp_path: Path
) -> None:
    provider, consumer = nodes
    agreement_id, tp = deliver(provider, consumer, payload, offer(DELETE_3S))
    pid = tp["provider_pid"]
    rogue = go_rogue(consumer, tmp_path)
    try:
        overdue = duty_of(provider, pid, "overdue")
        due = parse_time(overdue["deadline"])
        assert overdue["delivered_bytes"] == tp["bytes"] == payload.stat().st_size
        assert overdue["delivered_sha256"] == tp["sha256"]
        base = f"/usage/agreements/{agreement_id}"
        now = format_time(time.time())

        # a signed schedule with deadline 2999 does not move the duty back to pending
        for fixed_by in ("delivery", "first use"):
            body = schedule(provider, consumer, agreement_id, pid, "2999-01-01T00:00:00Z",
                            fixed_by, now)  # fmt: skip
            status, answer = post_as(consumer, provider, base + "/deletion-schedule", body)
            assert status == (200 if fixed_by == "delivery" else 400), answer
            duty = provider.api.get(f"/api/v1/deletions/{pid}")
            assert duty["state"] == "overdue", (fixed_by, answer, duty)
            assert parse_time(duty["deadline"]) <= due + 1.0, (fixed_by, duty["deadline"])

        # receipts that do not prove the deletion of the delivered copy are refused
        copy = {"file": "received/x.bin", "bytes": tp["bytes"], "sha256": tp["sha256"]}
        forged = {
            "nothing deleted, dated 2000": ([], "2000-01-01T00:00:00Z"),
            "nothing deleted, dated now": ([], now),
            "the copy, dated before the delivery": ([copy], "2000-01-01T00:00:00Z"),
            "another file": ([{**copy, "sha256": "ab" * 32}], now),
            "the copy, other size": ([{**copy, "bytes": tp["bytes"] - 1}], now),
            "the copy, dated in 2999": ([copy], "2999-01-01T00:00:00Z"),
        }
        for name, (deleted, at) in forged.items():
            body = receipt(provider, consumer, agreement_id, pid, deleted, at)
            status, answer = post_as(consumer, provider, base + "/deletion-receipts", body)
            assert status == 400, (name, answer)
            assert answer["@type"] and answer["reason"], answer
            assert provider.api.get(f"/api/v1/deletions/{pid}")["state"] == "overdue", name

        # offline: the empty receipt dated 2000 does not verify either
        key = tmp_path / "consumer-did.json"
        empty = tmp_path / "empty-receipt.json"
        body = receipt(provider, consumer, agreement_id, pid, [], "2000-01-01T00:00:00Z")
        empty.write_text(json.dumps(body))
        run = cli("deletions", "verify", str(empty), "--consumer-key", str(key))
        assert run.returncode == 1 and "names no deleted copy" in run.stdout, run.stdout
        # ... nor one naming another copy than the one delivered (the export's record)
        other = receipt(provider, consumer, agreement_id, pid, [{**copy, "sha256": "ab" * 32}], now)
        other["delivered"] = {"bytes": tp["bytes"], "sha256": tp["sha256"], "at": now}
        (tmp_path / "other.json").write_text(json.dumps(other))
        run = cli("deletions", "verify", str(tmp_path / "other.json"), "--consumer-key", str(key))
        assert run.returncode == 1 and "does not name the copy" in run.stdout, run.stdout

        # the one receipt that names the delivered copy, dated after delivery, is accepted
        honest = receipt(provider, consumer, agreement_id, pid, [copy], format_time(time.time()))
        status, answer = post_as(consumer, provider, base + "/deletion-receipts", honest)
        assert status == 200 and answer["state"] == "fulfilled", answer
        exported = tmp_path / "receipt.json"
        run = cli("--config", str(provider.config), "deletions", "export", pid,
                  "--out", str(exported))  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert json.loads(exported.read_text())["delivered"]["sha256"] == tp["sha256"]
        run = cli("deletions", "verify", str(exported), "--consumer-key", str(key))
        assert run.returncode == 0 and "receipt verifies" in run.stdout, run.stdout + run.stderr
    finally:
        rogue.stop()


def test_a_schedule_can_only_bring_the_providers_deadline_forward(
    nodes: tuple[ConnectorProcess, ConnectorProcess], payload: Path, tmp_path: Path
) -> None:
    provider, consumer = nodes
    agreement_id, tp = deliver(provider, consumer, payload, offer(DELETE_1H))
    pid = tp["provider_pid"]
    rogue = go_rogue(consumer, tmp_path)
    try:
        ours = provider.api.get(f"/api/v1/deletions/{pid}")
        delivered = parse_time(ours["delivered_at"])
        # the provider's own deadline: the agreement (one hour) counted from its delivery
        assert abs(parse_time(ours["deadline"]) - (delivered + 3600)) < 2.0, ours
        base = f"/usage/agreements/{agreement_id}/deletion-schedule"
        now = time.time()

        def send(deadline: float | str, fixed_by: str = "delivery") -> float:
            text = deadline if isinstance(deadline, str) else format_time(deadline)
            body = schedule(provider, consumer, agreement_id, pid, text, fixed_by,
                            format_time(time.time()))  # fmt: skip
            status, answer = post_as(consumer, provider, base, body)
            assert status == 200, answer
            return parse_time(provider.api.get(f"/api/v1/deletions/{pid}")["deadline"])

        # later than the agreement allows: the provider keeps its own deadline
        assert send("2999-01-01T00:00:00Z") <= delivered + 3600 + 2.0
        # earlier: accepted
        assert abs(send(now + 600) - (now + 600)) < 1.0
        # later again: a later schedule can only be earlier
        assert abs(send(now + 1800) - (now + 600)) < 1.0
        # a first use (now) fixes it where the agreement says, no later
        assert send("2999-01-01T00:00:00Z", "first use") <= time.time() + 3600 + 2.0
    finally:
        rogue.stop()
