"""Pull (consumer downloads) and push (provider uploads) streams, hashed as they flow."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from connector.clock import skew_refusal
from connector.dataplane.addresses import Endpoint, Unservable, resolve
from connector.dataplane.sources import SourceMissing
from connector.egress import EgressRefused, describe, read_limited
from connector.errors import ConnectorError, DiskFull, PayloadTooLarge, PeerError
from connector.files import open_private, private_dir
from connector.metering.meter import StreamHash
from connector.model.enums import Role
from connector.model.records import Transfer
from connector.model.states import TP
from connector.policy.odrl import normalise
from connector.runtime import Runtime
from connector.store.base import Store

STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=10, sock_read=60)
STATE_CHECK_SECONDS = 0.2
PROBLEM_MAX = 64 * 1024  # an error body (problem document) read to tell its code

log = logging.getLogger(__name__)


class Stopped(Exception):
    """The transfer left STARTED (suspended, terminated) while its data was moving."""


class Activity:
    """A flowing stream is activity: the transfer's record is bumped well within the idle
    time, so the idle watchdog (connector/dsp/watchdog.py) leaves a long stream alone. Called
    per chunk; writes at most every min(60 s, transfer_idle_seconds / 4), beside the stream
    (which never waits for that commit)."""

    def __init__(self, rt: Runtime, transfer_id: str, touch: Callable[[str], None]) -> None:
        self._rt = rt
        self._id = transfer_id
        self._touch = touch  # the control plane's: runs in a store unit
        self._touched = time.monotonic()
        self._every = min(60.0, rt.settings.transfer_idle_seconds / 4)
        self._writing: asyncio.Task[None] | None = None

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self._touched >= self._every and (self._writing is None or self._writing.done()):
            self._touched = now
            self._writing = asyncio.ensure_future(self._write())

    async def _write(self) -> None:
        try:
            await self._rt.db.write(lambda s: self._touch(self._id))
        except Exception as exc:  # the stream itself goes on; the next bump may succeed
            log.warning("transfer %s: activity not recorded: %r", self._id, exc)


class StateWatch:
    """Checked between chunks: raises Stopped once the transfer is no longer STARTED.

    Suspension and termination must stop the bytes, not only change a state; the store is
    read at most every STATE_CHECK_SECONDS, on a reader thread (the event loop goes on),
    and the chunk that found the check due waits for its answer: a stream stops at the
    first chunk after a due check, not some chunks later.
    """

    def __init__(self, rt: Runtime, transfer_id: str, touch: Callable[[str], None]) -> None:
        self._rt = rt
        self._id = transfer_id
        self._checked = time.monotonic()
        self._activity = Activity(rt, transfer_id, touch)

    def _state(self, store: Store) -> str:
        tp = store.get_transfer(self._id)
        return tp.state if tp is not None else "gone"

    async def __call__(self) -> None:
        now = time.monotonic()
        if now - self._checked < STATE_CHECK_SECONDS:
            return
        self._checked = now
        self._activity()
        state = await self._rt.db.read(self._state)  # a store that fails breaks the stream
        if state != TP.STARTED:
            raise Stopped(f"the transfer is {state}")


class VolumeCap:
    """Lets through at most `limit` bytes (the agreed volume left), cutting inside a chunk.

    `cut` tells afterwards whether the source had more: the transfer then ends TERMINATED
    with the reason instead of COMPLETED, and exactly `limit` bytes were sent and metered.
    """

    def __init__(self, limit: int | None, why: str = "the most this transfer may send") -> None:
        self.limit = limit
        self.cut = False
        self.why = why  # which agreed limit this is (named_limit)

    def reason(self, sent: int) -> str:
        return f"volume limit reached: {sent} bytes delivered, {self.why}"

    async def apply(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        sent = 0
        async for chunk in chunks:
            if self.limit is not None and sent + len(chunk) > self.limit:
                rest = self.limit - sent
                if rest > 0:
                    yield chunk[:rest]
                self.cut = True
                return
            sent += len(chunk)
            yield chunk


VOLUME_TERMS = ("tdsc:transferBytes", "tdsc:volumeBytes")


def _agreed_maxima(policy: dict[str, Any]) -> dict[str, int]:
    """The byte limits an agreement grants (`tdsc:transferBytes` per transfer, `tdsc:volumeBytes`
    in all): constraints every permission applies (top level or inside `and`)."""
    try:
        rules = normalise(policy)["permissions"]
    except ConnectorError:
        return {}
    found: dict[str, int] = {}

    def visit(c: dict[str, Any]) -> None:
        for inner in c.get("and", []):
            visit(inner)
        left, op, right = c.get("leftOperand"), c.get("operator"), c.get("rightOperand")
        if left not in VOLUME_TERMS or not isinstance(right, int | float):
            return
        most = {"lteq": int(right), "eq": int(right), "lt": int(right) - 1}.get(str(op))
        if most is not None:
            found[str(left)] = min(found.get(str(left), most), most)

    for rule in rules:
        for constraint in rule.get("constraints", []):
            visit(constraint)
    return found


def named_limit(policy: dict[str, Any], limit: int | None) -> str:
    """Which agreed limit a transfer's reservation `limit` is, in words for a cut's reason:
    the per-transfer maximum, or what is left of the agreement's total volume."""
    agreed = _agreed_maxima(policy)
    per_transfer = agreed.get("tdsc:transferBytes")
    if limit is not None and per_transfer is not None and limit >= per_transfer:
        return f"the agreed maximum per transfer ({per_transfer} bytes)"
    if "tdsc:volumeBytes" in agreed:
        return (
            f"all that was left of the agreement's total volume"
            f" ({agreed['tdsc:volumeBytes']} bytes)"
        )
    return "the most this transfer may send"


async def cut_reason(rt: Runtime, tp: Transfer, sent: int) -> str:
    """The reason a transfer cut at its volume limit ends with, naming the limit."""
    agreement = await rt.db.read(lambda s: s.get_agreement(tp.agreement_id))
    why = named_limit(agreement.body if agreement is not None else {}, tp.limit_bytes)
    return VolumeCap(tp.limit_bytes, why).reason(sent)


@dataclass(frozen=True)
class ReceiveLimit:
    """At most how many bytes one transfer's copy may hold, and why (for the refusal)."""

    bytes: int
    why: str
    disk: bool = False  # the bound is the free disk: it may pass (space freed), unlike a term

    def refuse(self, size: int) -> PayloadTooLarge:
        return PayloadTooLarge(f"more than {self.bytes} bytes ({self.why}); {size} refused")


async def receive_limit(rt: Runtime, tp: Transfer) -> ReceiveLimit:
    """Consumer: the most a transfer may bring. A sender (or whoever holds its token) is not
    trusted to stop at the agreed volume: the agreement's limits and the disk space kept free
    (`receive_free_disk_bytes`) bound what is written."""
    path = received_path(rt, tp.id)
    private_dir(path.parent)
    have = path.stat().st_size if path.exists() else 0
    free = shutil.disk_usage(path.parent).free - rt.settings.receive_free_disk_bytes
    limits = [ReceiveLimit(max(free, 0) + have, "the disk space kept free", disk=True)]

    def agreed_and_earlier(store: Store) -> tuple[dict[str, int], int]:
        agreement = store.get_agreement(tp.agreement_id)
        agreed = _agreed_maxima(agreement.body) if agreement is not None else {}
        earlier = 0
        if "tdsc:volumeBytes" in agreed:
            earlier = sum(
                t.bytes
                for t in store.agreement_transfers(tp.agreement_id, Role.CONSUMER)
                if t.id != tp.id
            )
        return agreed, earlier

    agreed, earlier = await rt.db.read(agreed_and_earlier)
    if "tdsc:transferBytes" in agreed:
        limits.append(ReceiveLimit(agreed["tdsc:transferBytes"], "the agreed bytes per transfer"))
    if "tdsc:volumeBytes" in agreed:
        left = max(agreed["tdsc:volumeBytes"] - earlier, 0)
        limits.append(ReceiveLimit(left, "the agreed volume left"))
    return min(limits, key=lambda limit: limit.bytes)


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def disk_full(path: Path, size: int, exc: OSError | PayloadTooLarge) -> DiskFull:
    """The error of a write that found no space: it names the disk (the directory, for the
    operator; not for the peer) and says that what arrived is kept, since the pull resumes
    from it once space is back."""
    why = exc.detail if isinstance(exc, PayloadTooLarge) else os.strerror(exc.errno or 0)
    kept = f"the {size} bytes received so far are kept"
    return DiskFull(
        f"no space left on the disk of {path.parent} ({why}); {kept}",
        reasons=[f"no space left on the consumer's disk for received data ({why}); {kept}"],
    )


def _fsync_dir(path: Path) -> None:
    """Make an entry in `path` (a file created, or renamed into place) survive a power loss."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def cut_back(path: Path, size: int) -> None:
    """Truncate a received copy to `size` bytes, durably."""
    with path.open("r+b") as fh:
        fh.truncate(size)
        fh.flush()
        os.fsync(fh.fileno())


EXPECTED: dict[str, int] = {}
"""Consumer pulls under way: the size the provider announced (progress and ETA only)."""


def progress(rt: Runtime, transfer_id: str) -> tuple[int, int | None]:
    """Bytes of a transfer under way that lie on our disk now, and the size announced."""
    path = received_path(rt, transfer_id)
    sizes = [p.stat().st_size for p in path.parent.glob(f"{path.name}*") if p.is_file()]
    return max(sizes, default=0), EXPECTED.get(transfer_id)


def received_path(rt: Runtime, transfer_id: str) -> Path:
    safe = transfer_id.rsplit(":", 1)[-1]
    return rt.settings.data_dir / "received" / f"{safe}.bin"


def sweep_parts(rt: Runtime, older_than: float = 600.0) -> int:
    """Remove pushes that stopped arriving long ago (a crash mid-push leaves one behind);
    a push under way writes its file every moment, so it is never this old."""
    removed = 0
    cutoff = time.time() - older_than
    for part in (rt.settings.data_dir / "received").glob("*.part"):
        with contextlib.suppress(OSError):
            if part.stat().st_mtime < cutoff:
                part.unlink()
                removed += 1
    return removed


def _endpoint(data_address: dict[str, Any], *, push: bool) -> Endpoint:
    """The DataAddress's URL and headers, in our form or EDC's (connector/dataplane/addresses).
    An unservable address was refused when it arrived; one stored before that check ends
    the transfer here."""
    try:
        return resolve(data_address, push=push)
    except Unservable as exc:
        raise PeerError(f"the DataAddress cannot be served: {exc.detail}", retry=False) from exc


class HashingWriter:
    """Writes chunks to a file while counting and hashing them; `resume` keeps what the file
    already holds (hashed again) and appends. `staged` writes beside the file and puts the
    result in place only on `commit`: a second delivery of the same data (a push handed from
    one replica to another) never truncates a copy that is being checked or used.

    Nothing is acknowledged that a power loss could take back: `close` returns only once the
    file and its directory entry are on disk (fsync), `commit` once the rename is; receipts
    and COMPLETED follow them. A write that finds no space raises DiskFull."""

    def __init__(
        self,
        path: Path,
        *,
        resume: bool = False,
        staged: bool = False,
        limit: ReceiveLimit | None = None,
    ) -> None:
        # a directory made here is an entry in its parent, synced too (the first transfer)
        self._synced = [path.parent] if path.parent.is_dir() else [path.parent, path.parent.parent]
        private_dir(path.parent)
        self.path = path
        self._hash = StreamHash()
        self.size = 0
        self.limit = limit
        self._target = path.with_name(f"{path.name}.{uuid.uuid4().hex}.part") if staged else path
        if resume and path.exists():
            with path.open("rb") as fh:
                while block := fh.read(1 << 20):
                    self._hash.update(block)
                    self.size += len(block)
            self._fh = open_private(path, append=True)
        else:
            self._fh = open_private(self._target)

    def write(self, chunk: bytes) -> None:
        """Append `chunk`; PayloadTooLarge (nothing written) once the limit would be passed,
        DiskFull if the disk has no space (the file then holds a prefix of the data)."""
        if self.limit is not None and self.size + len(chunk) > self.limit.bytes:
            raise self.limit.refuse(self.size + len(chunk))
        try:
            self._fh.write(chunk)
            # at once, not when a buffer fills: what lies on disk is what arrived (the size a
            # resume asks from and progress is read from), also while a stream pauses
            self._fh.flush()
        except OSError as exc:
            if exc.errno in NO_SPACE:
                raise disk_full(self.path, self.size, exc) from exc
            raise
        self._hash.update(chunk)
        self.size += len(chunk)

    def close(self) -> str:
        """Flush, fsync the file and its directory, close; the digest of what was written.
        The file is closed also when this raises (DiskFull or OSError): then nothing may be
        acknowledged."""
        if not self._fh.closed:
            try:
                self._fh.flush()
                os.fsync(self._fh.fileno())
                for directory in self._synced:
                    _fsync_dir(directory)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    self._fh.close()
                if exc.errno in NO_SPACE:
                    raise disk_full(self.path, self.size, exc) from exc
                raise
            self._fh.close()
        return self._hash.hexdigest()

    def abandon(self) -> None:
        """Close after a failed move, without syncing (nothing is acknowledged); what reached
        the file stays for a resume."""
        with contextlib.suppress(OSError):
            self._fh.close()

    def commit(self) -> None:
        """Put a staged file in place (atomically: readers see the old copy or the new), and
        the rename on disk before the push is acknowledged."""
        if self._target != self.path:
            self._target.replace(self.path)
            _fsync_dir(self.path.parent)

    def discard(self) -> None:
        """Drop a staged file that did not arrive whole."""
        if self._target != self.path:
            self._target.unlink(missing_ok=True)

    def remove(self) -> None:
        """Drop what was written, also a resumed copy (it was refused, not interrupted)."""
        self._target.unlink(missing_ok=True)


async def _problem(resp: aiohttp.ClientResponse) -> Any:
    """The JSON error body of a refusal (a problem document), small and parsed; None if it
    is not one."""
    try:
        return json.loads(await read_limited(resp, PROBLEM_MAX))
    except (ValueError, ConnectorError, aiohttp.ClientError):
        return None


def _refusal(problem: Any) -> str:
    """Why a provider refused a pull, in our own words: only a code we know is read. The
    body is the provider's, and a reason we keep, show or pass on never carries remote text
    (a data address may name any service; docs/security.md, finding 3)."""
    code = problem.get("code") if isinstance(problem, dict) else None
    if code == SourceMissing.code:
        return f": {SourceMissing().detail}"
    return ""


async def pull(
    rt: Runtime, transfer_id: str, data_address: dict[str, Any]
) -> tuple[int, str, Path]:
    """Consumer: fetch the data at the provider's DataAddress into our store.

    What an interrupted pull already wrote is kept: the next attempt asks for the rest with
    `Range: bytes=N-`, so nothing is sent (or metered) twice. A full disk (a write that finds
    no space, or less free than `receive_free_disk_bytes`) raises DiskFull and keeps the file:
    the pull is tried again, later (see connector/dataplane/jobs.py).
    """
    target = _endpoint(data_address, push=False)
    endpoint = target.url
    headers = dict(target.headers)
    path = received_path(rt, transfer_id)
    tp = await rt.db.read(lambda s: s.get_transfer(transfer_id))
    limit = await receive_limit(rt, tp) if tp is not None else None
    # a resumed copy is hashed again from the disk (it may be large): not on the loop
    writer = await asyncio.to_thread(HashingWriter, path, resume=True, limit=limit)
    if writer.size:
        headers["Range"] = f"bytes={writer.size}-"
    try:
        async with rt.egress.request(
            "GET", endpoint, headers=headers, timeout=STREAM_TIMEOUT
        ) as resp:
            if resp.status not in (200, 206):
                if resp.status == 401:
                    # refused for the token's time alone (the provider's clock moved since
                    # it issued it, or is off from ours): retried, not the transfer's end
                    body = await _problem(resp)
                    skew = skew_refusal(
                        f"pull from {endpoint}", 401, resp.headers, body, "the provider"
                    )
                    if skew is not None:
                        raise skew
                retry = resp.status >= 500
                why = "" if retry else _refusal(await _problem(resp))
                raise PeerError(f"pull answered {resp.status}{why}", retry=retry)
            if resp.status == 200 and writer.size:
                writer.abandon()
                writer = HashingWriter(path, limit=limit)  # the provider sent everything again
            if resp.content_length is not None:
                EXPECTED[transfer_id] = writer.size + resp.content_length
            # the writer refuses the first byte past the limit: an announced length is not
            # refused up front, since a provider cutting at the agreed volume announces the
            # whole data and sends only what was agreed
            async for chunk in resp.content.iter_chunked(rt.settings.chunk_size):
                writer.write(chunk)
    except PayloadTooLarge as exc:
        writer.abandon()
        if limit is not None and limit.disk:
            raise disk_full(path, writer.size, exc) from exc
        writer.remove()
        raise PeerError(f"pull refused: {exc.detail}", retry=False) from exc
    except EgressRefused as exc:
        writer.abandon()
        raise PeerError(f"pull from {endpoint} refused: {exc.detail}", retry=False) from exc
    except aiohttp.ClientError as exc:
        writer.abandon()
        raise PeerError(f"pull from {endpoint} failed: {describe(exc)}", retry=True) from exc
    except BaseException:
        writer.abandon()
        raise
    finally:
        EXPECTED.pop(transfer_id, None)
    # the fsyncs (see HashingWriter.close) of a large file take a while: not on the loop
    digest = await asyncio.to_thread(writer.close)
    return writer.size, digest, path


async def push(rt: Runtime, data_address: dict[str, Any], chunks: AsyncIterator[bytes]) -> None:
    """Provider: stream `chunks` (a pipeline's flow, which counts, hashes and meters what went
    out and may stop) into the consumer's endpoint."""
    target = _endpoint(data_address, push=True)
    endpoint = target.url
    source_failed: list[PeerError] = []
    headers = {"Content-Type": "application/octet-stream", **target.headers}
    # aiohttp applies no read timeout while it writes a body: a destination that accepts and
    # never reads would hold this job for ever. The deadline moves with every chunk taken.
    idle = rt.settings.stream_idle_seconds
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(idle) as deadline:

            async def paced() -> AsyncIterator[bytes]:
                try:
                    async for chunk in chunks:
                        deadline.reschedule(loop.time() + idle)
                        yield chunk
                except PeerError as exc:
                    # aiohttp hides it in a ClientError: keep its own retry
                    source_failed.append(exc)
                    raise

            async with rt.egress.request(
                target.method, endpoint, data=paced(), headers=headers, timeout=STREAM_TIMEOUT
            ) as resp:
                deadline.reschedule(None)  # the answer has its own read timeout
                if resp.status >= 300:
                    raise PeerError(f"push answered {resp.status}", retry=resp.status >= 500)
    except TimeoutError as exc:
        raise PeerError(
            f"push to {endpoint} stalled: the destination took nothing for {idle:g} s",
            retry=True,
        ) from exc
    except EgressRefused as exc:
        raise PeerError(f"push to {endpoint} refused: {exc.detail}", retry=False) from exc
    except aiohttp.ClientError as exc:
        if source_failed:
            raise source_failed[0] from exc
        raise PeerError(f"push to {endpoint} failed: {describe(exc)}", retry=True) from exc
