"""Invoices do not depend on the provider's clock: a range sent again after an interrupted
stream is billed once, in the month of the first record (in chain order) that covers it, also
when the clock stepped back across a month boundary between the cut and the resume.

The chain is a real one: the provider's own meter writes and signs it with the provider's key
into the provider's store, the consumer's key countersigns it, and the invoices come from the
real `connector billing invoice` against the restarted provider. The only test double is the
provider's wall clock (outside the project), so records can be dated in chosen months.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connector.config import load_settings
from connector.identity import keys as keyfile
from connector.identity import signatures
from connector.metering.meter import Meter
from connector.model.metering import MeteringEntry, MeteringKind
from connector.model.records import Transfer
from connector.policy.decision import PermitAll
from connector.runtime import Runtime, egress_for
from connector.store.gateway import Database
from connector.store.open import open_store
from tests.harness import ConnectorProcess, cli
from tests.test_metering import MIB, PRICED, agree

SIZE = 3 * MIB + 17


class WallClock:
    """Test double for the provider's system clock: `utcnow` answers the time set here."""

    def __init__(self) -> None:
        self.now = ""

    def __call__(self) -> str:
        return self.now


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[ConnectorProcess, ConnectorProcess]]:
    provider = ConnectorProcess(tmp_path, "provider")
    consumer = ConnectorProcess(tmp_path, "consumer")
    for node in (provider, consumer):
        node.start()
    yield provider, consumer
    consumer.stop()
    provider.stop()


def runtime(node: ConnectorProcess) -> Runtime:
    """The node's own settings, store and key, as its `serve` opens them (1 MiB windows)."""
    settings = load_settings(node.config, metering_window_bytes=MIB)
    return Runtime(
        settings=settings,
        db=Database(open_store(settings)),
        keys=keyfile.load(settings.private_key_path),
        egress=egress_for(settings),
        decisions=PermitAll(),
    )


async def stream(
    rt: Runtime, tp: Transfer, clock: WallClock, at: str, data: bytes, start: int, end: int
) -> Meter:
    """One stream of `data[start:end]` metered by the provider's meter with the clock at `at`."""
    clock.now = at
    meter = await Meter.open(rt, tp, offset=start)
    for at_byte in range(start, end, 256 * 1024):
        await meter.feed(data[at_byte : min(end, at_byte + 256 * 1024)])
    return meter


def invoice(provider: ConnectorProcess, agreement_id: str, period: str) -> dict[str, Any]:
    run = cli("--config", str(provider.config), "billing", "invoice", "--agreement", agreement_id,
              "--period", period)  # fmt: skip
    assert run.returncode == 0, run.stderr
    bill: dict[str, Any] = json.loads(run.stdout)
    return bill


def union(ranges: list[tuple[int, int]]) -> int:
    total, reach = 0, 0
    for start, end in sorted(ranges):
        total += max(0, end - max(start, reach))
        reach = max(reach, end)
    return total


def test_a_range_resumed_after_the_clock_stepped_back_is_billed_once(
    nodes: tuple[ConnectorProcess, ConnectorProcess],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    provider, consumer = nodes
    data = os.urandom(SIZE)
    agreement_id = agree(provider, consumer, tmp_path, data, offers=[PRICED])
    provider.stop()  # the chain is written into its store while it is down

    clock = WallClock()
    monkeypatch.setattr("connector.metering.meter.utcnow", clock)
    rt = runtime(provider)
    consumer_keys = keyfile.load(load_settings(consumer.config).private_key_path)

    def transfer(tid: str) -> Transfer:
        return Transfer(
            id=tid, role="provider", state="STARTED", agreement_id=agreement_id,
            dataset_id="ds-1", format="HttpData-PULL", counterparty_id=consumer.did,
            counterparty_address=consumer.dsp,
        )  # fmt: skip

    cut, resumed = MIB + MIB // 2, MIB + MIB // 4  # the consumer held less than was metered

    async def streams() -> MeteringEntry | None:
        # forward: cut on 31 October, resumed on 1 November (the normal case)
        forward = transfer("tp-forward")
        await (
            await stream(rt, forward, clock, "2026-10-31T23:59:58.000Z", data, 0, cut)
        ).interrupt()
        last = await stream(rt, forward, clock, "2026-11-01T00:00:02.000Z", data, resumed, SIZE)
        await last.close(MeteringKind.COMPLETE)
        # back: cut on 1 December, resumed after the provider's clock stepped back to 30
        # November; the consumer never answers the resumed stream's last record (disputed)
        back = transfer("tp-back")
        await (await stream(rt, back, clock, "2026-12-01T00:00:01.000Z", data, 0, cut)).interrupt()
        last = await stream(rt, back, clock, "2026-11-30T23:59:59.000Z", data, resumed, SIZE)
        return await last.close(MeteringKind.COMPLETE)

    unanswered = asyncio.run(streams())
    assert unanswered is not None

    chain = rt.store.metering_chain(agreement_id)
    for entry in chain:
        if entry.seq != unanswered.seq:
            receipt = signatures.sign(entry.record, consumer.did, consumer_keys)
            rt.store.set_metering_receipt(agreement_id, entry.seq, receipt=receipt, refusal=None)
    provider.start()

    bills = {p: invoice(provider, agreement_id, p) for p in ("2026-10", "2026-11", "2026-12")}
    billed = {p: bill["usage"]["bytes"] for p, bill in bills.items()}
    receipted: dict[str, list[tuple[int, int]]] = {}
    for entry in chain:
        if entry.seq != unanswered.seq:
            offset, length = entry.record["offset"], entry.record["length"]
            receipted.setdefault(entry.transfer_id, []).append((offset, offset + length))
    assert union(receipted["tp-back"]) == 2 * MIB + MIB // 4  # up to its last receipted window
    # every receipted byte is billed, none twice, across the months
    assert sum(billed.values()) == sum(union(r) for r in receipted.values())
    assert billed == {
        "2026-10": cut,  # forward's first stream
        "2026-11": (SIZE - cut) + (2 * MIB + MIB // 4 - cut),  # forward's rest, back's new bytes
        "2026-12": cut,  # back's first stream: its bytes sent again in November stay here
    }
    assert bills["2026-12"]["usage"]["transfers"] == 1
    assert bills["2026-11"]["usage"]["transfers"] == 2
    # whole windows dated December bill all their records
    assert bills["2026-12"]["usage"]["records"] == data[:cut].count(b"\n")
    # the unanswered record is disputed in its own month only, with its bytes
    assert [d["seq"] for d in bills["2026-11"]["disputed"]] == [unanswered.seq]
    assert bills["2026-11"]["disputed"][0]["bytes"] == f"{2 * MIB + MIB // 4}-{SIZE - 1}"
    assert bills["2026-10"]["disputed"] == bills["2026-12"]["disputed"] == []
    # each invoice relies on the records dated in its month
    dated = {p: [e.seq for e in chain if e.record["to"].startswith(p)] for p in bills}
    for period, bill in bills.items():
        assert [r["seq"] for r in bill["chain"]["records"]] == dated[period]
