"""Identity on the DSP endpoints: self-issued tokens that are expired, forged, replayed,
misaddressed or otherwise wrong are refused with 401 and a DSP error naming the problem,
and leave the store untouched; the DID document and version metadata are public."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from connector.identity import keys as keyfile
from connector.identity.did import did_document_url
from connector.identity.tokens import TokenIssuer
from connector.model.messages import DSP_CONTEXT
from tests.harness import ConnectorProcess
from tests.test_bad_input import (
    CTX,
    Reply,
    assert_dsp_error,
    cn_request,
    http,
    settle,
    snapshot,
)


def claims_for(
    sender: ConnectorProcess, receiver: ConnectorProcess, **overrides: Any
) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": sender.did,
        "sub": sender.did,
        "aud": receiver.did,
        "jti": str(uuid.uuid4()),
        "iat": now,
        "exp": now + 60,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def sign(claims: dict[str, Any], key: Any, *, kid: str | None, alg: str = "EdDSA") -> str:
    headers = {"kid": kid, "typ": "JWT"} if kid else {"typ": "JWT"}
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


def post(receiver: ConnectorProcess, path: str, body: Any, authorization: str | None) -> Reply:
    headers = {} if authorization is None else {"Authorization": authorization}
    return http("POST", receiver.dsp + path, body, headers=headers)


def test_bad_tokens_are_refused_and_change_nothing(
    provider: ConnectorProcess, consumer: ConnectorProcess, payload: Path
) -> None:
    provider.publish(payload)
    settle(provider, consumer)
    before = snapshot(provider, tokens=True), snapshot(consumer, tokens=True)

    real = keyfile.load(consumer.dir / "keys" / "private.pem").private
    other = keyfile.generate().private
    kid = f"{consumer.did}#key-1"
    now = int(time.time())

    def signed(**overrides: Any) -> str:
        return sign(claims_for(consumer, provider, **overrides), real, kid=kid)

    cases: list[tuple[str, str | None, str]] = [
        ("missing", None, "Authorization header"),
        ("empty", "", "Authorization header"),
        ("expired", signed(iat=now - 400, exp=now - 120), "expired"),
        ("forged", sign(claims_for(consumer, provider), other, kid=kid), "signature does not"),
        ("audience", signed(aud=consumer.did), "addressed to another participant"),
        ("audience URL", signed(aud=provider.dsp), "addressed to another participant"),
        ("iss != sub", signed(sub=provider.did), "iss and sub"),
        ("no sub", signed(sub=None), "iss and sub"),
        ("lifetime", signed(iat=now, exp=now + 301), "lifetime exceeds 300"),
        ("not yet valid", signed(iat=now + 3600, exp=now + 3660), "not yet valid"),
        ("far future", signed(iat=now + 10**12, exp=now + 10**12 + 60), "beyond any date"),
        ("no jti", signed(jti=None), "jti"),
        ("no exp", signed(exp=None), "exp"),
        (
            "HS256",
            sign(
                claims_for(consumer, provider),
                "a-shared-secret-of-32-bytes-or-more!",
                kid=kid,
                alg="HS256",
            ),
            "EdDSA",
        ),
        ("none", sign(claims_for(consumer, provider), None, kid=kid, alg="none"), "EdDSA"),
        (
            "ES256",
            sign(
                claims_for(consumer, provider),
                ec.generate_private_key(ec.SECP256R1()),
                kid=kid,
                alg="ES256",
            ),
            "EdDSA",
        ),
        (
            "unknown key",
            sign(claims_for(consumer, provider), real, kid=consumer.did + "#key-9"),
            "not found",
        ),
        (
            "unresolvable DID",
            sign(
                claims_for(
                    consumer, provider, iss="did:web:127.0.0.1%3A9", sub="did:web:127.0.0.1%3A9"
                ),
                real,
                kid=None,
            ),
            "the DID did:web:127.0.0.1%3A9 could not be resolved",
        ),
        (
            "other DID method",
            sign(
                claims_for(consumer, provider, iss="did:key:z6Mkf", sub="did:key:z6Mkf"),
                real,
                kid=None,
            ),
            "unsupported DID method",
        ),
        ("garbage", "Bearer not.a.jwt", "malformed token"),
    ]
    negotiation = cn_request(consumer, "urn:uuid:identity-1")
    catalog = {"@context": CTX, "@type": "CatalogRequestMessage"}
    # refused for its time alone: the code tells the sender a retry may pass (clock skew)
    for_time = {"expired", "not yet valid", "far future"}
    for name, authorization, fragment in cases:
        code = "CLOCK_SKEW" if name in for_time else None
        # The message is valid: a good token would create a negotiation.
        reply = post(provider, "/negotiations/request", negotiation, authorization)
        assert_dsp_error(reply, 401, "ContractNegotiationError", fragment, code=code)
        # A refused token is not burnt: the same one is refused for the same reason.
        reply = post(provider, "/catalog/request", catalog, authorization)
        assert_dsp_error(reply, 401, "CatalogError", fragment, code=code)
        reply = http(
            "GET",
            provider.dsp + f"/transfers/{uuid.uuid4()}",
            headers={"Authorization": authorization} if authorization is not None else {},
        )
        assert_dsp_error(reply, 401, "TransferError", fragment, code=code)

    # Nothing anywhere changed, not even the list of seen tokens.
    assert (snapshot(provider, tokens=True), snapshot(consumer, tokens=True)) == before

    # The same message with a proper token is accepted: the token was the only problem.
    good = TokenIssuer(consumer.did, keyfile.load(consumer.dir / "keys" / "private.pem"), 120)
    reply = post(provider, "/negotiations/request", negotiation, good.issue(provider.did))
    assert reply.status == 201, reply
    assert reply.body["consumerPid"] == "urn:uuid:identity-1"


def test_replayed_token_is_refused(provider: ConnectorProcess, consumer: ConnectorProcess) -> None:
    issuer = TokenIssuer(consumer.did, keyfile.load(consumer.dir / "keys" / "private.pem"), 120)
    token = issuer.issue(provider.did)
    catalog = {"@context": CTX, "@type": "CatalogRequestMessage"}

    first = post(provider, "/catalog/request", catalog, f"Bearer {token}")
    assert first.status == 200, first
    assert first.body["participantId"] == provider.did
    settle(provider, consumer)
    before = snapshot(provider, tokens=True)

    for path, body, error in [
        ("/catalog/request", catalog, "CatalogError"),
        (
            "/negotiations/request",
            cn_request(consumer, "urn:uuid:replay-1"),
            "ContractNegotiationError",
        ),
    ]:
        for authorization in (token, f"Bearer {token}"):
            reply = post(provider, path, body, authorization)
            assert_dsp_error(reply, 401, error, "already used", "replay")
    assert snapshot(provider, tokens=True) == before

    # The provider remembers across a restart: the list of seen tokens is durable.
    provider.stop()
    provider.start()
    reply = post(provider, "/catalog/request", catalog, token)
    assert_dsp_error(reply, 401, "CatalogError", "replay")
    assert snapshot(provider, tokens=True) == before
    # A fresh token from the same participant is fine.
    reply = post(provider, "/catalog/request", catalog, issuer.issue(provider.did))
    assert reply.status == 200, reply


def test_did_document_and_version_metadata_are_public(
    provider: ConnectorProcess, consumer: ConnectorProcess
) -> None:
    pair = keyfile.load(provider.dir / "keys" / "private.pem")
    url = did_document_url(provider.did, insecure_http=True)
    assert url == provider.base_url + "/.well-known/did.json"
    for headers in ({}, {"Authorization": "Bearer garbage"}):
        reply = http("GET", url, headers=headers)
        assert reply.status == 200, reply
        assert reply.content_type == "application/json"
        doc = reply.body
        assert doc["id"] == provider.did
        assert "https://www.w3.org/ns/did/v1" in doc["@context"]
        (method,) = doc["verificationMethod"]
        assert method["id"] == f"{provider.did}#key-1"
        assert method["controller"] == provider.did
        assert method["type"] == "JsonWebKey2020"
        assert method["publicKeyJwk"] == {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": keyfile.b64url(pair.public.public_bytes_raw()),
        }
        assert "d" not in method["publicKeyJwk"]
        for relation in ("authentication", "assertionMethod", "capabilityInvocation"):
            assert method["id"] in doc[relation]
        assert {
            "id": f"{provider.did}#dsp",
            "type": "DataService",
            "serviceEndpoint": provider.dsp,
        } in doc["service"]

        reply = http("GET", provider.base_url + "/.well-known/dspace-version", headers=headers)
        assert reply.status == 200, reply
        versions = reply.body["protocolVersions"]
        assert any(
            v["version"] == "2025-1" and v["path"] == "/dsp/2025-1" and v["binding"] == "HTTPS"
            for v in versions
        ), versions

    # Each participant's document carries its own key.
    other = http("GET", consumer.base_url + "/.well-known/did.json").body
    assert other["id"] == consumer.did != provider.did
    assert (
        other["verificationMethod"][0]["publicKeyJwk"]
        != doc["verificationMethod"][0]["publicKeyJwk"]
    )
    # The protocol endpoints themselves are not public.
    reply = http(
        "POST",
        provider.dsp + "/catalog/request",
        {"@context": [DSP_CONTEXT], "@type": "CatalogRequestMessage"},
    )
    assert_dsp_error(reply, 401, "CatalogError", "Authorization")
