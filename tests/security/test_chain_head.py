"""Finding 17: `metering verify` must notice a chain cut short, even when the unsigned export
header is edited to match.

Two real connectors meter and receipt a pull; the provider signs the chain's head and the
consumer countersigns it. The exported chain is then tampered with offline (tail dropped,
header count and head edited, the signed head removed or changed) and verified through the
CLI, alone and with the consumer's own export as a second witness of the head.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.harness import ConnectorProcess, cli, negotiate, wait_for
from tests.test_metering import did_document, export, transfer, write_lines

MIB = 1024 * 1024

Lines = list[dict[str, Any]]


def _cut(lines: Lines, keep: int) -> Lines:
    """The header and the first `keep` records, the header edited to match."""
    header = {**lines[0], "count": keep, "head": lines[keep]["hash"]}
    return [header, *lines[1 : keep + 1]]


def _without_signed_head(lines: Lines) -> Lines:
    cut = _cut(lines, 3)
    cut[0]["signed_head"] = None
    return cut


def _signed_head_edited(lines: Lines) -> Lines:
    cut = _cut(lines, 3)
    signed = copy.deepcopy(cut[0]["signed_head"])
    signed["body"] = {**signed["body"], "count": 3, "head": lines[3]["hash"]}
    cut[0]["signed_head"] = signed
    return cut


TAMPERINGS: dict[str, tuple[Callable[[Lines], Lines], str]] = {
    "last record dropped": (lambda ls: ls[:-1], "dropped"),
    "tail dropped, header edited": (lambda ls: _cut(ls, 3), "counts 5 records, the chain holds 3"),
    "tail dropped, header edited, signed head removed": (
        _without_signed_head,
        "no chain head signed by both parties",
    ),
    "tail dropped, header and signed head edited": (
        _signed_head_edited,
        "the provider's signature of the chain head",
    ),
    "header count lowered": (
        lambda ls: [{**ls[0], "count": 3}, *ls[1:]],
        "the header counts 3 records, 5 are present",
    ),
    "header head changed": (
        lambda ls: [{**ls[0], "head": ls[2]["hash"]}, *ls[1:]],
        "not the header's head",
    ),
}


@pytest.fixture
def exported(
    guarded: Callable[..., ConnectorProcess], tmp_path: Path
) -> tuple[Lines, Path, Path, Path]:
    """(provider's export lines, consumer's export, provider key, consumer key)."""
    window = {"metering_window_bytes": str(MIB)}
    provider, consumer = guarded("provider", **window), guarded("consumer", **window)
    payload = tmp_path / "payload.bin"
    payload.write_bytes(os.urandom(3 * MIB + 17))
    provider.publish(payload)
    agreement_id = negotiate(consumer, provider, "ds-1")
    tp = transfer(consumer, agreement_id, "HttpData-PULL")
    consumer.api.wait_state("transfers", tp["id"], {"COMPLETED"}, timeout=30)

    def signed(node: ConnectorProcess) -> Any:
        head = node.api.get(f"/api/v1/agreements/{agreement_id}/metering")["header"]
        return head["signed_head"] and head["signed_head"]["body"]["count"] == 5

    wait_for("the countersigned head at the provider", lambda: signed(provider))
    wait_for("the countersigned head at the consumer", lambda: signed(consumer))
    lines = export(provider, agreement_id, tmp_path / "chain.jsonl")
    export(consumer, agreement_id, tmp_path / "consumer-chain.jsonl")
    return (
        lines,
        tmp_path / "consumer-chain.jsonl",
        did_document(provider, tmp_path / "provider-did.json"),
        did_document(consumer, tmp_path / "consumer-did.json"),
    )


def verify(chain: Path, keys: tuple[Path, Path], *extra: str) -> Any:
    return cli("metering", "verify", str(chain), "--provider-key", str(keys[0]),
               "--consumer-key", str(keys[1]), *extra)  # fmt: skip


def test_a_truncated_chain_never_verifies(
    exported: tuple[Lines, Path, Path, Path], tmp_path: Path
) -> None:
    lines, theirs, provider_key, consumer_key = exported
    keys = (provider_key, consumer_key)
    assert lines[0]["count"] == 5 and lines[0]["signed_head"]["body"]["count"] == 5
    whole = tmp_path / "chain.jsonl"
    run = verify(whole, keys)
    assert run.returncode == 0, run.stdout + run.stderr
    run = verify(whole, keys, "--head", str(theirs))
    assert run.returncode == 0, run.stdout + run.stderr

    failed = []
    for name, (tamper, why) in TAMPERINGS.items():
        chain = write_lines(tmp_path / "tampered.jsonl", tamper(copy.deepcopy(lines)))
        run = verify(chain, keys)
        if run.returncode == 0 or why not in run.stdout:
            failed.append(f"{name}: exit {run.returncode}, {run.stdout.strip()[-300:]}")
    assert not failed, "\n".join(failed)

    # the consumer's export witnesses the head the provider's file no longer shows
    chain = write_lines(tmp_path / "tampered.jsonl", _without_signed_head(lines))
    run = verify(chain, keys, "--head", str(theirs))
    assert run.returncode == 1, run.stdout
    assert f"the head in {theirs}" in run.stdout and "counts 5 records, the chain holds 3" in (
        run.stdout
    ), run.stdout
