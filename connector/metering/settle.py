"""The consumer's side of metering: check each window against the bytes it received, then
countersign (receipt) or refuse it, and send the answers back to the provider."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from pathlib import Path
from typing import Any

from connector.dsp.client import DspClient
from connector.errors import BadRequest, ConnectorError, PeerError
from connector.identity import signatures
from connector.metering.records import MeteringEntry, entry_from_line, record_hash
from connector.runtime import Runtime
from connector.store.records import Transfer

END_KINDS = ("complete", "terminate", "suspend", "interrupted")
POLL_SECONDS = 0.05


def metering_url(tp: Transfer) -> str:
    """The provider's metering endpoint for this transfer (beside its DSP endpoints)."""
    base = tp.counterparty_address.rstrip("/")
    return f"{base}/metering/transfers/{tp.provider_pid}"


def _end(entry: MeteringEntry) -> int:
    return int(entry.record.get("offset", 0)) + int(entry.record.get("length", 0))


def _window_digest(path: Path, offset: int, length: int) -> str | None:
    """SHA-256 of [offset, offset + length) of the received file; None if it is shorter."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            left = length
            while left > 0:
                block = fh.read(min(left, 1 << 20))
                if not block:
                    return None
                digest.update(block)
                left -= len(block)
    except OSError:
        return None
    return digest.hexdigest()


async def get_records(client: DspClient, tp: Transfer) -> list[MeteringEntry]:
    """The provider's records for this transfer, as it holds them now."""
    _, body = await client.call("GET", metering_url(tp), tp.counterparty_id)
    lines = body.get("chain") if isinstance(body, dict) else None
    if not isinstance(lines, list):
        raise PeerError("the provider's metering answer has no chain", retry=False)
    try:
        return [entry_from_line(line) for line in lines]
    except (KeyError, TypeError, ValueError) as exc:
        why = f"malformed metering record from the provider: {exc}"
        raise PeerError(why, retry=False) from exc


async def fetch_records(
    client: DspClient, tp: Transfer, received: int, timeout: float
) -> list[MeteringEntry]:
    """The records once one ends at the bytes we hold: the provider writes a stream's last
    record just after the last byte, so poll briefly."""
    deadline = time.monotonic() + timeout
    while True:
        entries = await get_records(client, tp)
        ended = any(e.kind in END_KINDS and _end(e) >= received for e in entries)
        if ended or time.monotonic() >= deadline:
            return entries
        await asyncio.sleep(POLL_SECONDS)


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
        entries = await fetch_records(client, tp, received, timeout)
    except PeerError as exc:
        if exc.http_status not in (404, 405, 501):
            raise
        # a peer without the metering profile (docs/metering.md): deliver, but say so
        rt.log(tp.id, "note", "metering", detail=f"the provider keeps no metering records: {exc}")
        return []
    provider_doc = await rt.resolver.resolve(tp.counterparty_id)
    answers: list[dict[str, Any]] = []
    refusals: list[str] = []
    for entry in entries:
        earlier = (checked or {}).get(entry.seq)
        if earlier is not None and earlier[0] == entry.hash:
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
    rt.store.put_metering(entries)
    if answers:
        await client.call(
            "POST", metering_url(tp) + "/receipts", tp.counterparty_id, {"answers": answers}
        )
    rt.log(
        tp.id,
        "note",
        "metering",
        detail=f"metering: {len(answers) - len(refusals)} receipted, {len(refusals)} refused",
    )
    return refusals


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
    offset, length = int(record.get("offset", 0)), int(record.get("length", 0))
    if length == 0:
        return None
    if path is None:
        return "no data was received"
    digest = _window_digest(path, offset, length)
    if digest is None:
        return f"bytes {offset}-{offset + length - 1} were not received"
    if digest != record.get("sha256"):
        return (
            f"bytes {offset}-{offset + length - 1} hash to {digest}, the record says"
            f" {record.get('sha256')}"
        )
    return None
