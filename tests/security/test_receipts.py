"""Finding 7: a consumer must not be able to erase or withhold billing evidence.

Two real connectors on loopback. The consumer turns hostile by sending DSP messages itself
with its real key (tests/test_bad_input.py's `dsp`): refusals after its receipts, and a pull
made outside its connector so that no receipt is ever sent.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connector.identity import keys as keyfile
from connector.identity import signatures
from tests.harness import ConnectorProcess, cli, negotiate, wait_for
from tests.test_bad_input import Sink, assert_dsp_error, dsp, tp_request
from tests.test_metering import PRICED, export, transfer, verify

MIB = 1024 * 1024


@pytest.fixture
def sink() -> Iterator[Sink]:
    s = Sink()
    yield s
    s.close()


def invoice(provider: ConnectorProcess, agreement_id: str) -> dict[str, Any]:
    period = datetime.now(UTC).strftime("%Y-%m")
    run = cli("--config", str(provider.config), "billing", "invoice", "--agreement", agreement_id,
              "--period", period)  # fmt: skip
    assert run.returncode == 0, run.stderr
    bill: dict[str, Any] = json.loads(run.stdout)
    return bill


def test_a_refusal_after_a_receipt_is_refused_and_the_invoice_stands(
    guarded: Callable[..., ConnectorProcess], tmp_path: Path
) -> None:
    window = {"metering_window_bytes": str(MIB)}
    provider, consumer = guarded("provider", **window), guarded("consumer", **window)
    payload = tmp_path / "payload.bin"
    payload.write_bytes(os.urandom(3 * MIB + 17))
    provider.publish(payload, offers=[PRICED])
    agreement_id = negotiate(consumer, provider, "ds-1")
    tp = transfer(consumer, agreement_id, "HttpData-PULL")
    done = consumer.api.wait_state("transfers", tp["id"], {"COMPLETED"}, timeout=30)
    before = provider.api.get(f"/api/v1/agreements/{agreement_id}/metering")["chain"]
    assert before and all(line["receipt"] for line in before)
    billed = invoice(provider, agreement_id)
    assert billed["total"] != "0.00" and billed["disputed"] == []

    # the consumer now takes every receipt back, one record at a time and all at once
    path = f"/metering/transfers/{done['provider_pid']}/receipts"
    refusals = [{"seq": line["record"]["seq"], "hash": line["hash"], "refusal": "never mind"}
                for line in before]  # fmt: skip
    reply = dsp(consumer, provider, "POST", path, {"answers": refusals[1:2]})
    assert_dsp_error(reply, 409, "TransferError", "record 1 already carries", "receipt is final")
    reply = dsp(consumer, provider, "POST", path, {"answers": refusals})
    assert_dsp_error(reply, 409, "TransferError", "records 0, 1, 2, 3, 4 already carry")
    # the same receipt again (a retried answer) is harmless
    again = [{"seq": line["record"]["seq"], "hash": line["hash"], "receipt": line["receipt"]}
             for line in before]  # fmt: skip
    assert dsp(consumer, provider, "POST", path, {"answers": again}).status == 200

    after = provider.api.get(f"/api/v1/agreements/{agreement_id}/metering")["chain"]
    assert after == before
    assert invoice(provider, agreement_id)["total"] == billed["total"]
    export(provider, agreement_id, tmp_path / "chain.jsonl")
    run = verify(tmp_path, provider, consumer, tmp_path / "chain.jsonl")
    assert run.returncode == 0, run.stdout + run.stderr


def _pull_without_receipts(
    consumer: ConnectorProcess, provider: ConnectorProcess, sink: Sink, agreement_id: str, n: int
) -> tuple[int, Any]:
    """Request a pull as the consumer (its real key), callback to the sink; download the data
    and send nothing else. (status, body) of the transfer request."""
    request = tp_request(agreement_id, f"urn:uuid:00000000-0000-4000-8000-00000000000{n}", sink.url)
    reply = dsp(consumer, provider, "POST", "/transfers/request", request)
    if reply.status != 201:
        return reply.status, reply.body
    pid = reply.body["providerPid"]
    start = wait_for(
        "the provider's start message",
        lambda: [b for b in sink.got("/start") if b.get("providerPid") == pid],
    )[0]
    address = start["dataAddress"]
    token = next(p["value"] for p in address["endpointProperties"] if p["name"] == "authorization")
    req = urllib.request.Request(address["endpoint"], headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200 and resp.read()

    def ended() -> bool:
        chain = provider.api.get(f"/api/v1/agreements/{agreement_id}/metering")["chain"]
        return any(line["record"]["transfer"] == pid and line["record"]["kind"] == "complete"
                   for line in chain)  # fmt: skip

    wait_for("the provider's record that ends the stream", ended)
    return reply.status, reply.body


def test_a_consumer_that_withholds_receipts_is_refused_new_transfers(
    guarded: Callable[..., ConnectorProcess], tmp_path: Path, sink: Sink
) -> None:
    # receipts are due as soon as a stream's last record is written; none is tolerated missing
    provider = guarded(
        "provider", metering_window_bytes=str(MIB), metering_receipt_seconds="0",
        metering_max_disputed_windows="0",
    )  # fmt: skip
    consumer = guarded("consumer")
    payload = tmp_path / "payload.bin"
    payload.write_bytes(os.urandom(2 * MIB + 5))
    provider.publish(payload, offers=[PRICED])
    agreement_id = negotiate(consumer, provider, "ds-1")

    status, _ = _pull_without_receipts(consumer, provider, sink, agreement_id, 1)
    assert status == 201
    status, body = _pull_without_receipts(consumer, provider, sink, agreement_id, 2)
    assert status == 400, body
    text = " ".join(body["reason"])
    assert "record 1 (no receipt), record 2 (no receipt), record 3 (no receipt)" in text, text
    assert "at most 0 disputed windows" in text, text
    bill = invoice(provider, agreement_id)
    assert [d["seq"] for d in bill["disputed"]] == [1, 2, 3]

    # a consumer that sends its receipts late is served again
    pid = sink.got("/start")[0]["providerPid"]
    reply = dsp(consumer, provider, "GET", f"/metering/transfers/{pid}")
    pair = keyfile.load(consumer.dir / "keys" / "private.pem")
    answers = []
    for line in reply.body["chain"]:
        receipt = signatures.sign(line["record"], consumer.did, pair)
        answers.append({"seq": line["record"]["seq"], "hash": line["hash"], "receipt": receipt})
    assert dsp(consumer, provider, "POST", f"/metering/transfers/{pid}/receipts",
               {"answers": answers}).status == 200  # fmt: skip
    status, body = _pull_without_receipts(consumer, provider, sink, agreement_id, 3)
    assert status == 201, body
