"""Finding 8: a provider must not be able to bill records it never delivered.

The provider is a real connector turned hostile: while its stream is held at a gate, the test
rewrites the windows already metered in its database (inflated record counts, an unknown kind,
a window that closes before it opens, a broken hash link) and signs them again with the
provider's own key, keeping the chain linked; then the stream goes on. The consumer must
recount and check every record before it receipts one, and refuse the forged ones.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connector.identity import keys as keyfile
from connector.identity.signatures import seal
from tests.harness import ConnectorProcess, GatedSource, negotiate, wait_for

WINDOW = 32 * 1024
LINES = [f"record {i:06d} of the data set, fifty bytes long.....\n".encode() for i in range(2000)]
DATA = b"".join(LINES)
GATE = 2 * WINDOW  # the stream halts after two full windows
IN_FIRST = DATA[:WINDOW].count(b"\n")  # records in the first window


@pytest.fixture
def gated() -> Iterator[GatedSource]:
    source = GatedSource(DATA, GATE)  # the stream halts after two full windows
    yield source
    source.close()


def _later(text: str, seconds: int) -> str:
    at = datetime.fromisoformat(text) + timedelta(seconds=seconds)
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def inflate(records: dict[int, dict[str, Any]]) -> int:
    records[1]["records"] *= 1000  # 618 records billed as 618,000
    return 1


def one_more(records: dict[int, dict[str, Any]]) -> int:
    records[1]["records"] += 1
    return 1


def unknown_kind(records: dict[int, dict[str, Any]]) -> int:
    records[1]["kind"] = "bonus"
    return 1


def backwards_in_time(records: dict[int, dict[str, Any]]) -> int:
    records[1]["from"] = _later(records[1]["to"], 3)
    return 1


def broken_link(records: dict[int, dict[str, Any]]) -> int:
    records[2]["prev"] = "f" * 64
    return 2


TAMPERINGS: dict[str, tuple[Callable[[dict[int, dict[str, Any]]], int], str]] = {
    "inflated record count": (inflate, "records cannot fit in 32768 bytes"),
    "one record more": (one_more, f"hold {IN_FIRST} records, the record claims {IN_FIRST + 1}"),
    "unknown kind": (unknown_kind, "kind 'bonus' is not a metering record kind"),
    "window closes before it opens": (backwards_in_time, "after it closes at"),
    "broken hash link": (broken_link, "does not link to record 1"),
}


def forge(provider: ConnectorProcess, agreement_id: str, tamper: Callable[..., int]) -> int:
    """Rewrite the provider's records as a dishonest provider would: changed, signed again
    with its own key, the chain re-linked. Returns the seq of the forged record."""
    pair = keyfile.load(provider.dir / "keys" / "private.pem")
    db = sqlite3.connect(provider.dir / "connector.db", timeout=30)
    try:
        rows = db.execute(
            "select seq, record from metering where agreement_id = ? order by seq", [agreement_id]
        ).fetchall()
        records = {seq: json.loads(text) for seq, text in rows}
        forged = tamper(records)
        previous: str | None = None
        with db:
            for seq in sorted(records):
                record = records[seq]
                if previous is not None and not (tamper is broken_link and seq == forged):
                    record["prev"] = previous  # the chain stays linked: only counting shows
                digest, signature = seal(record, provider.did, pair)
                db.execute(
                    "update metering set record = ?, hash = ?, signature = ?, kind = ?"
                    " where agreement_id = ? and seq = ?",
                    [json.dumps(record), digest, signature, record["kind"], agreement_id, seq],
                )
                previous = digest
    finally:
        db.close()
    return forged


@pytest.mark.parametrize("name", list(TAMPERINGS))
def test_the_consumer_recounts_and_refuses_forged_records(
    guarded: Callable[..., ConnectorProcess], gated: GatedSource, name: str
) -> None:
    tamper, why = TAMPERINGS[name]
    provider = guarded("provider", metering_window_bytes=str(WINDOW))
    consumer = guarded("consumer")
    source = {"type": "http", "url": gated.url}
    provider.api.post("/api/v1/datasets", {"id": "ds-1", "title": "lines", "source": source})
    agreement_id = negotiate(consumer, provider, "ds-1")
    tp = consumer.api.post("/api/v1/transfers", {"agreementId": agreement_id,
                                                 "format": "HttpData-PULL"})  # fmt: skip

    def held() -> bool:
        chain = provider.api.get(f"/api/v1/agreements/{agreement_id}/metering")["chain"]
        return [line["record"]["kind"] for line in chain] == ["start", "window", "window"]

    wait_for("two windows metered before the gate", held)
    seq = forge(provider, agreement_id, tamper)
    gated.release.set()

    done = consumer.api.wait_state("transfers", tp["id"], {"COMPLETED", "TERMINATED"}, timeout=30)
    assert done["state"] == "TERMINATED", done
    reason = " ".join(done["reason"])
    assert f"metering record {seq} refused" in reason and why in reason, reason

    def answered() -> list[dict[str, Any]] | None:
        chain = provider.api.get(f"/api/v1/agreements/{agreement_id}/metering")["chain"]
        lines: list[dict[str, Any]] = chain
        return lines if all(line["receipt"] or line["refusal"] for line in lines) else None

    chain = wait_for("the consumer's answers at the provider", answered)
    forged = next(line for line in chain if line["record"]["seq"] == seq)
    assert forged["receipt"] is None and why in forged["refusal"], forged
    period = datetime.now(UTC).strftime("%Y-%m")
    bill = provider.api.get(f"/api/v1/agreements/{agreement_id}/invoice?period={period}")
    assert seq in [d["seq"] for d in bill["disputed"]], bill
    assert bill["usage"]["records"] <= len(LINES), bill
