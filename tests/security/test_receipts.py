"""Finding 7: a consumer must not be able to erase or withhold billing evidence.

Real connectors on loopback. A real consumer turns hostile by sending DSP messages with its
own key (tests/test_bad_input.py's `dsp`): refusals after its receipts. A consumer that is no
connector at all (its own key, did.json and DSP endpoint on loopback) negotiates and pulls with
raw messages and never sends a receipt.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from connector.dsp.messages import CONSUMER_SIGNATURE, ContractAgreementMessage
from connector.identity import keys as keyfile
from connector.identity import signatures
from connector.identity.did import build_document, did_from_url
from connector.identity.tokens import TokenIssuer
from tests.harness import ConnectorProcess, cli, negotiate, state_of, wait_for
from tests.test_bad_input import CTX, Reply, assert_dsp_error, dsp, http, offer, tp_request
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


class HostileConsumer:
    """A consumer that is no connector: its own key, its did.json and a DSP endpoint that
    acknowledges everything, on one loopback port. It negotiates and pulls with raw DSP
    messages, and never answers a metering record."""

    def __init__(self) -> None:
        self.keys = keyfile.generate()
        self.messages: list[tuple[str, Any]] = []
        hostile = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                found = self.path == "/.well-known/did.json"
                self._answer(200 if found else 404, hostile.document if found else {})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                hostile.messages.append((self.path, json.loads(self.rfile.read(length) or b"0")))
                self._answer(200, {})

            def _answer(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.did = did_from_url(base)
        self.dsp = base + "/dsp/2025-1"
        self.document = build_document(self.did, self.keys, self.dsp, base + "/credentials")
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def got(self, suffix: str, **match: str) -> list[Any]:
        return [body for path, body in self.messages if path.endswith(suffix)
                and all(body.get(k) == v for k, v in match.items())]  # fmt: skip

    def send(self, provider: ConnectorProcess, path: str, body: Any) -> Reply:
        token = TokenIssuer(self.did, self.keys, 120).issue(provider.did)
        return http("POST", provider.dsp + path, body, headers={"Authorization": token})

    def agree(self, provider: ConnectorProcess) -> str:
        """Negotiate the provider's default offer of ds-1, countersigned; the agreement id."""
        cpid = "urn:uuid:10000000-0000-4000-8000-000000000001"
        request = {"@context": CTX, "@type": "ContractRequestMessage", "consumerPid": cpid,
                   "offer": offer(), "callbackAddress": self.dsp}  # fmt: skip
        reply = self.send(provider, "/negotiations/request", request)
        assert reply.status == 201, reply
        ppid = reply.body["providerPid"]
        message = wait_for("the provider's agreement", lambda: self.got("/agreement"))[0]
        agreement = ContractAgreementMessage.model_validate(message).agreement
        body = agreement.model_dump(by_alias=True, exclude_none=True)
        verification = {"@context": CTX, "@type": "ContractAgreementVerificationMessage",
                        "providerPid": ppid, "consumerPid": cpid,
                        CONSUMER_SIGNATURE: signatures.sign(body, self.did, self.keys)}  # fmt: skip
        reply = self.send(provider, f"/negotiations/{ppid}/agreement/verification", verification)
        assert reply.status == 200, reply
        state_of(provider, "negotiations", ppid, "FINALIZED")
        return str(agreement.id)

    def pull(self, provider: ConnectorProcess, agreement_id: str, n: int) -> Reply:
        """Request a pull, download it, and send nothing else (no receipt, no completion)."""
        cpid = f"urn:uuid:20000000-0000-4000-8000-00000000000{n}"
        reply = self.send(provider, "/transfers/request", tp_request(agreement_id, cpid, self.dsp))
        if reply.status != 201:
            return reply
        pid = reply.body["providerPid"]
        start = wait_for(
            "the provider's start message", lambda: self.got("/start", providerPid=pid)
        )
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


@pytest.fixture
def hostile() -> Iterator[HostileConsumer]:
    consumer = HostileConsumer()
    yield consumer
    consumer.close()


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
    pid = hostile.got("/start")[0]["providerPid"]
    chain = provider.api.get(f"/api/v1/agreements/{agreement_id}/metering")["chain"]
    answers = [{"seq": line["record"]["seq"], "hash": line["hash"],
                "receipt": signatures.sign(line["record"], hostile.did, hostile.keys)}
               for line in chain]  # fmt: skip
    reply = hostile.send(provider, f"/metering/transfers/{pid}/receipts", {"answers": answers})
    assert reply.status == 200, reply
    assert hostile.pull(provider, agreement_id, 3).status == 201
