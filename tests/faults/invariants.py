"""The delivery invariant, checked on two real connector processes with the project's own
offline tools: every byte the consumer holds is covered by a signed, receipted metering record,
and the invoice bills each byte exactly once.

Used by the fault tests (tests/faults) and by the kill-storm benchmark (bench/killstorm.py),
which is why it is plain code (no pytest): it returns violations as sentences and never asserts.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.harness import ConnectorProcess, cli, file_sha256, received_size

TERMINAL = frozenset({"COMPLETED", "TERMINATED"})
SHA256 = re.compile(r"[0-9a-f]{64}")
Source = Path | str  # the published file, or its SHA-256 (hex)


@dataclass
class Outcome:
    """What a check found: the violations, and figures a benchmark may print."""

    violations: list[str] = field(default_factory=list)
    transfers: int = 0  # consumer-side transfers checked
    held_bytes: int = 0  # bytes the consumer holds, over all of them
    receipted_bytes: int = 0  # union of receipted ranges, summed over transfers
    billed_bytes: int = 0  # the invoices' usage bytes, summed over the chain's months


def violations(
    provider: ConnectorProcess,
    consumer: ConnectorProcess,
    source: Source | Mapping[str, Source],
    *,
    agreements: Iterable[str] | None = None,
    settle_seconds: float = 20.0,
    workdir: Path | None = None,
) -> list[str]:
    """The invariant's violations for every transfer of the agreements between the two
    (human-readable; empty when it holds). See `check`."""
    return check(
        provider,
        consumer,
        source,
        agreements=agreements,
        settle_seconds=settle_seconds,
        workdir=workdir,
    ).violations


def check(
    provider: ConnectorProcess,
    consumer: ConnectorProcess,
    source: Source | Mapping[str, Source],
    *,
    agreements: Iterable[str] | None = None,
    settle_seconds: float = 20.0,
    workdir: Path | None = None,
) -> Outcome:
    """Check both running connectors; `source` is the published data (a path or its SHA-256),
    or a mapping agreement id -> that, when the agreements are for different data.

    `agreements` defaults to every agreement the consumer holds with the provider. The
    invariant must hold *eventually*: the check is repeated until it holds or
    `settle_seconds` have passed (receipts and the last records may still be on their way
    when a transfer has just ended), and the last attempt's violations are returned.
    """
    deadline = time.monotonic() + settle_seconds
    with tempfile.TemporaryDirectory(dir=workdir) as scratch:
        while True:
            outcome = _check_once(provider, consumer, source, agreements, Path(scratch))
            if not outcome.violations or time.monotonic() >= deadline:
                return outcome
            time.sleep(0.5)


def _listing(node: ConnectorProcess, what: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    while True:
        page: list[dict[str, Any]] = node.api.get(f"/api/v1/{what}?limit=1000&offset={len(rows)}")
        rows += page
        if len(page) < 1000:
            return rows


def _expected_sha(source: Source | Mapping[str, Source], agreement_id: str) -> str | None:
    one = source.get(agreement_id) if isinstance(source, Mapping) else source
    if one is None:
        return None
    if isinstance(one, str) and SHA256.fullmatch(one):
        return one
    return file_sha256(Path(one))


def _did_document(node: ConnectorProcess, where: Path) -> Path:
    with urllib.request.urlopen(node.base_url + "/.well-known/did.json", timeout=10) as reply:
        where.write_bytes(reply.read())
    return where


def _inside(span: tuple[int, int], ranges: list[list[int]]) -> list[tuple[int, int]]:
    """The parts of half-open `span` outside the merged half-open `ranges`."""
    start, end = span
    missing: list[tuple[int, int]] = []
    at = start
    for a, b in ranges:
        if b <= at or a >= end:
            continue
        if a > at:
            missing.append((at, a))
        at = max(at, b)
    if at < end:
        missing.append((at, end))
    return missing


def _name(tp: dict[str, Any]) -> str:
    return f"{tp['format'].rsplit('-', 1)[-1].lower()} {tp['id']}"


def _check_once(
    provider: ConnectorProcess,
    consumer: ConnectorProcess,
    source: Source | Mapping[str, Source],
    only: Iterable[str] | None,
    scratch: Path,
) -> Outcome:
    out = Outcome()
    found = out.violations
    if only is None:
        agreement_ids = {
            a["id"]
            for a in _listing(consumer, "agreements")
            if a["provider_id"] == provider.did and a["consumer_id"] == consumer.did
        }
    else:
        agreement_ids = set(only)
    theirs = {t["id"]: t for t in _listing(provider, "transfers") if t["role"] == "provider"}
    mine = [
        t
        for t in _listing(consumer, "transfers")
        if t["role"] == "consumer" and t["agreement_id"] in agreement_ids
    ]
    out.transfers = len(mine)
    held: dict[str, int] = {}  # provider pid -> bytes the consumer holds

    # (a) terminal on both sides, a reason for each TERMINATED; (b) equal copies
    known: set[str] = set()
    for tp in mine:
        name = f"consumer {_name(tp)}"
        if tp["state"] not in TERMINAL:
            found.append(f"{name} of {tp['agreement_id']} is stuck in {tp['state']}")
        elif tp["state"] == "TERMINATED" and not tp["reason"]:
            found.append(f"{name} is TERMINATED without a reason")
        size = received_size(consumer, tp["id"])
        out.held_bytes += size
        pid = tp.get("provider_pid")
        other = theirs.get(pid) if pid else None
        if pid:
            known.add(pid)
            held[pid] = max(held.get(pid, 0), size)
        if other is None:
            if pid:
                found.append(f"{name}: the provider has no transfer {pid}")
            elif size:
                found.append(f"{name} holds {size} bytes but names no provider transfer")
            continue
        if other["state"] not in TERMINAL:
            found.append(f"provider transfer {pid} (of {name}) is stuck in {other['state']}")
        elif other["state"] == "TERMINATED" and not other["reason"]:
            found.append(f"provider transfer {pid} (of {name}) is TERMINATED without a reason")
        if tp["state"] == "COMPLETED" and other["state"] == "COMPLETED":
            want = _expected_sha(source, tp["agreement_id"])
            if other["sha256"] is None:
                found.append(
                    f"{name} COMPLETED on both sides, but the provider recorded no sha256 of what"
                    f" it delivered (the consumer's copy: {tp['sha256']})"
                )
            elif tp["sha256"] != other["sha256"]:
                found.append(
                    f"{name} COMPLETED on both sides with different copies: consumer sha256"
                    f" {tp['sha256']}, provider {other['sha256']}"
                )
            if want is not None and tp["sha256"] != want:
                found.append(f"{name} COMPLETED with sha256 {tp['sha256']}, the source's is {want}")
    for pid, other in theirs.items():
        unknown = other["agreement_id"] in agreement_ids and pid not in known
        if unknown and other["state"] not in TERMINAL:
            found.append(
                f"provider transfer {pid}, which the consumer does not know, is stuck in"
                f" {other['state']}"
            )

    keys = [_did_document(node, scratch / f"{node.name}-did.json") for node in (provider, consumer)]
    for agreement_id in sorted(agreement_ids):
        _check_chain(provider, consumer, agreement_id, keys, held, theirs, scratch, out)
    return out


def _check_chain(
    provider: ConnectorProcess,
    consumer: ConnectorProcess,
    agreement_id: str,
    keys: list[Path],
    held: dict[str, int],
    theirs: dict[str, dict[str, Any]],
    scratch: Path,
    out: Outcome,
) -> None:
    """(c) the provider's chain verifies offline with the consumer's export as witness;
    (d) what the consumer holds is receipted; (e) the invoices bill the receipted bytes once."""
    found = out.violations
    exports = {}
    for node in (provider, consumer):
        path = scratch / f"{node.name}-{agreement_id.rsplit(':', 1)[-1]}.jsonl"
        run = cli("--config", str(node.config), "metering", "export", "--agreement",
                  agreement_id, "--out", str(path))  # fmt: skip
        if run.returncode != 0:
            found.append(f"{node.name}: metering export of {agreement_id} failed: {run.stderr}")
            return
        exports[node.name] = path
    run = cli("metering", "verify", str(exports[provider.name]), "--json",
              "--provider-key", str(keys[0]), "--consumer-key", str(keys[1]),
              "--head", str(exports[consumer.name]))  # fmt: skip
    try:
        report: dict[str, Any] = json.loads(run.stdout)
    except ValueError:
        found.append(f"metering verify of {agreement_id} gave no report: {run.stderr.strip()}")
        return
    if run.returncode != 0:
        problems = "; ".join(
            f"record {f['seq']}: {f['problem']}: {f['detail']}" for f in report["findings"]
        )
        found.append(
            f"the provider's chain of {agreement_id} does not verify (exit {run.returncode}):"
            f" {problems}"
        )
    cover: dict[str, dict[str, Any]] = report["transfers"]
    for pid, size in sorted(held.items()):
        if theirs.get(pid, {}).get("agreement_id") != agreement_id or size == 0:
            continue
        ranges = cover.get(pid, {}).get("receipted", [])
        missing = _inside((0, size), ranges)
        if missing:
            spans = ", ".join(f"[{a}, {b})" for a, b in missing)
            found.append(
                f"the consumer holds {size} bytes of provider transfer {pid}, but bytes {spans}"
                " are not covered by a receipted metering record"
            )
    receipted = sum(int(c["receipted_bytes"]) for c in cover.values())
    out.receipted_bytes += receipted

    lines = [json.loads(line) for line in exports[provider.name].read_text().splitlines()[1:]]
    months = sorted({str(line["record"]["to"])[:7] for line in lines})
    billed = 0
    for period in months:
        run = cli("--config", str(provider.config), "billing", "invoice", "--agreement",
                  agreement_id, "--period", period)  # fmt: skip
        if run.returncode != 0:
            found.append(f"the invoice of {agreement_id} for {period} failed: {run.stderr}")
            return
        billed += int(json.loads(run.stdout)["usage"]["bytes"])
    out.billed_bytes += billed
    if billed != receipted:
        found.append(
            f"the invoices of {agreement_id} ({', '.join(months) or 'no month'}) bill {billed}"
            f" bytes, but receipted records cover {receipted} (each byte must be billed once)"
        )
    holds = sum(
        s for pid, s in held.items() if theirs.get(pid, {}).get("agreement_id") == agreement_id
    )
    if billed < holds:
        found.append(
            f"the invoices of {agreement_id} bill {billed} bytes, but the consumer holds {holds}"
        )
