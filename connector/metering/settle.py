"""The consumer's side of metering: check each window against the bytes it received, then
countersign (receipt) or refuse it, and send the answers back to the provider."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connector.errors import BadRequest, ConnectorError, PeerError
from connector.identity import signatures
from connector.identity.signatures import GENESIS
from connector.metering import heads
from connector.metering.records import entry_from_line, record_hash
from connector.model.enums import Direction
from connector.model.metering import (
    RECORD_FIELDS,
    MeteringEntry,
    MeteringHead,
    MeteringKind,
    merge_ranges,
)
from connector.model.records import Transfer
from connector.peer.client import DspClient
from connector.runtime import Runtime
from connector.store.base import Store

END_KINDS = tuple(k for k in MeteringKind if k.ends)
KINDS = tuple(MeteringKind)
# how far the provider's clock may run ahead of ours before a window "closes in the future"
CLOCK_SKEW = timedelta(seconds=60)
POLL_SECONDS = 0.05


def metering_url(tp: Transfer) -> str:
    """The provider's metering endpoint for this transfer (beside its DSP endpoints)."""
    base = tp.counterparty_address.rstrip("/")
    return f"{base}/metering/transfers/{tp.provider_pid}"


def _end(entry: MeteringEntry) -> int:
    return int(entry.record.get("offset", 0)) + int(entry.record.get("length", 0))


def _window_digest(path: Path, offset: int, length: int) -> tuple[str, int] | None:
    """(SHA-256, newline count) of [offset, offset + length) of the received file; None if
    the file is shorter."""
    digest = hashlib.sha256()
    lines = 0
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            left = length
            while left > 0:
                block = fh.read(min(left, 1 << 20))
                if not block:
                    return None
                digest.update(block)
                lines += block.count(b"\n")
                left -= len(block)
    except OSError:
        return None
    return digest.hexdigest(), lines


def _instant(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return None
    return at if at.tzinfo is not None else None


def _shape(record: dict[str, Any]) -> str | None:
    """Why a record is not a well-formed metering record (its own fields only)."""
    if set(record) != set(RECORD_FIELDS):
        return "the record's fields differ from the metering profile"
    if record["kind"] not in KINDS:
        return f"kind {record['kind']!r} is not a metering record kind"
    for key in ("seq", "offset", "length", "records"):
        value = record[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return f"{key} must be a non-negative integer, got {value!r}"
    if record["records"] > record["length"]:
        return f"{record['records']} records cannot fit in {record['length']} bytes"
    if record["kind"] == MeteringKind.START and record["length"]:
        return "a start record carries no bytes"
    opened, closed = _instant(record["from"]), _instant(record["to"])
    if opened is None or closed is None:
        return "from and to must be RFC 3339 time stamps with a zone"
    if opened > closed:
        return f"the window opens at {record['from']}, after it closes at {record['to']}"
    if closed > datetime.now(UTC) + CLOCK_SKEW:
        return f"the window closes at {record['to']}, in the future"
    return None


def sequence_problems(
    entries: list[MeteringEntry], known: list[MeteringEntry], transfer: str
) -> dict[int, str]:
    """seq -> why, for records of one transfer that do not form its part of the chain: each
    well formed, numbered once, linked by `prev` to the record before it (as far as this side
    knows the agreement's chain: `known` holds the records of its other transfers), and each
    stream a `start` followed by windows that continue its byte range and its time.

    A record whose predecessor belongs to a transfer not seen yet (two transfers under one
    agreement at once) cannot be linked here; its bytes are still checked one by one."""
    problems: dict[int, str] = {}
    hashes: dict[int, str] = {}
    owners: dict[int, str] = {}
    for entry in known:
        hashes[entry.seq], owners[entry.seq] = entry.hash, entry.transfer_id
    mine: dict[int, MeteringEntry] = {}
    for entry in entries:
        if entry.seq in mine:
            problems[entry.seq] = f"record {entry.seq} was sent twice with different content"
            continue
        if (
            entry.seq in hashes
            and owners[entry.seq] == transfer
            and hashes[entry.seq] != entry.hash
        ):
            problems[entry.seq] = f"record {entry.seq} differs from the one received before"
        mine[entry.seq] = entry
        hashes[entry.seq], owners[entry.seq] = entry.hash, transfer
    previous: dict[str, Any] | None = None  # the record before, in this transfer's stream
    for seq in sorted(mine):
        entry = mine[seq]
        record = entry.record
        why = problems.get(seq) or _shape(record)
        if why is None and record.get("seq") != seq:
            why = f"numbered {record.get('seq')!r} inside, {seq} outside"
        if why is None:
            before = GENESIS if seq == 0 else hashes.get(seq - 1)
            if before is not None and record["prev"] != before:
                why = f"its previous-hash does not link to record {seq - 1}"
            elif seq - 1 in owners and owners[seq - 1] == transfer and seq - 1 not in mine:
                why = f"record {seq - 1} of this transfer is missing before it"
        if why is None:
            why = _continues(previous, record)
        if why is not None:
            problems[seq] = why
        previous = record
    return problems


def _continues(previous: dict[str, Any] | None, record: dict[str, Any]) -> str | None:
    """Why `record` does not continue the stream `previous` belongs to."""
    if record["kind"] == MeteringKind.START:
        return None
    if previous is None or previous.get("kind") in END_KINDS:
        return f"a {record['kind']} record outside a stream (no start record before it)"
    end = int(previous.get("offset", 0)) + int(previous.get("length", 0))
    if record["offset"] != end:
        return f"the window starts at byte {record['offset']}, the stream was at byte {end}"
    before = _instant(previous.get("to"))
    opened = _instant(record["from"])
    if before is not None and opened is not None and opened < before:
        return f"the window opens at {record['from']}, before the previous one closed"
    return None


async def get_chain(client: DspClient, tp: Transfer) -> tuple[list[MeteringEntry], Any]:
    """The provider's records for this transfer, as it holds them now, and the head of the
    agreement's chain it signed (None if it sent none)."""
    _, body = await client.call("GET", metering_url(tp), tp.counterparty_id)
    lines = body.get("chain") if isinstance(body, dict) else None
    if not isinstance(lines, list):
        raise PeerError("the provider's metering answer has no chain", retry=False)
    try:
        return [entry_from_line(line) for line in lines], body.get("head")
    except (KeyError, TypeError, ValueError) as exc:
        why = f"malformed metering record from the provider: {exc}"
        raise PeerError(why, retry=False) from exc


async def get_records(client: DspClient, tp: Transfer) -> list[MeteringEntry]:
    """The provider's records for this transfer, as it holds them now."""
    entries, _ = await get_chain(client, tp)
    return entries


async def fetch_records(
    client: DspClient, tp: Transfer, received: int, timeout: float
) -> tuple[list[MeteringEntry], Any]:
    """The records (and the signed head) once one ends at the bytes we hold: the provider
    writes a stream's last record just after the last byte, so poll briefly."""
    deadline = time.monotonic() + timeout
    while True:
        entries, head = await get_chain(client, tp)
        ended = any(e.kind in END_KINDS and _end(e) >= received for e in entries)
        if ended or time.monotonic() >= deadline:
            return entries, head
        await asyncio.sleep(POLL_SECONDS)


def receipted_prefix(chain: list[MeteringEntry], transfer: str | None) -> int:
    """How many bytes from the data's first one the receipted records of `transfer` cover
    without a gap."""
    spans = merge_ranges(
        [
            (int(e.record.get("offset", 0)), _end(e))
            for e in chain
            if e.transfer_id == transfer and e.receipt
        ]
    )
    return spans[0][1] if spans and spans[0][0] == 0 else 0


async def stream_ended(client: DspClient, tp: Transfer, received: int, timeout: float) -> bool:
    """Whether the provider's records of this pull end a stream at the bytes we hold (or it
    keeps none: a peer without the metering profile). False means the stream that delivered
    the last bytes broke off before its last record was written; the caller then shows the
    provider what it holds (a pull of the empty rest), and the provider meters the gap."""
    try:
        entries, _ = await fetch_records(client, tp, received, timeout)
    except PeerError as exc:
        if exc.http_status in (404, 405, 501):
            return True
        raise
    return any(e.kind in END_KINDS and _end(e) >= received for e in entries)


Checked = dict[int, tuple[str, str | None]]  # seq -> (record hash, refusal or None)


class EarlyChecks:
    """While a pull is still running, check the windows already on disk, so that only the
    last ones remain when it ends: the re-read overlaps the download instead of following it.
    """

    def __init__(self, rt: Runtime, client: DspClient, tp: Transfer, path: Path) -> None:
        self._rt, self._client, self._tp, self._path = rt, client, tp, path
        self.checked: Checked = {}
        self._stop = asyncio.Event()

    async def run(self, every: float = 0.5) -> None:
        try:
            provider_doc = await self._rt.resolver.resolve(self._tp.counterparty_id)
            while not self._stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), every)
                if self._stop.is_set():
                    return
                entries = await get_records(self._client, self._tp)
                on_disk = self._path.stat().st_size if self._path.exists() else 0
                for entry in entries:
                    if entry.seq in self.checked or _end(entry) > on_disk:
                        continue
                    why = await asyncio.to_thread(
                        _check, self._rt, self._tp, entry, provider_doc, self._path
                    )
                    self.checked[entry.seq] = (entry.hash, why)
        except (ConnectorError, OSError):
            return  # the final check does everything that was not done here

    def stop(self) -> None:
        self._stop.set()


async def settle(
    rt: Runtime,
    client: DspClient,
    tp: Transfer,
    timeout: float = 10.0,
    checked: Checked | None = None,
) -> list[str]:
    """Receipt or refuse every record of this transfer; returns the refusal reasons.

    `checked` holds windows already checked against the file (EarlyChecks): reused when the
    provider's record is still the same."""
    path = Path(tp.path) if tp.path else None
    received = path.stat().st_size if path and path.exists() else 0
    try:
        entries, offered = await fetch_records(client, tp, received, timeout)
    except PeerError as exc:
        if exc.http_status not in (404, 405, 501):
            raise
        # a peer without the metering profile (docs/metering.md): deliver, but say so
        await rt.note(
            tp.id,
            Direction.NOTE,
            "metering",
            detail=f"the provider keeps no metering records: {exc}",
        )
        return []
    provider_doc = await rt.resolver.resolve(tp.counterparty_id)
    # what this side already holds of the agreement's chain (kept by the provider's pids)
    known = await rt.db.read(lambda s: s.metering_chain(tp.agreement_id))
    broken = sequence_problems(entries, known, tp.provider_pid or "")
    answers: list[dict[str, Any]] = []
    refusals: list[str] = []
    for entry in entries:
        earlier = (checked or {}).get(entry.seq)
        if entry.seq in broken:
            why: str | None = broken[entry.seq]
        elif earlier is not None and earlier[0] == entry.hash:
            why = earlier[1]
        else:
            why = await asyncio.to_thread(_check, rt, tp, entry, provider_doc, path)
        if why is None:
            entry.receipt, entry.refusal = signatures.sign(entry.record, rt.did, rt.keys), None
            answers.append({"seq": entry.seq, "hash": entry.hash, "receipt": entry.receipt})
        else:
            entry.receipt, entry.refusal = None, why
            answers.append({"seq": entry.seq, "hash": entry.hash, "refusal": why})
            refusals.append(f"metering record {entry.seq} refused: {why}")
    head, why_not = _countersign(rt, tp, offered, known + entries, provider_doc)

    def keep(store: Store) -> None:
        store.put_metering(entries)
        if why_not is not None:
            rt.log(tp.id, Direction.NOTE, "metering", detail=why_not)

    await rt.db.write(keep)
    sent = False
    if answers:
        payload: dict[str, Any] = {"answers": answers}
        if head is not None:
            payload["head"] = head.signed()
        await client.call("POST", metering_url(tp) + "/receipts", tp.counterparty_id, payload)
        sent = True
    summary = f"metering: {len(answers) - len(refusals)} receipted, {len(refusals)} refused"

    def answered(store: Store) -> None:
        if sent and head is not None:
            store.put_metering_head(head)
        rt.log(tp.id, Direction.NOTE, "metering", detail=summary)

    await rt.db.write(answered)
    return refusals


def _countersign(
    rt: Runtime,
    tp: Transfer,
    offered: Any,
    chain: list[MeteringEntry],
    provider_doc: dict[str, Any],
) -> tuple[MeteringHead | None, str | None]:
    """The provider's signed head, countersigned, if it names the newest record this side
    holds and receipted; else None and why (for the timeline): a head is never signed blind."""
    if offered is None:
        return None, None
    try:
        body = heads.check_signed(
            offered, tp.agreement_id, tp.counterparty_id, rt.did, provider_doc, None
        )
    except BadRequest as exc:
        return None, f"chain head not countersigned: {exc.detail}"
    held = {e.seq: e for e in chain}  # the newest answer for each seq wins
    named = held.get(body["count"] - 1)
    newest = max(held) if held else -1
    if named is None or named.hash != body["head"] or not named.receipt or newest >= body["count"]:
        return None, (
            "chain head not countersigned: it does not name the newest record this"
            " connector holds and receipted"
        )
    receipt = signatures.sign(body, rt.did, rt.keys)
    return heads.stored({"signature": offered["signature"], "receipt": receipt}, body), None


def _check(
    rt: Runtime, tp: Transfer, entry: MeteringEntry, provider_doc: dict[str, Any], path: Path | None
) -> str | None:
    record = entry.record
    expected = {
        "agreement": tp.agreement_id,
        "transfer": tp.provider_pid,
        "provider": tp.counterparty_id,
        "consumer": rt.did,
    }
    for key, value in expected.items():
        if record.get(key) != value:
            return f"{key} is {record.get(key)!r}, expected {value!r}"
    if entry.hash != record_hash(record):
        return "the record does not match its hash"
    try:
        signatures.verify(record, entry.signature, tp.counterparty_id, provider_doc)
    except BadRequest as exc:
        return str(exc)
    why = _shape(record)
    if why is not None:
        return why
    offset, length = int(record.get("offset", 0)), int(record.get("length", 0))
    if length == 0:
        return None
    if path is None:
        return "no data was received"
    window = _window_digest(path, offset, length)
    if window is None:
        return f"bytes {offset}-{offset + length - 1} were not received"
    digest, lines = window
    if digest != record.get("sha256"):
        return (
            f"bytes {offset}-{offset + length - 1} hash to {digest}, the record says"
            f" {record.get('sha256')}"
        )
    if lines != record.get("records"):
        return (
            f"bytes {offset}-{offset + length - 1} hold {lines} records, the record claims"
            f" {record.get('records')}"
        )
    return None
