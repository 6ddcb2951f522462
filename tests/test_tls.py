"""HTTPS without development shortcuts: a test CA, a certificate for 127.0.0.1, did:web
resolved over HTTPS, and configuration that refuses plain HTTP unless asked for."""

from __future__ import annotations

import datetime as dt
import hashlib
import http.client
import ipaddress
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from connector.identity.did import did_document_url
from connector.mgmt_client import ApiError
from tests.harness import ConnectorProcess, cli, negotiate


@dataclass
class Pki:
    ca: Path
    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_pki(directory: Path) -> Pki:
    """A CA and a server certificate for 127.0.0.1 (IP SAN) and localhost, signed by it."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("Connector test CA"))
        .issuer_name(_name("Connector test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    pki.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pki.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pki.key.chmod(0o600)
    return pki


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


def tls_node(root: Path, name: str, pki: Pki, *, trust: bool = True) -> ConnectorProcess:
    node = ConnectorProcess(
        root, name, extra_init=("--tls-cert", str(pki.cert), "--tls-key", str(pki.key))
    )
    assert node.base_url.startswith("https://127.0.0.1:")
    assert node.settings["dev_insecure_http"] is False
    if trust:
        node.set(ca_file=str(pki.ca))
    return node


@pytest.fixture
def nodes() -> Iterator[list[ConnectorProcess]]:
    started: list[ConnectorProcess] = []
    yield started
    for node in started:
        node.stop()


def get(url: str, context: ssl.SSLContext | None) -> tuple[int, dict[str, object]]:
    with urllib.request.urlopen(url, timeout=10, context=context) as resp:
        return resp.status, json.loads(resp.read())


def test_negotiation_and_pull_transfer_over_https(
    tmp_path: Path, pki: Pki, nodes: list[ConnectorProcess], payload: Path
) -> None:
    provider = tls_node(tmp_path, "provider", pki)
    consumer = tls_node(tmp_path, "consumer", pki)
    nodes += [provider.start(), consumer.start()]

    # The public listener speaks TLS only, with the certificate our CA signed.
    trusting = ssl.create_default_context(cafile=str(pki.ca))
    status, doc = get(provider.base_url + "/.well-known/did.json", trusting)
    assert status == 200 and doc["id"] == provider.did
    assert did_document_url(provider.did, insecure_http=False) == (
        provider.base_url + "/.well-known/did.json"
    )
    status, version = get(consumer.base_url + "/.well-known/dspace-version", trusting)
    assert status == 200 and version["protocolVersions"][0]["binding"] == "HTTPS"
    with pytest.raises(urllib.error.URLError) as refused:
        get(provider.base_url + "/.well-known/did.json", ssl.create_default_context())
    assert isinstance(refused.value.reason, ssl.SSLCertVerificationError)
    plain = provider.base_url.replace("https://", "http://")
    with pytest.raises((OSError, http.client.HTTPException)):
        get(plain + "/.well-known/did.json", None)

    # Each side verifies the other's tokens by resolving its did:web over HTTPS.
    provider.publish(payload)
    agreement_id = negotiate(consumer, provider, "ds-1")
    for node in (provider, consumer):
        agreement = node.api.get(f"/api/v1/agreements/{agreement_id}")
        assert agreement["verification"] == {"provider": "valid", "consumer": "valid"}
        assert agreement["provider_id"] == provider.did
        assert agreement["consumer_id"] == consumer.did

    tp = consumer.api.post(
        "/api/v1/transfers", {"agreementId": agreement_id, "format": "HttpData-PULL"}
    )
    done = consumer.api.wait_state("transfers", tp["id"], {"COMPLETED"}, timeout=30)
    expected = hashlib.sha256(payload.read_bytes()).hexdigest()
    assert done["sha256"] == expected
    assert hashlib.sha256(Path(done["path"]).read_bytes()).hexdigest() == expected
    pulled = [e for e in done["timeline"] if e["message_type"] == "pull"]
    assert any(provider.base_url + "/data/pull/" in e["detail"] for e in pulled), pulled
    provider_side = provider.api.get(f"/api/v1/transfers/{done['provider_pid']}")
    assert provider_side["state"] == "COMPLETED" and provider_side["sha256"] == expected


def test_untrusted_certificates_are_refused(
    tmp_path: Path, pki: Pki, nodes: list[ConnectorProcess]
) -> None:
    """Without the CA, a connector neither calls a peer nor accepts the peer's DID."""
    provider = tls_node(tmp_path, "provider", pki, trust=False)
    consumer = tls_node(tmp_path, "consumer", pki)
    nodes += [provider.start(), consumer.start()]

    # The consumer trusts the provider's certificate, but the provider cannot resolve
    # the consumer's did:web (its certificate is not trusted), so the token is refused.
    with pytest.raises(ApiError) as refused:
        consumer.api.post("/api/v1/catalog/request", {"counterPartyAddress": provider.dsp})
    assert refused.value.status == 502
    assert "401" in refused.value.detail and "could not be resolved" in refused.value.detail
    assert consumer.did in refused.value.detail

    # The provider does not even get through the TLS handshake with the consumer.
    with pytest.raises(ApiError) as failed:
        provider.api.post("/api/v1/catalog/request", {"counterPartyAddress": consumer.dsp})
    assert failed.value.status == 502
    assert "certificate verify failed" in failed.value.detail.lower()


def _serve(config: Path, **env: str) -> tuple[int, str]:
    done = cli("--config", str(config), "serve", env=env)
    return done.returncode, done.stderr


def test_config_refuses_plain_http_without_dev_flag(tmp_path: Path, pki: Pki) -> None:
    config = tmp_path / "connector.toml"
    base = [
        'name = "plain"',
        'data_dir = "."',
        "public_port = 1",
        "management_port = 1",
        'api_key = "secret-key-of-tls-test"',
    ]

    config.write_text("\n".join([*base, 'public_url = "http://127.0.0.1:8181"']) + "\n")
    code, err = _serve(config)
    assert code != 0
    assert "invalid configuration" in err and str(config) in err
    assert "plain http" in err and "dev_insecure_http" in err
    assert "Traceback" not in err

    config.write_text(
        "\n".join([*base, 'public_url = "http://127.0.0.1:8181"', "dev_insecure_http = false"])
        + "\n"
    )
    code, err = _serve(config)
    assert code != 0 and "dev_insecure_http" in err

    # An https file made plain by the environment is refused just the same.
    tls = [f'tls_cert = "{pki.cert}"', f'tls_key = "{pki.key}"']
    config.write_text("\n".join([*base, *tls, 'public_url = "https://127.0.0.1:8181"']) + "\n")
    code, err = _serve(config, CONNECTOR_PUBLIC_URL="http://127.0.0.1:8181")
    assert code != 0 and "dev_insecure_http" in err

    # Half a TLS configuration, or a URL that is not http(s), is refused too.
    config.write_text("\n".join([*base, tls[0], 'public_url = "https://127.0.0.1:8181"']) + "\n")
    code, err = _serve(config)
    assert code != 0 and "tls_cert and tls_key must be set together" in err
    config.write_text("\n".join([*base, 'public_url = "ftp://127.0.0.1"']) + "\n")
    code, err = _serve(config)
    assert code != 0 and "public_url" in err and "http(s)" in err

    # `connector init` will not write a plain-HTTP configuration without --dev.
    done = cli("init", "--dir", str(tmp_path / "new"), "--public-port", "8181")
    assert done.returncode != 0 and "--dev" in done.stderr
    assert not (tmp_path / "new" / "connector.toml").exists()
