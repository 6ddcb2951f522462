"""Canonical JSON is RFC 8785 (JCS): the RFC's own examples, the vector docs/profile.md gives
other implementations, and signatures made over the form used before still verifying."""

from __future__ import annotations

import hashlib
import json
import re
import struct
from pathlib import Path
from typing import Any

import pytest

from connector.errors import BadRequest
from connector.identity import jws, keys, signatures
from connector.identity.did import KEY_FRAGMENT, build_document

PROFILE = Path(__file__).resolve().parent.parent / "docs" / "profile.md"


def test_rfc8785_section_3_2_2_example() -> None:
    # the input as written in the RFC (JSON text: numbers are parsed as doubles)
    text = r"""{
      "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
      "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
      "literals": [null, true, false]
    }"""
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert signatures.canonical(json.loads(text)) == expected.encode()


def test_rfc8785_section_3_2_3_sorting_by_utf16_code_units() -> None:
    text = r"""{
      "\u20ac": "Euro Sign",
      "\r": "Carriage Return",
      "\ufb33": "Hebrew Letter Dalet With Dagesh",
      "1": "One",
      "\ud83d\ude00": "Emoji: Grinning Face",
      "\u0080": "Control",
      "\u00f6": "Latin Small Letter O With Diaeresis"
    }"""
    out = json.loads(signatures.canonical(json.loads(text)))
    values = list(out.values())
    assert values == [
        "Carriage Return",
        "One",
        "Control",
        "Latin Small Letter O With Diaeresis",
        "Euro Sign",
        "Emoji: Grinning Face",  # U+1F600 is D83D DE00 in UTF-16: before U+FB33
        "Hebrew Letter Dalet With Dagesh",
    ]


# RFC 8785 Appendix B: IEEE 754 bit patterns and their JSON number text
APPENDIX_B = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "text"), APPENDIX_B)
def test_rfc8785_appendix_b_numbers(bits: str, text: str) -> None:
    (number,) = struct.unpack(">d", bytes.fromhex(bits))
    assert signatures.canonical([number]) == f"[{text}]".encode()


def test_nan_has_no_canonical_form() -> None:
    with pytest.raises(BadRequest):
        signatures.canonical({"x": float("nan")})


def test_integers_past_the_exact_range_are_written_as_the_double_a_verifier_reads() -> None:
    assert signatures.canonical({"n": 2**60}) == b'{"n":1152921504606847000}'
    assert signatures.canonical({"n": 2**53 + 1}) == b'{"n":9007199254740992}'
    assert signatures.canonical({"n": True, "m": 2**53 - 1}) == b'{"m":9007199254740991,"n":true}'
    with pytest.raises(BadRequest):
        signatures.canonical({"n": 10**400})


def _documented_vector() -> tuple[dict[str, Any], str, str]:
    """The input, canonical text and SHA-256 docs/profile.md gives other implementations."""
    text = PROFILE.read_text(encoding="utf-8")
    section = text[text.index("## Canonical JSON: RFC 8785") :]
    blocks = re.findall(r"```(?:json|text)?\n(.*?)\n```", section, re.S)
    digest = re.search(r"SHA-256: `([0-9a-f]{64})`", section)
    assert len(blocks) >= 2 and digest is not None
    return json.loads(blocks[0]), blocks[1], digest.group(1)


def test_the_vector_in_the_profile_reproduces() -> None:
    document, canonical_text, sha256 = _documented_vector()
    assert signatures.canonical(document) == canonical_text.encode("utf-8")
    assert signatures.digest(document) == sha256
    assert hashlib.sha256(canonical_text.encode("utf-8")).hexdigest() == sha256
    # the vector is one where the old form differs: it exercises what changed
    assert signatures.legacy_canonical(document) != canonical_text.encode("utf-8")


@pytest.fixture
def signer() -> tuple[str, keys.KeyPair, dict[str, Any]]:
    did = "did:web:127.0.0.1%3A9"
    pair = keys.generate()
    return did, pair, build_document(did, pair, "http://127.0.0.1:9/dsp", "http://127.0.0.1:9/cs")


def test_a_signature_over_the_legacy_form_still_verifies(
    signer: tuple[str, keys.KeyPair, dict[str, Any]],
) -> None:
    """An agreement signed before RFC 8785 (its policy holds 0.5 and 10.0, which the two
    forms write differently) still verifies; a changed document does not."""
    did, pair, document = signer
    agreement = {
        "@id": "urn:uuid:a",
        "permission": [{"constraint": [{"rightOperand": 0.5}]}],
        "limit": 10.0,
    }
    legacy = hashlib.sha256(signatures.legacy_canonical(agreement)).hexdigest()
    assert legacy != signatures.digest(agreement)
    old = jws.sign({"iss": did, "sha256": legacy}, pair, kid=f"{did}#{KEY_FRAGMENT}")
    signatures.verify(agreement, old, did, document)
    signatures.verify(agreement, signatures.sign(agreement, did, pair), did, document)
    with pytest.raises(BadRequest, match="digest mismatch"):
        signatures.verify({**agreement, "limit": 11.0}, old, did, document)


def test_chained_records_hash_as_before() -> None:
    """Metering and usage records hold strings and integers only: their hashes, and so the
    `prev` links of chains stored before the change, are the same under both forms."""
    record = {
        "agreement": "urn:uuid:agr",
        "transfer": "urn:uuid:tp",
        "provider": "did:web:p",
        "consumer": "did:web:c",
        "offset": 0,
        "length": 1048576,
        "records": 12,
        "sha256": "ab" * 32,
        "from": "2026-01-01T00:00:00Z",
        "to": "2026-01-01T00:00:01Z",
        "purpose": "Qualitätssicherung \u2028 \u00e9\t",
        "kind": "window",
        "seq": 3,
        "prev": signatures.GENESIS,
    }
    assert signatures.canonical(record) == signatures.legacy_canonical(record)
    assert signatures.digests(record) == (signatures.digest(record),)
