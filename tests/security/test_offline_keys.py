"""Finding 20: the offline verifiers bind each key file to the DID the file names.

A chain whose receipts were made with the provider's own key must not verify because the
provider's DID document (or its bare JWK) was handed over as the consumer's key; the same for a
deletion receipt. Two real connectors make the chain; the forging is done offline, as an
auditor would receive it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt

from connector.identity import keys as keyfile
from connector.identity.did import KEY_FRAGMENT
from connector.identity.signatures import digest
from connector.model.usage import RECEIPT_FIELDS, RECEIPT_TYPE
from tests.harness import ConnectorProcess, cli, negotiate
from tests.test_metering import did_document, export, transfer, write_lines

MIB = 1024 * 1024


def forged(signer: ConnectorProcess, claimed: str, document: Any, kid_of: str) -> str:
    """A JWS over `document` that claims to be `claimed`'s but is made with `signer`'s key."""
    pair = keyfile.load(signer.dir / "keys" / "private.pem")
    claims = {"iss": claimed, "sha256": digest(document)}
    return jwt.encode(
        claims, pair.private, algorithm="EdDSA", headers={"kid": f"{kid_of}#{KEY_FRAGMENT}"}
    )


def verify(chain: Path, provider_key: Path, consumer_key: Path) -> Any:
    return cli("metering", "verify", str(chain), "--provider-key", str(provider_key),
               "--consumer-key", str(consumer_key))  # fmt: skip


def test_a_key_file_must_belong_to_the_did_the_chain_names(
    guarded: Callable[..., ConnectorProcess], tmp_path: Path
) -> None:
    window = {"metering_window_bytes": str(MIB)}
    provider, consumer = guarded("provider", **window), guarded("consumer", **window)
    payload = tmp_path / "payload.bin"
    payload.write_bytes(os.urandom(2 * MIB + 3))
    provider.publish(payload)
    agreement_id = negotiate(consumer, provider, "ds-1")
    tp = transfer(consumer, agreement_id, "HttpData-PULL")
    consumer.api.wait_state("transfers", tp["id"], {"COMPLETED"}, timeout=30)
    lines = export(provider, agreement_id, tmp_path / "chain.jsonl")
    provider_doc = did_document(provider, tmp_path / "provider-did.json")
    consumer_doc = did_document(consumer, tmp_path / "consumer-did.json")
    provider_jwk = tmp_path / "provider.jwk"
    provider_jwk.write_text(
        json.dumps(json.loads(provider_doc.read_text())["verificationMethod"][0]["publicKeyJwk"])
    )
    run = verify(tmp_path / "chain.jsonl", provider_doc, consumer_doc)
    assert run.returncode == 0, run.stdout + run.stderr

    # every receipt replaced by one the provider made itself, naming the consumer as signer
    by_provider_kid = [lines[0]] + [
        {**line, "receipt": forged(provider, consumer.did, line["record"], provider.did)}
        for line in lines[1:]
    ]
    chain = write_lines(tmp_path / "forged-kid.jsonl", by_provider_kid)
    run = verify(chain, provider_doc, provider_doc)
    assert run.returncode != 0, run.stdout
    assert f"is the DID document of {provider.did}" in run.stderr, run.stderr
    assert f"names {consumer.did}" in run.stderr, run.stderr

    # the same with the consumer's key id, and the provider's bare JWK as the consumer's key
    by_consumer_kid = [lines[0]] + [
        {**line, "receipt": forged(provider, consumer.did, line["record"], consumer.did)}
        for line in lines[1:]
    ]
    chain = write_lines(tmp_path / "forged-jwk.jsonl", by_consumer_kid)
    run = verify(chain, provider_doc, provider_jwk)
    assert run.returncode != 0, run.stdout
    assert "hold the same public key" in run.stderr, run.stderr

    # with the right keys both forgeries show as unreceipted
    for name in ("forged-kid.jsonl", "forged-jwk.jsonl"):
        run = verify(tmp_path / name, provider_doc, consumer_doc)
        assert run.returncode == 1 and "unreceipted: receipt invalid" in run.stdout, run.stdout


def test_a_deletion_receipt_key_must_be_the_consumers(
    guarded: Callable[..., ConnectorProcess], tmp_path: Path
) -> None:
    provider, consumer = guarded("provider"), guarded("consumer")
    record: dict[str, Any] = dict.fromkeys(RECEIPT_FIELDS, None) | {
        "type": RECEIPT_TYPE,
        "agreement": "urn:uuid:a",
        "dataset": "ds-1",
        "provider": provider.did,
        "consumer": consumer.did,
        "transfer": "urn:uuid:t",
        "deleted": [],
        "deadline": "2026-01-01T00:00:00Z",
        "reason": "deleted after use",
        "deleted_at": "2026-01-01T00:00:00Z",
    }
    receipt = tmp_path / "receipt.json"
    signature = forged(provider, consumer.did, record, provider.did)
    receipt.write_text(json.dumps({"record": record, "signature": signature}))
    provider_doc = did_document(provider, tmp_path / "provider-did.json")
    run = cli("deletions", "verify", str(receipt), "--consumer-key", str(provider_doc))
    assert run.returncode != 0, run.stdout
    assert f"is the DID document of {provider.did}" in run.stderr, run.stderr
    consumer_doc = did_document(consumer, tmp_path / "consumer-did.json")
    run = cli("deletions", "verify", str(receipt), "--consumer-key", str(consumer_doc))
    assert run.returncode == 1 and "does not verify" in run.stdout, run.stdout
