"""DCP 1.0 wire forms an EDC 0.15.1 peer uses (issue 16): `Authorization: Bearer <jwt>` on
every request, presentation queries authenticated with the verifier's own self-issued token
that nests the holder's access token (and EDC's scope strings), and the revocation status
list served as a JSON credential to whoever asks for JSON. Real connector processes talk to
a recording peer on 127.0.0.1 that plays the other participant with its own did:web."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest

from connector.credentials import status_list
from connector.credentials.jwt_vc import (
    MEMBERSHIP,
    ROLE,
    STATUS_LIST,
    CredentialError,
    scope_type,
    sign_credential,
)
from connector.credentials.verifier import SCOPES, CredentialVerifier, query_scopes
from connector.egress import Egress, EgressPolicy
from connector.identity import access
from connector.identity import keys as keyfile
from connector.identity.did import KEY_FRAGMENT, DidResolver, build_document
from connector.identity.tokens import from_authorization
from tests.harness import ConnectorProcess
from tests.test_bad_input import CTX, Reply, http, token

EDC_MEMBERSHIP = "org.eclipse.edc.vc.type:MembershipCredential:read"
REFUSED = "the presentation query token is not accepted"


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Recorder:
    """A participant on 127.0.0.1 with its own did:web and key: serves its DID document and
    the answers a test sets, and records every request it receives."""

    answers: dict[str, tuple[int, bytes, str]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    keys: keyfile.KeyPair = field(default_factory=keyfile.generate)
    _server: ThreadingHTTPServer | None = None

    def start(self) -> Recorder:
        me = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                me.seen.append(Seen(self.command, self.path, dict(self.headers.items()), body))
                if self.path == "/.well-known/did.json":
                    answer = (200, json.dumps(me.document).encode(), "application/json")
                else:
                    answer = me.answers.get(self.path, (404, b"{}", "application/json"))
                status, data, ctype = answer
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _any

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def base(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def did(self) -> str:
        assert self._server is not None
        return f"did:web:127.0.0.1%3A{self._server.server_address[1]}"

    @property
    def document(self) -> dict[str, Any]:
        return build_document(self.did, self.keys, self.base + "/dsp", self.base + "/cs")

    def sign(self, audience: str, **claims: Any) -> str:
        """A self-issued token of this participant (iss = sub = its DID)."""
        now = int(time.time())
        body = {"iss": self.did, "sub": self.did, "aud": audience, "jti": str(uuid.uuid4()),
                "iat": now, "exp": now + 60, **claims}  # fmt: skip
        kid = f"{self.did}#{KEY_FRAGMENT}"
        return jwt.encode(body, self.keys.private, algorithm="EdDSA", headers={"kid": kid})

    def requests_to(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    peer = Recorder().start()
    yield peer
    peer.stop()


@pytest.fixture
def other() -> Iterator[Recorder]:
    peer = Recorder().start()
    yield peer
    peer.stop()


def claims_of(jwt_text: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(jwt_text, options={"verify_signature": False})
    return claims


def catalog_from(node: ConnectorProcess, peer: Recorder) -> None:
    """Make `node` send a DSP catalog request to `peer` (which answers an empty catalog)."""
    catalog = {"@context": CTX, "@id": "urn:uuid:c", "@type": "Catalog", "participantId": peer.did}
    peer.answers["/dsp/catalog/request"] = (200, json.dumps(catalog).encode(), "application/json")
    node.api.post(
        "/api/v1/catalog/request",
        {"counterPartyAddress": peer.base + "/dsp", "counterPartyId": peer.did},
    )


def access_token_for(node: ConnectorProcess, peer: Recorder) -> str:
    """The access token `node` put into its self-issued token when it called `peer`."""
    catalog_from(node, peer)
    header = peer.requests_to("/dsp/catalog/request")[-1].headers["Authorization"]
    inner = claims_of(from_authorization(header))["token"]
    assert isinstance(inner, str)
    return inner


def query(node: ConnectorProcess, authorization: str, scope: list[str] | None = None) -> Reply:
    body = {
        "@context": ["https://w3id.org/dspace-dcp/v1.0/dcp.jsonld"],
        "type": "PresentationQueryMessage",
        "scope": scope if scope is not None else [EDC_MEMBERSHIP],
    }
    return http(
        "POST",
        node.base_url + "/dcp/v1/presentations/query",
        body,
        headers={"Authorization": authorization},
    )


def test_authorization_forms() -> None:
    assert from_authorization("Bearer a.b.c") == "a.b.c"
    assert from_authorization("bearer   a.b.c ") == "a.b.c"
    assert from_authorization("a.b.c") == "a.b.c"


def test_bearer_is_sent_and_both_forms_are_accepted(
    provider: ConnectorProcess, consumer: ConnectorProcess, recorder: Recorder
) -> None:
    catalog_from(consumer, recorder)
    [seen] = recorder.requests_to("/dsp/catalog/request")
    header = seen.headers["Authorization"]
    assert header.startswith("Bearer ") and header.count(".") == 2
    claims = claims_of(header[len("Bearer ") :])
    assert claims["iss"] == claims["sub"] == consumer.did and claims["aud"] == recorder.did

    body = {"@context": CTX, "@type": "CatalogRequestMessage", "filter": []}
    url = provider.dsp + "/catalog/request"
    for form in ("{}", "Bearer {}"):
        reply = http(
            "POST", url, body, headers={"Authorization": form.format(token(consumer, provider))}
        )
        assert reply.status == 200, (form, reply)
    # and between two connectors (the consumer sends Bearer, the provider accepts it)
    fetched = consumer.api.post(
        "/api/v1/catalog/request",
        {"counterPartyAddress": provider.dsp, "counterPartyId": provider.did},
    )
    assert fetched["@type"] == "Catalog"


def _wallet(node: ConnectorProcess, issuer: keyfile.KeyPair) -> None:
    """Give `node` a membership and a role credential (the holder does not verify its own)."""
    issued = [
        sign_credential(issuer, "did:web:issuer.example", node.did, kind, claims, valid_seconds=600)
        for kind, claims in ((MEMBERSHIP, {"organisation": "x"}), (ROLE, {"role": ["r"]}))
    ]
    path = node.dir / str(node.settings["data_dir"]) / "credentials.json"
    path.write_text(json.dumps({"credentials": issued}))


def test_a_dcp_1_0_presentation_query_is_answered(
    tmp_path: Path, recorder: Recorder, other: Recorder
) -> None:
    holder = ConnectorProcess(tmp_path, "holder")
    _wallet(holder, keyfile.generate())
    holder.start()
    try:
        access_token = access_token_for(holder, recorder)
        assert claims_of(access_token)["sub"] == recorder.did

        # DCP 1.0: the verifier's own token, nesting the access token we issued to it
        outer = recorder.sign(holder.did, token=access_token)
        reply = query(holder, "Bearer " + outer)
        assert reply.status == 200, reply
        assert reply.body["type"] == "PresentationResponseMessage"
        assert reply.body["@context"] == ["https://w3id.org/dspace-dcp/v1.0/dcp.jsonld"]
        [vp] = reply.body["presentation"]
        vp_claims = claims_of(vp)
        assert vp_claims["iss"] == holder.did and vp_claims["aud"] == recorder.did
        # EDC's scope string selects the membership credential only
        kinds = [claims_of(c)["vc"]["type"][-1] for c in vp_claims["vp"]["verifiableCredential"]]
        assert kinds == [MEMBERSHIP]

        # our older form: the access token alone
        legacy = query(holder, "Bearer " + access_token, scope=[])
        assert legacy.status == 200, legacy
        assert len(claims_of(legacy.body["presentation"][0])["vp"]["verifiableCredential"]) == 2

        forged_inner = jwt.encode(
            {**claims_of(access_token), "jti": str(uuid.uuid4())},
            keyfile.generate().private,
            algorithm="EdDSA",
        )
        foreign_scope = access.issue(keyfile.generate(), holder.did, recorder.did, 60)
        refusals = {
            "replayed outer token": "Bearer " + outer,
            "inner token issued to another verifier": "Bearer "
            + other.sign(holder.did, token=access_token),
            "forged inner token": "Bearer " + recorder.sign(holder.did, token=forged_inner),
            "inner token of another holder": "Bearer "
            + recorder.sign(holder.did, token=foreign_scope),
            "no inner token": "Bearer " + recorder.sign(holder.did),
            "outer token for another audience": "Bearer "
            + recorder.sign(other.did, token=access_token),
            "outer token signed by another key": "Bearer "
            + jwt.encode(
                claims_of(recorder.sign(holder.did, token=access_token)),
                keyfile.generate().private,
                algorithm="EdDSA",
                headers={"kid": f"{recorder.did}#{KEY_FRAGMENT}"},
            ),
            "garbage": "Bearer not-a-token",
            "empty": "Bearer ",
        }
        bodies = []
        for case, authorization in refusals.items():
            refused = query(holder, authorization)
            assert refused.status == 401, (case, refused)
            text = json.dumps(refused.body)
            assert REFUSED in text, (case, text)
            for leaked in (recorder.did, other.did, "expired", "signature", "audience"):
                assert leaked not in text, (case, leaked, text)
            bodies.append(
                {k: v for k, v in refused.body.items() if k not in ("instance", "traceId")}
            )
        assert all(b == bodies[0] for b in bodies), bodies
    finally:
        holder.stop()


def test_our_verifier_queries_the_dcp_1_0_way(tmp_path: Path, recorder: Recorder) -> None:
    """As verifier, we send our own self-issued token nesting the holder's access token, and
    ask for the scopes that token grants (an EDC holder refuses any beyond them)."""
    verifier = ConnectorProcess(
        tmp_path, "verifier", extra_init=("--trusted-issuer", "did:web:issuer.example")
    )
    verifier.set(require_membership="true", credential_cache_seconds="0")
    verifier.start()
    try:
        holder_access = recorder.sign(recorder.did, sub=verifier.did, scope=EDC_MEMBERSHIP)
        body = {"@context": CTX, "@type": "CatalogRequestMessage", "filter": []}
        authorization = "Bearer " + recorder.sign(verifier.did, token=holder_access)
        reply = http(
            "POST",
            verifier.dsp + "/catalog/request",
            body,
            headers={"Authorization": authorization},
        )
        assert reply.status == 403, reply  # the recorder answers no presentation
        [asked] = recorder.requests_to("/cs/presentations/query")
        header = asked.headers["Authorization"]
        assert header.startswith("Bearer ")
        claims = claims_of(header[len("Bearer ") :])
        assert claims["iss"] == claims["sub"] == verifier.did
        assert claims["aud"] == recorder.did and claims["token"] == holder_access
        assert asked.body["type"] == "PresentationQueryMessage"
        assert asked.body["scope"] == [EDC_MEMBERSHIP]
    finally:
        verifier.stop()


def test_scope_strings() -> None:
    assert scope_type(EDC_MEMBERSHIP) == MEMBERSHIP
    assert scope_type("org.eclipse.dspace.dcp.vc.type:RoleCredential:read") == ROLE
    assert scope_type("org.eclipse.edc.vc.type:RoleCredential:write") is None
    assert scope_type("presentation.query") is None
    ours = access.issue(keyfile.generate(), "did:web:a.example", "did:web:b.example", 60)
    assert query_scopes(ours) == SCOPES
    assert query_scopes("opaque") == SCOPES
    edc = jwt.encode({"scope": f"{EDC_MEMBERSHIP} other"}, "k" * 32, algorithm="HS256")
    assert query_scopes(edc) == [EDC_MEMBERSHIP]


def test_accept_header_picks_the_form() -> None:
    assert status_list.wants_json("application/json")
    assert status_list.wants_json("application/vc+jwt;q=0.1, application/json")
    assert not status_list.wants_json("*/*")
    assert not status_list.wants_json("")
    assert not status_list.wants_json("application/vc+jwt")
    assert not status_list.wants_json("application/json;q=0.5, application/vc+jwt")
    assert not status_list.wants_json("application/json;q=0")


def _get(url: str, accept: str | None) -> tuple[str, bytes]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.headers.get_content_type(), answer.read()


def test_the_status_list_is_served_in_both_forms(tmp_path: Path) -> None:
    authority = ConnectorProcess(tmp_path, "authority", extra_init=("--authority",)).start()
    try:
        url = authority.base_url + "/authority/v1/status/revocation"
        for accept in (None, "*/*", "application/vc+jwt"):
            ctype, raw = _get(url, accept)
            assert ctype == "application/vc+jwt", accept
            signed = claims_of(raw.decode())
            assert signed["iss"] == authority.did and STATUS_LIST in signed["vc"]["type"]
        ctype, raw = _get(url, "application/json")
        assert ctype == "application/json"
        vc = json.loads(raw)
        # what EDC's BitstringStatusListRevocationService reads (Jackson, VC data model 1.1)
        assert vc["issuer"] == authority.did and vc["id"] == url
        assert vc["type"] == ["VerifiableCredential", STATUS_LIST]
        subject = vc["credentialSubject"]
        assert subject["statusPurpose"] == "revocation" and subject["type"] == "BitstringStatusList"
        assert not any(status_list.decode(subject["encodedList"]))
        assert vc["issuanceDate"].endswith("Z") and vc["expirationDate"].endswith("Z")
    finally:
        authority.stop()


def _status_json(signer: Recorder, revoked: set[int], **changes: Any) -> bytes:
    signed = sign_credential(
        signer.keys,
        signer.did,
        signer.base + "/status#list",
        STATUS_LIST,
        {
            "type": "BitstringStatusList",
            "statusPurpose": "revocation",
            "encodedList": status_list.encode(status_list.with_bits(revoked)),
        },
        valid_seconds=600,
        credential_id=signer.base + "/status",
    )
    return json.dumps({**status_list.json_form(signed), **changes}).encode()


def test_our_verifier_reads_the_json_form(recorder: Recorder, other: Recorder) -> None:
    recorder.answers["/status"] = (200, _status_json(recorder, {7}), "application/json")
    other.answers["/status"] = (200, _status_json(recorder, {7}), "application/json")
    expired = _status_json(recorder, {7}, expirationDate="2001-01-01T00:00:00Z")
    recorder.answers["/expired"] = (200, expired, "application/json")
    foreign = _status_json(recorder, {7}, issuer=other.did)
    recorder.answers["/foreign"] = (200, foreign, "application/json")
    jwt_list = sign_credential(
        recorder.keys,
        recorder.did,
        recorder.base + "/jwt#list",
        STATUS_LIST,
        {
            "statusPurpose": "revocation",
            "encodedList": status_list.encode(status_list.with_bits({3})),
        },
        valid_seconds=600,
    )
    recorder.answers["/jwt"] = (200, jwt_list.encode(), "application/vc+jwt")

    async def scenario() -> tuple[bytes, bytes, list[str]]:
        egress = Egress(EgressPolicy.from_settings(None, dev_insecure_http=True))
        resolver = DidResolver(egress, insecure_http=True, ttl_seconds=0)
        verifier = CredentialVerifier(egress, resolver, "did:web:me.example", [recorder.did], 0)
        try:
            from_json = await verifier._status_bits(recorder.base + "/status", recorder.did)
            from_jwt = await verifier._status_bits(recorder.base + "/jwt", recorder.did)
            problems = []
            for url, issuer in (
                (other.base + "/status", recorder.did),  # JSON from another host: unsigned
                (recorder.base + "/foreign", recorder.did),  # names another issuer
                (recorder.base + "/expired", recorder.did),
            ):
                with pytest.raises(CredentialError) as refused:
                    await verifier._status_bits(url, issuer)
                problems.append(refused.value.detail)
            return from_json, from_jwt, problems
        finally:
            await egress.close()

    from_json, from_jwt, problems = asyncio.run(scenario())
    assert status_list.is_set(from_json, 7) and not status_list.is_set(from_json, 6)
    assert status_list.is_set(from_jwt, 3) and not status_list.is_set(from_jwt, 7)
    assert "unsigned JSON" in problems[0]
    assert "not a status list credential of" in problems[1]
    assert "expired" in problems[2]
    accepts = {s.headers.get("Accept") for s in recorder.seen if s.path != "/.well-known/did.json"}
    assert accepts == {"application/vc+jwt"}
