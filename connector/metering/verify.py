"""Offline check of an exported metering chain: needs only the two parties' public keys.

Reports every link that was altered, dropped, reordered, inserted or left without a valid
receipt, so an auditor can trust the figures an invoice is computed from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connector.errors import BadRequest
from connector.identity import signatures
from connector.identity.did import KEY_FRAGMENT
from connector.identity.signatures import GENESIS
from connector.metering.export import CHAIN_TYPE
from connector.metering.heads import HeadRefused, check_signed
from connector.metering.records import record_hash
from connector.model.metering import RECORD_FIELDS, merge_ranges


class ChainFileError(BadRequest):
    """The file is not an exported metering chain."""


@dataclass(frozen=True)
class Finding:
    line: int
    seq: int | None
    problem: str  # altered | dropped | reordered | inserted | unreceipted
    detail: str

    def text(self) -> str:
        where = f"line {self.line}" + (f", record {self.seq}" if self.seq is not None else "")
        return f"{where}: {self.problem}: {self.detail}"


@dataclass
class Verified:
    header: dict[str, Any]
    records: list[dict[str, Any]]
    findings: list[Finding]
    receipted: set[int] = field(default_factory=set)  # seqs with a valid consumer receipt

    @property
    def ok(self) -> bool:
        return not self.findings

    def coverage(self) -> dict[str, dict[str, Any]]:
        """Per transfer (the provider's id, as in the records): the merged half-open byte
        ranges its validly receipted records cover, their size, and the ranges metered only by
        records without a valid receipt. What a consumer holds must lie inside `receipted`, or
        bytes were delivered unmetered."""
        receipted: dict[str, list[tuple[int, int]]] = {}
        other: dict[str, list[tuple[int, int]]] = {}
        for record in self.records:
            transfer = str(record.get("transfer"))
            receipted.setdefault(transfer, [])
            other.setdefault(transfer, [])
            start, length = record.get("offset"), record.get("length")
            if not isinstance(start, int) or not isinstance(length, int) or length <= 0:
                continue
            into = receipted if record.get("seq") in self.receipted else other
            into[transfer].append((start, start + length))
        out: dict[str, dict[str, Any]] = {}
        for transfer, ranges in receipted.items():
            covered = merge_ranges(ranges)
            out[transfer] = {
                "receipted": [[a, b] for a, b in covered],
                "receipted_bytes": sum(b - a for a, b in covered),
                "unreceipted": [
                    [a, b] for a, b in subtract_ranges(merge_ranges(other[transfer]), covered)
                ],
            }
        return out

    def report(self) -> dict[str, Any]:
        """The `metering verify --json` document."""
        return {
            "agreement": self.header.get("agreement"),
            "ok": self.ok,
            "findings": [
                {"line": f.line, "seq": f.seq, "problem": f.problem, "detail": f.detail}
                for f in self.findings
            ],
            "records": len(self.records),
            "bytes_metered": sum(int(r.get("length", 0)) for r in self.records),
            "transfers": self.coverage(),
        }


def subtract_ranges(
    ranges: list[tuple[int, int]], minus: list[tuple[int, int]]
) -> list[tuple[int, int]]:
    """The parts of merged `ranges` outside merged `minus`."""
    out: list[tuple[int, int]] = []
    for start, end in ranges:
        at = start
        for a, b in minus:
            if b <= at or a >= end:
                continue
            if a > at:
                out.append((at, a))
            at = max(at, b)
        if at < end:
            out.append((at, end))
    return out


def key_document(path: Path, did: str) -> dict[str, Any]:
    """A DID document from a file holding either the document or the bare public JWK.

    A document must be `did`'s own, and only its own keys are kept: the key given for one
    party must never verify a signature made with another party's key."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ChainFileError(f"cannot read key file {path}: {exc}") from exc
    if isinstance(data, dict) and "verificationMethod" in data:
        if data.get("id") != did:
            raise ChainFileError(
                f"{path} is the DID document of {data.get('id')}, but the file names {did}"
                " for this key"
            )
        methods = data.get("verificationMethod")
        own = [
            m
            for m in (methods if isinstance(methods, list) else [])
            if isinstance(m, dict) and str(m.get("id", "")).startswith(f"{did}#")
        ]
        return {**data, "verificationMethod": own}
    if isinstance(data, dict) and data.get("kty") == "OKP":
        vm = f"{did}#{KEY_FRAGMENT}"
        return {
            "id": did,
            "verificationMethod": [{"id": vm, "controller": did, "publicKeyJwk": data}],
            "assertionMethod": [vm],
        }
    raise ChainFileError(f"{path} holds neither a DID document nor an Ed25519 JWK")


def public_keys(document: dict[str, Any]) -> set[str]:
    """The Ed25519 public keys (JWK `x`) a key document holds."""
    return {
        str((m.get("publicKeyJwk") or {}).get("x"))
        for m in document.get("verificationMethod") or []
        if isinstance(m, dict) and isinstance(m.get("publicKeyJwk"), dict)
    }


def check_distinct(provider_doc: dict[str, Any], consumer_doc: dict[str, Any]) -> None:
    """The two parties' keys must differ: a receipt is worth nothing if the provider's own key
    is accepted as the consumer's (ChainFileError otherwise)."""
    shared = public_keys(provider_doc) & public_keys(consumer_doc)
    if shared:
        raise ChainFileError(
            "the provider's and the consumer's key files hold the same public key; a receipt"
            " must be the consumer's own signature"
        )


def read_chain(path: Path) -> tuple[dict[str, Any], list[tuple[int, dict[str, Any]]]]:
    """(header, [(line number, line)]) of a JSON Lines export."""
    header: dict[str, Any] | None = None
    lines: list[tuple[int, dict[str, Any]]] = []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ChainFileError(f"cannot read {path}: {exc}") from exc
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
        except ValueError as exc:
            raise ChainFileError(f"line {number} is not JSON: {exc}") from exc
        if not isinstance(item, dict):
            raise ChainFileError(f"line {number} is not a JSON object")
        if item.get("type") == CHAIN_TYPE:
            header = item
        else:
            lines.append((number, item))
    if header is None:
        raise ChainFileError(f"{path} has no chain header line (type tdsc-metering-chain)")
    return header, lines


def read_head(path: Path) -> Any:
    """A signed chain head from a file: `{body, signature, receipt}`, or an export (or its
    header line) whose `signed_head` it is (e.g. the other party's export)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ChainFileError(f"cannot read {path}: {exc}") from exc
    try:
        data = json.loads(text)
    except ValueError:
        try:
            data = json.loads(text.splitlines()[0]) if text.strip() else None
        except ValueError as exc:
            raise ChainFileError(f"{path} holds no signed chain head: {exc}") from exc
    if isinstance(data, dict) and data.get("type") == CHAIN_TYPE:
        data = data.get("signed_head")
    if not isinstance(data, dict):
        raise ChainFileError(f"{path} holds no signed chain head ({{body, signature, receipt}})")
    return data


def verify_chain(
    header: dict[str, Any],
    lines: list[tuple[int, dict[str, Any]]],
    provider_doc: dict[str, Any],
    consumer_doc: dict[str, Any],
    given_heads: list[tuple[str, Any]] | None = None,
) -> Verified:
    """Every finding about the chain; `given_heads` are signed heads from elsewhere (label,
    head), each of which the chain must be at least as long as."""
    provider, consumer = str(header.get("provider")), str(header.get("consumer"))
    findings: list[Finding] = []
    by_seq: dict[int, dict[str, Any]] = {}
    receipted: set[int] = set()
    last_seq: int | None = None
    for number, line in lines:
        record = line.get("record")
        if not isinstance(record, dict) or not isinstance(record.get("seq"), int):
            findings.append(Finding(number, None, "altered", "not a metering record"))
            continue
        seq = record["seq"]
        problem = _signed_problem(line, record, header, provider, provider_doc)
        if problem:
            findings.append(Finding(number, seq, "altered", problem))
            continue
        if seq in by_seq:
            findings.append(Finding(number, seq, "inserted", f"a second record numbered {seq}"))
            continue
        if last_seq is not None and seq < last_seq:
            findings.append(Finding(number, seq, "reordered", f"comes after record {last_seq}"))
        by_seq[seq] = {**line, "_line": number}
        last_seq = seq if last_seq is None else max(last_seq, seq)
        receipt = line.get("receipt")
        if not receipt:
            why = line.get("refusal") or "no receipt from the consumer"
            findings.append(Finding(number, seq, "unreceipted", str(why)))
        else:
            try:
                signatures.verify(record, str(receipt), consumer, consumer_doc)
                receipted.add(seq)
            except BadRequest as exc:
                findings.append(Finding(number, seq, "unreceipted", f"receipt invalid: {exc}"))
    findings += _links(by_seq, header)
    findings += _heads(by_seq, header, provider_doc, consumer_doc, given_heads or [])
    ordered = [by_seq[s]["record"] for s in sorted(by_seq)]
    return Verified(header, ordered, findings, receipted)


def _signed_problem(
    line: dict[str, Any],
    record: dict[str, Any],
    header: dict[str, Any],
    provider: str,
    provider_doc: dict[str, Any],
) -> str | None:
    if set(record) != set(RECORD_FIELDS):
        return "the record's fields differ from the metering profile"
    if record.get("agreement") != header.get("agreement"):
        return f"belongs to agreement {record.get('agreement')}, not {header.get('agreement')}"
    if record.get("provider") != provider or record.get("consumer") != header.get("consumer"):
        return "names other participants than the chain"
    if line.get("hash") != record_hash(record):
        return "content does not match its hash"
    try:
        signatures.verify(record, str(line.get("signature")), provider, provider_doc)
    except BadRequest as exc:
        return f"provider signature invalid: {exc}"
    return None


def _links(by_seq: dict[int, dict[str, Any]], header: dict[str, Any]) -> list[Finding]:
    """Gaps and broken hash links, after putting the records in order."""
    findings: list[Finding] = []
    seqs = sorted(by_seq)
    expected = 0
    for seq in seqs:
        line = by_seq[seq]
        if seq > expected:
            missing = (
                f"record {expected}" if seq == expected + 1 else f"records {expected}-{seq - 1}"
            )
            findings.append(Finding(line["_line"], seq, "dropped", f"{missing} missing before it"))
        previous = by_seq.get(seq - 1)
        want = previous["hash"] if previous else (GENESIS if seq == 0 else None)
        if want is not None and line["record"]["prev"] != want:
            findings.append(
                Finding(
                    line["_line"],
                    seq,
                    "inserted",
                    "its previous-hash does not link to the record before it",
                )
            )
        expected = seq + 1
    count, head = header.get("count"), header.get("head")
    if isinstance(count, int) and count < expected:
        findings.append(
            Finding(
                0, None, "altered", f"the header counts {count} records, {expected} are present"
            )
        )
    if isinstance(count, int) and count > expected:
        findings.append(
            Finding(
                0, None, "dropped", f"the header counts {count} records, {expected} are present"
            )
        )
    if (
        head
        and seqs
        and by_seq[seqs[-1]]["hash"] != head
        and not (isinstance(count, int) and count > expected)
    ):
        findings.append(
            Finding(0, None, "altered", "the chain's last record is not the header's head")
        )
    return findings


def _heads(
    by_seq: dict[int, dict[str, Any]],
    header: dict[str, Any],
    provider_doc: dict[str, Any],
    consumer_doc: dict[str, Any],
    given: list[tuple[str, Any]],
) -> list[Finding]:
    """The chain against every head both parties signed: it must hold each head's record
    and be at least as long (the header itself is unsigned: its count proves nothing)."""
    findings: list[Finding] = []
    agreement = str(header.get("agreement"))
    provider, consumer = str(header.get("provider")), str(header.get("consumer"))
    signed = header.get("signed_head")
    if signed is None and by_seq:
        findings.append(
            Finding(
                1,
                None,
                "unreceipted",
                "the header carries no chain head signed by both parties, so the chain's"
                " length is not proven",
            )
        )
    candidates = ([("the header's signed head", signed)] if signed is not None else []) + given
    present = (max(by_seq) + 1) if by_seq else 0
    for label, candidate in candidates:
        where = 1 if label == "the header's signed head" else 0
        try:
            body = check_signed(
                candidate, agreement, provider, consumer, provider_doc, consumer_doc
            )
        except HeadRefused as exc:
            findings.append(Finding(where, None, "altered", f"{label}: {exc.detail}"))
            continue
        count = int(body["count"])
        named = by_seq.get(count - 1)
        if present < count:
            findings.append(
                Finding(
                    where,
                    None,
                    "dropped",
                    f"{label} (signed by both parties at {body['at']}) counts {count} records,"
                    f" the chain holds {present}",
                )
            )
        elif named is None or named["hash"] != body["head"]:
            findings.append(
                Finding(
                    where,
                    count - 1,
                    "altered",
                    f"{label} (signed by both parties at {body['at']}) names another record"
                    f" {count - 1}",
                )
            )
    return findings
