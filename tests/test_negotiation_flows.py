"""Negotiation and transfer flows beyond the happy path, between two real connectors.

Counter-offers answered by the operator (API and CLI), termination by either side,
suspension and resumption of a running transfer, refused requests and unreachable peers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from connector.mgmt_client import ApiError
from tests.harness import (
    ConnectorProcess,
    cli,
    entries,
    free_port,
    negotiate,
    received_files,
    received_size,
    state_of,
    wait_for,
)

USE = {"action": "use"}
PURPOSE = {
    "action": "use",
    "constraint": [{"leftOperand": "purpose", "operator": "eq", "rightOperand": "research"}],
}
COUNTRY = {
    "action": "use",
    "constraint": [{"leftOperand": "spatial", "operator": "eq", "rightOperand": "EU"}],
}


def rules(policy: dict[str, Any]) -> dict[str, Any]:
    return {k: policy[k] for k in ("permission", "prohibition", "obligation") if k in policy}


def catalog_offer(consumer: ConnectorProcess, provider: ConnectorProcess) -> dict[str, Any]:
    catalog = consumer.api.post("/api/v1/catalog/request", {"counterPartyAddress": provider.dsp})
    dataset = next(d for d in catalog["dataset"] if d["@id"] == "ds-1")
    offer: dict[str, Any] = dataset["hasPolicy"][0]
    return offer


def start_countered(
    consumer: ConnectorProcess, provider: ConnectorProcess, payload: Path
) -> tuple[str, str, dict[str, Any]]:
    """The consumer asks for the published offer with an extra constraint; the provider
    counters with its published terms. Returns (consumer pid, provider pid, published offer)."""
    provider.publish(payload, offers=[{"permission": [USE]}])
    offer = catalog_offer(consumer, provider)
    asked = {**offer, "permission": [PURPOSE]}
    neg = consumer.api.post(
        "/api/v1/negotiations",
        {"counterPartyAddress": provider.dsp, "datasetId": "ds-1", "offer": asked},
    )
    assert neg["state"] == "REQUESTED"
    record = state_of(consumer, "negotiations", neg["id"], "OFFERED")
    return neg["id"], record["provider_pid"], offer


# counter-offers -----------------------------------------------------------------------------


def test_counter_offer_accepted_by_the_operator(
    provider: ConnectorProcess, consumer: ConnectorProcess, payload: Path
) -> None:
    cid, pid, offer = start_countered(consumer, provider, payload)

    mine = consumer.api.get(f"/api/v1/negotiations/{cid}")
    received = entries(mine, "received", "ContractOfferMessage")
    assert len(received) == 1
    assert rules(received[0]["body"]["offer"]) == {"permission": [USE]}
    assert mine["offer_by"] == "provider"
    assert rules(mine["offer"]) == {"permission": [USE]}
    wait_for(
        "the consumer to ask its operator",
        lambda: entries(
            consumer.api.get(f"/api/v1/negotiations/{cid}"), "note", "awaiting operator"
        ),
    )
    theirs = provider.api.get(f"/api/v1/negotiations/{pid}")
    assert theirs["state"] == "OFFERED"
    assert entries(theirs, "note", "counter-offer")[0]["detail"] == (
        "requested terms differ from the offer"
    )
    # The operator's waiting is not a timeout: nothing happens on its own.
    time.sleep(0.3)
    assert consumer.api.get(f"/api/v1/negotiations/{cid}")["state"] == "OFFERED"

    accepted = consumer.api.post(f"/api/v1/negotiations/{cid}/accept")
    assert accepted["state"] == "ACCEPTED"
    done = state_of(consumer, "negotiations", cid, "FINALIZED")
    state_of(provider, "negotiations", pid, "FINALIZED")

    agreement = consumer.api.get(f"/api/v1/agreements/{done['agreement_id']}")
    assert rules(agreement["body"]) == rules(offer) == {"permission": [USE]}
    assert agreement["verification"] == {"provider": "valid", "consumer": "valid"}
    kinds = [
        (e["direction"], e["message_type"]) for e in done["timeline"] if e["direction"] != "note"
    ]
    # The request's "sent" line is written when its answer arrives, which may be after
    # the counter-offer came in; everything after that is strictly ordered.
    assert sorted(kinds[:2]) == [
        ("received", "ContractOfferMessage"),
        ("sent", "ContractRequestMessage"),
    ]
    assert kinds[2:] == [
        ("sent", "ContractNegotiationEventMessage"),
        ("received", "ContractAgreementMessage"),
        ("sent", "ContractAgreementVerificationMessage"),
        ("received", "ContractNegotiationEventMessage"),
    ]
    # (the job that reacted to FINALIZED commits the state before it is marked done)
    wait_for(
        "the consumer's jobs to finish",
        lambda: consumer.api.get(f"/api/v1/negotiations/{cid}")["pending"] == [],
    )


def test_counter_request_is_countered_again(
    provider: ConnectorProcess, consumer: ConnectorProcess, payload: Path
) -> None:
    cid, pid, offer = start_countered(consumer, provider, payload)

    counter = {**offer, "permission": [COUNTRY]}
    answer = consumer.api.post(f"/api/v1/negotiations/{cid}/request", {"offer": counter})
    assert answer["state"] == "REQUESTED"
    assert rules(answer["offer"]) == {"permission": [COUNTRY]}

    def countered_twice() -> dict[str, Any] | None:
        record = consumer.api.get(f"/api/v1/negotiations/{cid}")
        offers = entries(record, "received", "ContractOfferMessage")
        return record if record["state"] == "OFFERED" and len(offers) == 2 else None

    record = wait_for("a second counter-offer", countered_twice)
    assert rules(record["offer"]) == {"permission": [USE]}
    theirs = provider.api.get(f"/api/v1/negotiations/{pid}")
    requests = entries(theirs, "received", "ContractRequestMessage")
    assert [rules(r["body"]["offer"]) for r in requests] == [
        {"permission": [PURPOSE]},
        {"permission": [COUNTRY]},
    ]
    assert len(entries(theirs, "note", "counter-offer")) == 2

    consumer.api.post(f"/api/v1/negotiations/{cid}/accept")
    done = state_of(consumer, "negotiations", cid, "FINALIZED")
    agreement = provider.api.get(f"/api/v1/agreements/{done['agreement_id']}")
    assert rules(agreement["body"]) == {"permission": [USE]}


def test_counter_request_out_of_turn_is_refused(
    provider: ConnectorProcess, consumer: ConnectorProcess, payload: Path
) -> None:
    provider.publish(payload)
    agreement_id = negotiate(consumer, provider, "ds-1")
    cid = consumer.api.get(f"/api/v1/agreements/{agreement_id}")["negotiation_id"]
    with pytest.raises(ApiError) as err:
        consumer.api.post(f"/api/v1/negotiations/{cid}/request", {"offer": {"@id": "x"}})
    assert err.value.status == 400
    assert "FINALIZED" in err.value.detail
    pid = consumer.api.get(f"/api/v1/negotiations/{cid}")["provider_pid"]
    with pytest.raises(ApiError) as err:
        provider.api.post(f"/api/v1/negotiations/{pid}/accept")
    assert err.value.status == 400
    assert "for the consumer" in err.value.detail


def test_counter_offer_accepted_through_the_cli(
    provider: ConnectorProcess, consumer: ConnectorProcess, payload: Path
) -> None:
    cid, pid, offer = start_countered(consumer, provider, payload)
    wait_for(
        "the consumer to ask its operator",
        lambda: entries(
            consumer.api.get(f"/api/v1/negotiations/{cid}"), "note", "awaiting operator"
        ),
    )

    shown = cli("--config", str(consumer.config), "negotiations", "show", cid)
    assert shown.returncode == 0, shown.stderr
    assert f"{cid}  consumer  OFFERED" in shown.stdout
    assert "received ContractOfferMessage" in shown.stdout
    assert "awaiting operator - the provider made an offer" in shown.stdout

    done = cli("--config", str(consumer.config), "negotiations", "accept", cid)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [cid, "ACCEPTED"]
    record = state_of(consumer, "negotiations", cid, "FINALIZED")
    agreement = consumer.api.get(f"/api/v1/agreements/{record['agreement_id']}")
    assert rules(agreement["body"]) == rules(offer)

    shown = cli("--config", str(consumer.config), "negotiations", "show", cid)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"{cid}  consumer  FINALIZED"
    assert not any(line.startswith("reason:") for line in lines)
    order = [
        "sent     ContractRequestMessage",
        "received ContractOfferMessage",
        "sent     ContractNegotiationEventMessage",
        "received ContractAgreementMessage",
        "sent     ContractAgreementVerificationMessage",
        "received ContractNegotiationEventMessage",
    ]
    found = [next(i for i, line in enumerate(lines) if text in line) for text in order[2:]]
    assert found == sorted(found)
    assert any(order[0] in line for line in lines)
    assert any(order[1] in line for line in lines)

    theirs = cli("--config", str(provider.config), "negotiations", "show", pid)
    assert theirs.returncode == 0, theirs.stderr
    assert f"{pid}  provider  FINALIZED" in theirs.stdout
    assert "counter-offer - requested terms differ from the offer" in theirs.stdout

    # A wrong action is refused with the state machine's reason and a non-zero exit.
    again = cli("--config", str(consumer.config), "negotiations", "accept", cid)
    assert again.returncode != 0
    assert "FINALIZED" in again.stderr


# termination --------------------------------------------------------------------------------


@pytest.mark.parametrize("by", ["consumer", "provider"])
def test_termination_in_offered_reaches_the_other_side(
    provider: ConnectorProcess, consumer: ConnectorProcess, payload: Path, by: str
) -> None:
    cid, pid, _ = start_countered(consumer, provider, payload)
    actor, actor_pid, other, other_pid = (
        (consumer, cid, provider, pid) if by == "consumer" else (provider, pid, consumer, cid)
    )
    why = f"{by} walks away: terms unacceptable"
    done = actor.api.post(
        f"/api/v1/negotiations/{actor_pid}/terminate", {"reason": why, "code": "DECLINED"}
    )
    assert done["state"] == "TERMINATED"
    assert done["reason"] == [why]

    record = state_of(other, "negotiations", other_pid, "TERMINATED")
    assert record["reason"] == [why]
    received = entries(record, "received", "ContractNegotiationTerminationMessage")
    assert len(received) == 1
    assert received[0]["detail"] == why
    assert received[0]["body"]["code"] == "DECLINED"
    assert received[0]["body"]["reason"] == [why]

    mine = wait_for(
        "the termination to be sent",
        lambda: (r := actor.api.get(f"/api/v1/negotiations/{actor_pid}"))["pending"] == [] and r,
    )
    assert entries(mine, "sent", "ContractNegotiationTerminationMessage")
    # Ended is ended: no operator action revives it, on either side.
    with pytest.raises(ApiError) as err:
        consumer.api.post(f"/api/v1/negotiations/{cid}/accept")
    assert err.value.status == 400
    assert "has ended" in err.value.detail
    with pytest.raises(ApiError) as err:
        other.api.post(f"/api/v1/negotiations/{other_pid}/terminate", {"reason": "again"})
    assert err.value.status == 400


def test_terminate_through_the_cli_shows_the_reason(
    provider: ConnectorProcess, consumer: ConnectorProcess, payload: Path
) -> None:
    cid, pid, _ = start_countered(consumer, provider, payload)
    done = cli(
        "--config", str(consumer.config), "negotiations", "terminate", cid, "--reason", "too slow"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [cid, "TERMINATED"]
    state_of(provider, "negotiations", pid, "TERMINATED")
    shown = cli("--config", str(provider.config), "negotiations", "show", pid)
    assert shown.returncode == 0, shown.stderr
    assert "reason: too slow" in shown.stdout.splitlines()
    assert "received ContractNegotiationTerminationMessage - too slow" in shown.stdout


# refused and unreachable ----------------------------------------------------------------------


def test_unknown_offer_is_refused_with_the_providers_reason(
    provider: ConnectorProcess, consumer: ConnectorProcess, payload: Path
) -> None:
    provider.publish(payload)
    offer = {**catalog_offer(consumer, provider), "@id": "urn:offer:does-not-exist"}
    neg = consumer.api.post(
        "/api/v1/negotiations",
        {"counterPartyAddress": provider.dsp, "datasetId": "ds-1", "offer": offer},
    )
    record = state_of(consumer, "negotiations", neg["id"], "TERMINATED")
    assert record["pending"] == []
    [reason] = record["reason"]
    assert "ContractRequestMessage was not delivered" in reason
    assert "answered 400" in reason
    assert "unknown offer urn:offer:does-not-exist for dataset ds-1" in reason
    [refused] = entries(record, "refused", "ContractRequestMessage")
    assert refused["status"] == 400
    assert "unknown offer urn:offer:does-not-exist" in refused["detail"]
    assert refused["body"]["@type"] == "ContractNegotiationError"
    assert refused["body"]["reason"] == ["unknown offer urn:offer:does-not-exist for dataset ds-1"]
    assert entries(record, "note", "TERMINATED")
    # A refusal is final: the request was not retried.
    assert not entries(record, "failed", "ContractRequestMessage")
    assert provider.api.get("/api/v1/negotiations") == []


def test_unreachable_provider_is_retried_then_terminated(tmp_path: Path) -> None:
    consumer = ConnectorProcess(tmp_path, "consumer")
    consumer.set(retry_base_seconds="0.3", retry_max_attempts="3")
    consumer.start()
    try:
        nobody = f"http://127.0.0.1:{free_port()}/dsp/2025-1"
        neg = consumer.api.post(
            "/api/v1/negotiations",
            {
                "counterPartyAddress": nobody,
                "datasetId": "ds-1",
                "offer": {"@id": "urn:offer:1", "permission": [USE]},
            },
        )
        assert neg["state"] == "REQUESTED"
        assert neg["pending"] == ["ContractRequestMessage"]

        retrying = wait_for(
            "a failed attempt",
            lambda: (
                entries(
                    r := consumer.api.get(f"/api/v1/negotiations/{neg['id']}"),
                    "failed",
                    "ContractRequestMessage",
                )
                and r
            ),
        )
        assert retrying["state"] == "REQUESTED"
        assert retrying["pending"] == ["ContractRequestMessage"]
        first = entries(retrying, "failed", "ContractRequestMessage")[0]
        assert first["detail"].startswith("attempt 1 failed, retrying in ")
        assert nobody in first["detail"]

        record = state_of(consumer, "negotiations", neg["id"], "TERMINATED")
        assert record["pending"] == []
        failed = entries(record, "failed", "ContractRequestMessage")
        assert [f["detail"].split(",")[0] for f in failed] == [
            "attempt 1 failed",
            "attempt 2 failed",
        ]
        [reason] = record["reason"]
        assert reason.startswith(
            "ContractRequestMessage was not delivered: gave up after 3 attempts"
        )
        assert nobody in reason
        assert entries(record, "note", "TERMINATED")[0]["detail"] == reason
    finally:
        consumer.stop()


# transfers: suspension, resumption, termination ----------------------------------------------


class Trickle:
    """An upstream HTTP source that never ends on its own: a small chunk every 20 ms.

    Counts the requests it gets and how many are still being served, so a test can see
    whether the connector still moves data.
    """

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.requests = 0
        self.active = 0
        trickle = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with trickle.lock:
                    trickle.requests += 1
                    trickle.active += 1
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.end_headers()
                    while not trickle.stopping.is_set():
                        self.wfile.write(b"\x5a" * 4096)
                        self.wfile.flush()
                        trickle.stopping.wait(0.02)
                except OSError:
                    pass
                finally:
                    with trickle.lock:
                        trickle.active -= 1

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/stream"

    def close(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def trickle() -> Iterator[Trickle]:
    source = Trickle()
    yield source
    source.close()


def flowing(consumer: ConnectorProcess, cid: str, trickle: Trickle, requests: int) -> None:
    """Wait until the `requests`-th upstream request is being served and bytes arrive."""
    wait_for("the upstream to be read", lambda: trickle.requests == requests and trickle.active)
    start = received_size(consumer, cid)
    wait_for("bytes to arrive", lambda: received_size(consumer, cid) > start)


def stopped(
    consumer: ConnectorProcess, cid: str, provider: ConnectorProcess, pid: str, trickle: Trickle
) -> None:
    """Wait until no data moves: the upstream is let go, no data job is left on either side,
    and the received file stays put."""
    wait_for("the upstream to be released", lambda: trickle.active == 0)
    for node, tid in ((consumer, cid), (provider, pid)):
        wait_for(
            f"{node.name}'s data job to end",
            lambda n=node, t=tid: n.api.get(f"/api/v1/transfers/{t}")["pending"] == [],
        )
    wait_for(
        "the consumer to let go of a broken push",
        lambda: not [p for p in received_files(consumer, cid) if p.suffix == ".part"],
    )
    before = received_size(consumer, cid)
    time.sleep(0.3)
    assert received_size(consumer, cid) == before
    assert trickle.active == 0


def transfer_with_trickle(
    consumer: ConnectorProcess,
    provider: ConnectorProcess,
    payload: Path,
    trickle: Trickle,
    fmt: str,
) -> tuple[str, str]:
    provider.publish(payload, source={"type": "http", "url": trickle.url})
    agreement_id = negotiate(consumer, provider, "ds-1")
    tp = consumer.api.post("/api/v1/transfers", {"agreementId": agreement_id, "format": fmt})
    record = state_of(consumer, "transfers", tp["id"], "STARTED")
    state_of(provider, "transfers", record["provider_pid"], "STARTED")
    flowing(consumer, tp["id"], trickle, 1)
    return tp["id"], record["provider_pid"]


def test_pull_suspended_by_provider_resumed_and_terminated_by_consumer(
    provider: ConnectorProcess, consumer: ConnectorProcess, payload: Path, trickle: Trickle
) -> None:
    cid, pid = transfer_with_trickle(consumer, provider, payload, trickle, "HttpData-PULL")

    done = provider.api.post(f"/api/v1/transfers/{pid}/suspend", {"reason": "maintenance window"})
    assert done["state"] == "SUSPENDED"
    record = state_of(consumer, "transfers", cid, "SUSPENDED")
    assert record["reason"] == ["maintenance window"]
    [received] = entries(record, "received", "TransferSuspensionMessage")
    assert received["detail"] == "maintenance window"
    stopped(consumer, cid, provider, pid, trickle)
    # The provider enforces the suspension: it cut the stream it was serving.
    [cut] = entries(provider.api.get(f"/api/v1/transfers/{pid}"), "note", "pull")
    assert cut["detail"].startswith("stopped serving after ")
    assert cut["detail"].endswith(" bytes: the transfer is SUSPENDED")
    assert consumer.api.get(f"/api/v1/transfers/{cid}")["sha256"] is None

    resumed = consumer.api.post(f"/api/v1/transfers/{cid}/resume")
    assert resumed["state"] == "STARTED"
    theirs = state_of(provider, "transfers", pid, "STARTED")
    assert entries(theirs, "received", "TransferStartMessage")
    flowing(consumer, cid, trickle, 2)

    ended = consumer.api.post(f"/api/v1/transfers/{cid}/terminate", {"reason": "no longer needed"})
    assert ended["state"] == "TERMINATED"
    theirs = state_of(provider, "transfers", pid, "TERMINATED")
    assert theirs["reason"] == ["no longer needed"]
    assert entries(theirs, "received", "TransferTerminationMessage")[0]["detail"] == (
        "no longer needed"
    )
    stopped(consumer, cid, provider, pid, trickle)
    mine = consumer.api.get(f"/api/v1/transfers/{cid}")
    assert mine["state"] == "TERMINATED"
    assert entries(mine, "sent", "TransferTerminationMessage")
    assert entries(mine, "note", "pull")[-1]["detail"].startswith(
        "pull stopped, the transfer is TERMINATED: "
    )
    assert mine["reason"] == ["no longer needed"]
    assert mine["sha256"] is None
    with pytest.raises(ApiError) as err:
        provider.api.post(f"/api/v1/transfers/{pid}/resume")
    assert err.value.status == 400
    assert "has ended" in err.value.detail


def test_push_suspended_by_consumer_resumed_and_terminated_by_provider(
    provider: ConnectorProcess, consumer: ConnectorProcess, payload: Path, trickle: Trickle
) -> None:
    cid, pid = transfer_with_trickle(consumer, provider, payload, trickle, "HttpData-PUSH")

    done = consumer.api.post(f"/api/v1/transfers/{cid}/suspend", {"reason": "disk full"})
    assert done["state"] == "SUSPENDED"
    record = state_of(provider, "transfers", pid, "SUSPENDED")
    assert record["reason"] == ["disk full"]
    stopped(consumer, cid, provider, pid, trickle)
    [cut] = entries(provider.api.get(f"/api/v1/transfers/{pid}"), "note", "push")
    assert cut["detail"].startswith("push stopped, the transfer is SUSPENDED: ")

    provider.api.post(f"/api/v1/transfers/{pid}/resume")
    state_of(consumer, "transfers", cid, "STARTED")
    flowing(consumer, cid, trickle, 2)

    ended = provider.api.post(
        f"/api/v1/transfers/{pid}/terminate", {"reason": "licence revoked", "code": "REVOKED"}
    )
    assert ended["state"] == "TERMINATED"
    record = state_of(consumer, "transfers", cid, "TERMINATED")
    assert record["reason"] == ["licence revoked"]
    [received] = entries(record, "received", "TransferTerminationMessage")
    assert received["body"]["code"] == "REVOKED"
    stopped(consumer, cid, provider, pid, trickle)
    theirs = provider.api.get(f"/api/v1/transfers/{pid}")
    assert entries(theirs, "note", "push")[-1]["detail"].startswith(
        "push stopped, the transfer is TERMINATED: "
    )
    assert entries(theirs, "sent", "TransferTerminationMessage")
    with pytest.raises(ApiError) as err:
        consumer.api.post(f"/api/v1/transfers/{cid}/resume")
    assert err.value.status == 400
