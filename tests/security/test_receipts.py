"""Finding 7: a consumer must not be able to erase or withhold billing evidence.

Real connectors on loopback. A real consumer turns hostile by sending DSP messages with its
own key (tests/test_bad_input.py's `dsp`): refusals after its receipts. A consumer that is no
connector at all (its own key, did.json and DSP endpoint on loopback) negotiates and pulls with
raw messages and never sends a receipt.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connector.identity import signatures
from tests.harness import ConnectorProcess, cli, negotiate, wait_for
from tests.security.peer import HostilePeer, Reply, finalize_as_consumer
from tests.test_bad_input import assert_dsp_error, dsp, http, tp_request
from tests.test_metering import PRICED, export, transfer, verify

MIB = 1024 * 1024


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


class HostileConsumer(HostilePeer):
    """A consumer that is no connector (tests/security/peer.py): it negotiates and pulls with
    raw DSP messages, and never answers a metering record."""

    def agree(self, provider: ConnectorProcess) -> str:
        """Negotiate the provider's default offer of ds-1, countersigned; the agreement id."""
        _, _, agreement = finalize_as_consumer(provider, self)
        return str(agreement["@id"])

    def pull(self, provider: ConnectorProcess, agreement_id: str, n: int) -> Reply:
        """Request a pull, download it, and send nothing else (no receipt, no completion)."""
        cpid = f"urn:uuid:20000000-0000-4000-8000-00000000000{n}"
        reply = self.send(provider, "/transfers/request", tp_request(agreement_id, cpid, self.dsp))
        if reply.status != 201:
            return reply
        pid = reply.body["providerPid"]
        start = wait_for("the provider's start message", lambda: self.starts(pid))
        address = start[0]["dataAddress"]
        token = next(p["value"] for p in address["endpointProperties"]
                     if p["name"] == "authorization")  # fmt: skip
        data = http("GET", address["endpoint"], headers={"Authorization": f"Bearer {token}"})
        assert data.status == 200, data

        def ended() -> bool:
            chain = provider.api.get(f"/api/v1/agreements/{agreement_id}/metering")["chain"]
            return any(line["record"]["transfer"] == pid and line["record"]["kind"] == "complete"
                       for line in chain)  # fmt: skip

        wait_for("the provider's record that ends the stream", ended)
        return reply

    def starts(self, provider_pid: str | None = None) -> list[dict[str, Any]]:
        """The TransferStartMessages it got (for one provider process, if given)."""
        return [r.body for r in self.got("/start")
                if provider_pid is None or r.body.get("providerPid") == provider_pid]  # fmt: skip


@pytest.fixture
def hostile() -> Iterator[HostileConsumer]:
    consumer = HostileConsumer().start()
    yield consumer
    consumer.stop()


def test_a_consumer_that_withholds_receipts_is_refused_new_transfers(
    guarded: Callable[..., ConnectorProcess], tmp_path: Path, hostile: HostileConsumer
) -> None:
    # receipts are due as soon as a stream's last record is written; none may be missing
    provider = guarded(
        "provider", metering_window_bytes=str(MIB), metering_receipt_seconds="0",
        metering_max_disputed_windows="0",
    )  # fmt: skip
    payload = tmp_path / "payload.bin"
    payload.write_bytes(os.urandom(2 * MIB + 5))
    provider.publish(payload)
    agreement_id = hostile.agree(provider)

    assert hostile.pull(provider, agreement_id, 1).status == 201
    refused = hostile.pull(provider, agreement_id, 2)
    assert refused.status == 400, refused
    text = " ".join(refused.body["reason"])
    assert "record 1 (no receipt), record 2 (no receipt), record 3 (no receipt)" in text, text
    assert "at most 0 disputed windows" in text, text
    period = datetime.now(UTC).strftime("%Y-%m")
    bill = provider.api.get(f"/api/v1/agreements/{agreement_id}/invoice?period={period}")
    assert [d["seq"] for d in bill["disputed"]] == [1, 2, 3], bill

    # a consumer that sends its receipts late is served again
    pid = hostile.starts()[0]["providerPid"]
    chain = provider.api.get(f"/api/v1/agreements/{agreement_id}/metering")["chain"]
    answers = [{"seq": line["record"]["seq"], "hash": line["hash"],
                "receipt": signatures.sign(line["record"], hostile.did, hostile.keys)}
               for line in chain]  # fmt: skip
    reply = hostile.send(provider, f"/metering/transfers/{pid}/receipts", {"answers": answers})
    assert reply.status == 200, reply
    assert hostile.pull(provider, agreement_id, 3).status == 201
