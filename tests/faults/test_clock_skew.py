"""Clocks apart by more than the token leeway, and transfers that no one touches any more.

A provider restarted mid-pull with its clock 300 s behind (libfaketime, tests/harness.
skewed_clock) refuses the consumer's tokens (issued in its future, beyond the 30 s leeway)
and its own pull token (issued before the restart, now in its future). Such refusals are
answered 401 CLOCK_SKEW; the consumer retries them with the outbox's backoff, its timeline
names clock skew with both clocks, and once the provider's clock is right again both sides
end. Before, the pull ended TERMINATED at the first 401, the termination message was refused
and never retried, and the provider stayed STARTED for good.

The idle watchdog ends a transfer (negotiation) that no party has touched for
transfer_idle_seconds (negotiation_idle_seconds) and that has nothing in the outbox: TERMINATED
with the reason, on both sides when the peer can be reached. Its idle time is set by a restart
once the process is where the test wants it, so no step races the watchdog.
"""

from __future__ import annotations

import email.utils
import hashlib
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connector.clock import skew_refusal
from tests.harness import (
    ConnectorProcess,
    GatedSource,
    ThrottledUpstream,
    entries,
    negotiate,
    received_size,
    skewed_clock,
    state_of,
    wait_for,
)

MIB = 1024 * 1024
SKEW = -300  # provider behind: beyond the 30 s leeway and the 120 s token lifetime
FAST_RETRY = {"retry_base_seconds": "0.2", "retry_max_seconds": "1", "retry_max_attempts": "1000"}
# No policy engine: clocks are the subject here, and the embedded engine's `opa build` child
# would inherit libfaketime, which it does not always survive.
NO_POLICIES = {"policy_engine": "permit-all"}
STAMP = r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)"
CLOCKS = re.compile(
    rf"clock skew: (.+?) refused our token for its time \(401 CLOCK_SKEW\); our clock {STAMP},"
    rf" (.+?)'s clock {STAMP} \(its Date header\), ([+-]\d+) s apart"
)


def node(tmp_path: Path, name: str) -> ConnectorProcess:
    process = ConnectorProcess(tmp_path, name)
    process.set(**FAST_RETRY, **NO_POLICIES)
    return process


@pytest.fixture
def upstream() -> Iterator[GatedSource]:
    double = GatedSource(os.urandom(2 * MIB), MIB)
    yield double
    double.close()


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[ConnectorProcess, ConnectorProcess]]:
    provider = node(tmp_path, "provider").start()
    consumer = node(tmp_path, "consumer").start()
    yield provider, consumer
    consumer.stop()
    provider.stop()


def pull_half_way(
    provider: ConnectorProcess, consumer: ConnectorProcess, upstream: GatedSource
) -> tuple[str, str]:
    """A pull of the gated 2 MiB under way, its first MiB received: (consumer id, provider id)."""
    provider.api.post(
        "/api/v1/datasets", {"id": "ds-up", "source": {"type": "http", "url": upstream.url}}
    )
    agreement = negotiate(consumer, provider, "ds-up")
    cid = consumer.api.post(
        "/api/v1/transfers", {"agreementId": agreement, "format": "HttpData-PULL"}
    )["id"]
    pid = str(state_of(consumer, "transfers", cid, "STARTED")["provider_pid"])
    wait_for("the first MiB to arrive", lambda: received_size(consumer, cid) >= MIB)
    return cid, pid


def skew_refusals(node: ConnectorProcess, pid: str, message_type: str) -> list[dict[str, Any]]:
    record = node.api.get(f"/api/v1/transfers/{pid}")
    return [e for e in entries(record, "failed", message_type) if "clock skew" in e["detail"]]


def assert_names_both_clocks(detail: str, peer: str) -> None:
    """The refusal names the peer, our clock (about now) and the peer's (SKEW off)."""
    found = CLOCKS.search(detail)
    assert found, detail
    refused_by, ours, named, theirs, apart = found.groups()
    assert refused_by == named == peer, detail
    now = time.time()
    ours_s = time.mktime(time.strptime(ours, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    theirs_s = time.mktime(time.strptime(theirs, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert abs(ours_s - now) < 60, detail
    assert abs(theirs_s - ours_s - SKEW) <= 5, detail
    assert abs(int(apart) - SKEW) <= 5, detail


def test_a_pull_refused_for_clock_skew_is_retried_and_completes_once_the_clock_is_right(
    pair: tuple[ConnectorProcess, ConnectorProcess], upstream: GatedSource
) -> None:
    provider, consumer = pair
    cid, pid = pull_half_way(provider, consumer, upstream)

    provider.kill()
    provider.start(env=skewed_clock(SKEW))
    # The provider refuses its own pull token (issued before the restart, now 300 s in its
    # future): 401 CLOCK_SKEW, which the consumer retries instead of ending the transfer.
    refused = wait_for(
        "two pull attempts refused for clock skew",
        lambda: (found := skew_refusals(consumer, cid, "dp-pull")) and len(found) >= 2 and found,
    )
    for entry in refused:
        assert "retrying in" in entry["detail"], entry["detail"]
        assert_names_both_clocks(entry["detail"], "the provider")
    assert consumer.api.get(f"/api/v1/transfers/{cid}")["state"] == "STARTED"
    assert provider.api.get(f"/api/v1/transfers/{pid}")["state"] == "STARTED"

    # The clock set right (a restart without faketime): the pull resumes and both sides end.
    upstream.release.set()
    provider.stop()
    provider.start()
    done = state_of(consumer, "transfers", cid, "COMPLETED")
    theirs = state_of(provider, "transfers", pid, "COMPLETED")
    expected = hashlib.sha256(upstream.data).hexdigest()
    assert done["bytes"] == 2 * MIB and done["sha256"] == expected
    assert theirs["state"] == "COMPLETED"


def test_a_termination_refused_for_clock_skew_is_retried_until_the_provider_ends_too(
    pair: tuple[ConnectorProcess, ConnectorProcess], upstream: GatedSource
) -> None:
    provider, consumer = pair
    cid, pid = pull_half_way(provider, consumer, upstream)

    provider.kill()
    provider.start(env=skewed_clock(SKEW))
    consumer.api.post(f"/api/v1/transfers/{cid}/terminate", {"reason": "no longer needed"})
    # The consumer's token is from the provider's future: 401 CLOCK_SKEW, retried.
    refused = wait_for(
        "the termination to be refused for clock skew and retried",
        lambda: skew_refusals(consumer, cid, "TransferTerminationMessage"),
    )
    assert "retrying in" in refused[0]["detail"], refused[0]["detail"]
    assert_names_both_clocks(refused[0]["detail"], provider.did)
    assert "TransferTerminationMessage" in consumer.api.get(f"/api/v1/transfers/{cid}")["pending"]
    assert provider.api.get(f"/api/v1/transfers/{pid}")["state"] == "STARTED"

    provider.stop()
    provider.start()
    theirs = state_of(provider, "transfers", pid, "TERMINATED")
    assert theirs["reason"] == ["no longer needed"], theirs["reason"]
    mine = wait_for(
        "the consumer's outbox to drain",
        lambda: (tp := consumer.api.get(f"/api/v1/transfers/{cid}"))["pending"] == [] and tp,
    )
    assert mine["state"] == "TERMINATED"
    assert entries(mine, "sent", "TransferTerminationMessage"), mine["timeline"]


# the idle watchdog ------------------------------------------------------------------------------


def test_the_watchdog_ends_a_transfer_whose_consumer_is_gone(
    pair: tuple[ConnectorProcess, ConnectorProcess], upstream: GatedSource
) -> None:
    provider, consumer = pair
    _, pid = pull_half_way(provider, consumer, upstream)
    consumer.kill()  # for good

    provider.set(transfer_idle_seconds="2")
    provider.kill()  # its stream waits on the gated upstream: no grace to sit out
    provider.start()
    ended = state_of(provider, "transfers", pid, "TERMINATED")
    assert ended["reason"] == ["no activity for 2 s"], ended["reason"]
    notes = [e["detail"] for e in entries(ended, "note", "TERMINATED")]
    assert any("no activity for 2 s" in n for n in notes), notes
    # the next step: the termination, retried until the consumer can be reached
    assert ended["pending"] == ["TransferTerminationMessage"], ended["pending"]


def test_the_watchdog_ends_an_idle_suspended_transfer_on_both_sides(
    pair: tuple[ConnectorProcess, ConnectorProcess], upstream: GatedSource
) -> None:
    provider, consumer = pair
    cid, pid = pull_half_way(provider, consumer, upstream)
    consumer.api.post(f"/api/v1/transfers/{cid}/suspend", {"reason": "later"})
    state_of(provider, "transfers", pid, "SUSPENDED")
    wait_for(
        "the consumer's suspension to be delivered",
        lambda: entries(
            consumer.api.get(f"/api/v1/transfers/{cid}"), "sent", "TransferSuspensionMessage"
        ),
    )

    provider.set(transfer_idle_seconds="2")
    provider.kill()  # its stream waits on the gated upstream: no grace to sit out
    provider.start()
    ended = state_of(provider, "transfers", pid, "TERMINATED")
    assert ended["reason"] == ["no activity for 2 s"], ended["reason"]
    theirs = state_of(consumer, "transfers", cid, "TERMINATED")
    assert theirs["reason"] == ["no activity for 2 s"], theirs["reason"]


def test_a_consumer_holding_the_whole_file_ends_on_both_sides_once_the_clock_is_right(
    pair: tuple[ConnectorProcess, ConnectorProcess], upstream: GatedSource
) -> None:
    """The provider restarted 300 s ahead: its own pull token still passes, so the consumer
    receives everything, but the consumer's tokens have expired by the provider's clock, so
    fetching the metering records to receipt them is refused for clock skew: retried, not
    the end. Once the clock is right both sides end alike: the consumer refuses the windows
    the provider dated by its wrong clock (in the future) and terminates, and the provider,
    reached again, terminates too (before, the consumer ended TERMINATED with the whole file
    and the provider stayed STARTED)."""
    provider, consumer = pair
    cid, pid = pull_half_way(provider, consumer, upstream)

    provider.kill()
    upstream.release.set()
    provider.start(env=skewed_clock(-SKEW))
    wait_for("the whole file to arrive", lambda: received_size(consumer, cid) >= 2 * MIB)
    refused = wait_for(
        "a call to the provider refused for clock skew",
        lambda: skew_refusals(consumer, cid, "dp-pull"),
    )
    assert "refused our token for its time (401 CLOCK_SKEW)" in refused[0]["detail"]
    assert "retrying in" in refused[0]["detail"], refused[0]["detail"]
    assert consumer.api.get(f"/api/v1/transfers/{cid}")["state"] == "STARTED"
    assert provider.api.get(f"/api/v1/transfers/{pid}")["state"] == "STARTED"

    provider.stop()
    provider.start()
    mine = state_of(consumer, "transfers", cid, "TERMINATED")
    assert mine["sha256"] == hashlib.sha256(upstream.data).hexdigest()
    assert mine["reason"], mine
    assert all("in the future" in r for r in mine["reason"]), mine["reason"]
    theirs = state_of(provider, "transfers", pid, "TERMINATED")
    assert theirs["reason"] == mine["reason"]


def test_the_watchdog_ends_an_offer_no_operator_answers_on_both_sides(
    pair: tuple[ConnectorProcess, ConnectorProcess], tmp_path: Path
) -> None:
    """A counter-offer waits for the consumer's operator, who never answers: after
    negotiation_idle_seconds the consumer ends the negotiation, and the provider with it."""
    provider, consumer = pair
    data = tmp_path / "data.bin"
    data.write_bytes(b"x" * 1024)
    provider.publish(data, offers=[{"permission": [{"action": "use"}]}])
    catalog = consumer.api.post("/api/v1/catalog/request", {"counterPartyAddress": provider.dsp})
    offer = next(d for d in catalog["dataset"] if d["@id"] == "ds-1")["hasPolicy"][0]
    other = {"action": "use", "constraint": [
        {"leftOperand": "purpose", "operator": "eq", "rightOperand": "research"}]}  # fmt: skip
    asked = {**offer, "permission": [other]}
    cid = consumer.api.post(
        "/api/v1/negotiations",
        {"counterPartyAddress": provider.dsp, "datasetId": "ds-1", "offer": asked},
    )["id"]
    pid = state_of(consumer, "negotiations", cid, "OFFERED")["provider_pid"]
    wait_for(
        "both outboxes to drain",
        lambda: (
            consumer.api.get(f"/api/v1/negotiations/{cid}")["pending"] == []
            and provider.api.get(f"/api/v1/negotiations/{pid}")["pending"] == []
        ),
    )
    assert provider.api.get(f"/api/v1/negotiations/{pid}")["state"] == "OFFERED"

    consumer.set(negotiation_idle_seconds="2")
    consumer.stop()
    consumer.start()
    mine = state_of(consumer, "negotiations", cid, "TERMINATED")
    assert mine["reason"] == ["no activity for 2 s"], mine["reason"]
    theirs = state_of(provider, "negotiations", pid, "TERMINATED")
    assert theirs["reason"] == ["no activity for 2 s"], theirs["reason"]


# telling a clock refusal apart on the sending side -----------------------------------------------


def test_a_401_is_taken_for_clock_skew_by_its_code_or_the_peers_date_header() -> None:
    """A peer without the CLOCK_SKEW code is recognised by its Date header; the error names
    both clocks from parsed values and repeats nothing of the peer's text."""
    now = time.time()
    hostile = {"code": "401", "reason": ["<script>call +1-555</script>"]}
    behind = {"Date": email.utils.formatdate(now + SKEW, usegmt=True)}
    skew = skew_refusal("POST x", 401, behind, hostile, "did:web:peer")
    assert skew is not None and skew.retry and skew.http_status == 401
    assert "clock skew" in str(skew) and "script" not in str(skew), str(skew)
    assert "did:web:peer's clock" in str(skew) and " s apart" in str(skew), str(skew)
    # the same refusal from a peer whose clock agrees with ours: not a clock matter, final
    in_step = {"Date": email.utils.formatdate(now, usegmt=True)}
    assert skew_refusal("POST x", 401, in_step, hostile, "did:web:peer") is None
    # coded, without a usable Date header: retried, the peer's clock said to be unknown
    coded = skew_refusal("POST x", 401, {"Date": "yesterday"}, {"code": "CLOCK_SKEW"}, "p")
    assert coded is not None and coded.retry
    assert "p's clock not given" in str(coded), str(coded)
    # coded while the clocks agree: the token itself expired (a pull token past its
    # lifetime), which no retry can help
    expired = skew_refusal("GET x", 401, in_step, {"code": "CLOCK_SKEW"}, "p")
    assert expired is not None and not expired.retry
    assert "the token has expired" in str(expired), str(expired)
    # another status is never a clock matter
    assert skew_refusal("POST x", 403, behind, {"code": "CLOCK_SKEW"}, "p") is None


def test_the_watchdog_leaves_a_slow_push_that_is_still_arriving_alone(
    tmp_path: Path,
) -> None:
    """A consumer has no job while a push arrives: the bytes arriving are its activity. A push
    that takes longer than the idle time but never stops flowing completes."""
    files = tmp_path / "upstream"
    files.mkdir()
    data = os.urandom(5 * MIB)
    (files / "slow.bin").write_bytes(data)
    slow = ThrottledUpstream(files, rate=MIB)  # five seconds of data, idle time two
    provider = node(tmp_path, "provider").start()
    consumer = node(tmp_path, "consumer")
    consumer.set(transfer_idle_seconds="2")
    consumer.start()
    try:
        provider.api.post(
            "/api/v1/datasets",
            {"id": "ds-slow", "source": {"type": "http", "url": slow.url + "/slow.bin"}},
        )
        agreement = negotiate(consumer, provider, "ds-slow")
        cid = consumer.api.post(
            "/api/v1/transfers", {"agreementId": agreement, "format": "HttpData-PUSH"}
        )["id"]
        wait_for("the push to begin", lambda: received_size(consumer, cid) > 0)
        done = consumer.api.wait_state("transfers", cid, {"COMPLETED", "TERMINATED"}, timeout=60)
        assert done["state"] == "COMPLETED", done.get("reason")
        assert done["sha256"] == hashlib.sha256(data).hexdigest()
    finally:
        consumer.stop()
        provider.stop()
        slow.close()
