"""A city data space: an authority onboards members and issues credentials; a provider that
trusts it refuses revoked, expired and foreign-issued credentials, each with the reason, and
decides role-restricted offers on the verified claims. All real connector processes."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import jwt
import pytest

from connector.credentials import status_list
from connector.mgmt_client import ApiError
from tests.harness import ConnectorProcess, cli, negotiate, state_of, wait_for

RESEARCH_ONLY = {
    "permission": [
        {
            "action": "use",
            "constraint": [
                {"leftOperand": "tdsc:membership", "operator": "eq", "rightOperand": True},
                {"leftOperand": "tdsc:role", "operator": "isAnyOf", "rightOperand": ["research"]},
            ],
        }
    ]
}


class Space:
    def __init__(self, root: Path, payload: Path) -> None:
        self.root = root
        self.payload = payload
        self.authority = ConnectorProcess(root, "authority", extra_init=("--authority",)).start()
        self.rogue = ConnectorProcess(root, "rogue", extra_init=("--authority",)).start()
        self.provider = ConnectorProcess(
            root,
            "provider",
            extra_init=("--trusted-issuer", self.authority.did, "--require-membership"),
        )
        # revocations must show at once in these tests (default: 30 s)
        self.provider.set(credential_cache_seconds="0")
        self.provider.start()
        self.provider.publish(payload, "open-data", title="Bus stops")
        self.provider.publish(
            payload, "research-data", title="Travel survey", offers=[RESEARCH_ONLY]
        )
        self.nodes = [self.authority, self.rogue, self.provider]

    def member(
        self, name: str, *, issuer: ConnectorProcess | None = None, onboard: bool = True,
        roles: tuple[str, ...] = (), valid_seconds: float | None = None,
        verifies: bool = False,
    ) -> ConnectorProcess:  # fmt: skip
        """`verifies`: the member itself trusts the authority and requires membership."""
        issuer = issuer or self.authority
        checks = ("--trusted-issuer", self.authority.did, "--require-membership")
        node = ConnectorProcess(self.root, name, extra_init=checks if verifies else ())
        if verifies:
            node.set(credential_cache_seconds="0")
        if onboard:
            body = {"id": node.did, "name": name, "organisation": f"{name} GmbH",
                    "roles": list(roles), "region": "DE", "dspEndpoint": node.dsp,
                    "validSeconds": valid_seconds}  # fmt: skip
            issuer.api.post("/api/v1/authority/participants", body)
        node.set(issuer_url=issuer.base_url)
        node.start()
        self.nodes.append(node)
        if onboard:
            wait_for(f"{name}'s credentials", lambda: node.api.get("/api/v1/credentials"))
        return node

    def catalog_error(self, node: ConnectorProcess) -> str:
        with pytest.raises(ApiError) as info:
            node.api.post("/api/v1/catalog/request", {"counterPartyAddress": self.provider.dsp})
        return str(info.value)

    def close(self) -> None:
        for node in self.nodes:
            node.stop()


@pytest.fixture(scope="module")
def space(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Space]:
    root = tmp_path_factory.mktemp("city")
    payload = root / "payload.csv"
    payload.write_bytes(b"stop,lat,lon\n" * 50_000)
    s = Space(root, payload)
    yield s
    s.close()


def test_a_member_gets_credentials_negotiates_and_transfers(space: Space) -> None:
    alice = space.member("alice", roles=("research",))
    held = {c["type"]: c for c in alice.api.get("/api/v1/credentials")}
    assert set(held) == {"MembershipCredential", "RoleCredential"}
    assert held["MembershipCredential"]["issuer"] == space.authority.did
    assert held["MembershipCredential"]["claims"]["organisation"] == "alice GmbH"
    assert held["RoleCredential"]["claims"]["role"] == ["research"]

    catalog = alice.api.post("/api/v1/catalog/request", {"counterPartyAddress": space.provider.dsp})
    assert {d["@id"] for d in catalog["dataset"]} == {"open-data", "research-data"}
    agreement = negotiate(alice, space.provider, "research-data")
    # the provider decided on the claims it verified, and kept them with the negotiation
    neg = next(
        n for n in space.provider.api.get("/api/v1/negotiations") if n["agreement_id"] == agreement
    )
    claims = neg["counterparty_credentials"]
    assert claims["membership"] is True and claims["roles"] == ["research"]
    assert claims["organisation"] == "alice GmbH" and claims["issuers"] == [space.authority.did]
    tp = alice.api.post("/api/v1/transfers", {"agreementId": agreement})
    done = state_of(alice, "transfers", tp["id"], "COMPLETED")
    assert done["bytes"] == space.payload.stat().st_size


def test_role_claims_decide_what_a_member_sees(space: Space) -> None:
    bus = space.member("busco", roles=("transit",))
    catalog = bus.api.post("/api/v1/catalog/request", {"counterPartyAddress": space.provider.dsp})
    assert [d["@id"] for d in catalog["dataset"]] == ["open-data"]


def test_a_revoked_member_is_refused_with_the_reason(space: Space) -> None:
    bob = space.member("bob")
    bob.api.post("/api/v1/catalog/request", {"counterPartyAddress": space.provider.dsp})
    path = f"/api/v1/authority/participants/{quote(bob.did, safe='')}/revoke"
    revoked = space.authority.api.post(path, {"reason": "left the data space"})
    assert revoked["status"] == "revoked"
    # the status list anyone can read has bob's bit set, signed by the authority
    with urllib.request.urlopen(space.authority.base_url + "/authority/v1/status/revocation") as r:
        token = r.read().decode()
    claims = jwt.decode(token, options={"verify_signature": False})
    bits = status_list.decode(claims["vc"]["credentialSubject"]["encodedList"])
    assert status_list.is_set(bits, revoked["status_index"])
    error = space.catalog_error(bob)
    assert "403" in error and "was revoked by its issuer" in error, error
    # bob's own `credentials list` says so (the status list is asked at once)
    listed = cli("--config", str(bob.config), "credentials", "list")
    assert listed.returncode == 0 and "\trevoked\t" in listed.stdout, listed.stdout
    # and the authority no longer issues to bob, saying why
    with pytest.raises(ApiError) as info:
        bob.api.post("/api/v1/credentials/request", {})
    assert "left the data space" in str(info.value)
    # reinstated: accepted again
    space.authority.api.post(path.replace("/revoke", "/reinstate"), {})
    bob.api.post("/api/v1/catalog/request", {"counterPartyAddress": space.provider.dsp})
    listed = cli("--config", str(bob.config), "credentials", "list", "--json")
    assert {c["status"] for c in json.loads(listed.stdout)} == {"valid"}


def test_an_unknown_issuer_is_refused_with_the_reason(space: Space) -> None:
    dave = space.member("dave", issuer=space.rogue)
    assert dave.api.get("/api/v1/credentials")[0]["issuer"] == space.rogue.did
    error = space.catalog_error(dave)
    assert f"issued by {space.rogue.did}, which is not a trusted issuer" in error, error


def test_an_expired_credential_is_refused_with_the_reason(space: Space) -> None:
    carol = space.member("carol", valid_seconds=2)
    # without an issuer_url it cannot renew: the credential it holds runs out
    carol.stop()
    carol.env.pop("CONNECTOR_ISSUER_URL")
    carol.start()
    held = carol.api.get("/api/v1/credentials")[0]
    wait_for(
        "carol's credential to expire",
        lambda: carol.api.get("/api/v1/credentials")[0]["expired"],
        timeout=5,
    )
    error = space.catalog_error(carol)
    assert f"expired at {held['expiresAt']}" in error, error


def test_a_connector_without_credentials_is_refused(space: Space) -> None:
    erin = space.member("erin", onboard=False)
    error = space.catalog_error(erin)
    assert "a verified membership credential of a trusted issuer is required" in error, error
    assert "holds no credentials" in error, error
    # asking the authority is refused: not onboarded
    with pytest.raises(ApiError) as info:
        erin.api.post("/api/v1/credentials/request", {})
    assert "not a participant of this data space" in str(info.value)


def test_a_revocation_ends_access_for_new_negotiations_and_transfers(space: Space) -> None:
    frank = space.member("frank", roles=("research",))
    agreement = negotiate(frank, space.provider, "open-data")
    path = f"/api/v1/authority/participants/{quote(frank.did, safe='')}/revoke"
    space.authority.api.post(path, {"reason": "contract ended"})
    tp = frank.api.post("/api/v1/transfers", {"agreementId": agreement})
    ended = state_of(frank, "transfers", tp["id"], "TERMINATED")
    assert any("was revoked by its issuer" in r for r in ended["reason"]), ended["reason"]


def test_authority_and_credential_service_refuse_bad_input(space: Space) -> None:
    api = space.authority.api
    for body, needle in [
        ({"id": "https://not-a-did", "name": "x", "organisation": "y"}, "did:web"),
        ({"id": "did:web:x"}, "name"),
        ({"id": "did:web:nowhere.invalid", "name": "x", "organisation": "y"}, "dspEndpoint"),
    ]:
        with pytest.raises(ApiError) as info:
            api.post("/api/v1/authority/participants", body)
        assert info.value.status == 400 and needle in str(info.value), str(info.value)
    alice_did = space.nodes[3].did
    with pytest.raises(ApiError) as info:
        api.post(
            "/api/v1/authority/participants",
            {"id": alice_did, "name": "a", "organisation": "b", "dspEndpoint": "http://x"},
        )
    assert info.value.status == 400 and "already a participant" in str(info.value)
    with pytest.raises(ApiError) as info:
        api.post(f"/api/v1/authority/participants/{quote('did:web:unknown', safe='')}/revoke", {})
    assert info.value.status == 404
    # the credential service answers only with a token its holder issued
    url = space.nodes[3].base_url + "/dcp/v1/presentations/query"
    for headers in ({}, {"Authorization": "Bearer not-a-jwt"}):
        request = urllib.request.Request(url, data=b"{}", headers=headers, method="POST")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(request)
        assert err.value.code == 401
        assert "token" in json.loads(err.value.read())["detail"]


def test_cli_onboards_lists_and_revokes(space: Space, tmp_path: Path) -> None:
    env = {"CONNECTOR_CONFIG": str(space.authority.config)}
    done = cli("authority", "onboard", "did:web:example.org:transit", "--name", "Transit",
               "--organisation", "City Transit", "--role", "transit", "--region", "DE-BE",
               "--dsp-endpoint", "https://example.org/dsp", env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    listed = cli("authority", "participants", env=env)
    assert "did:web:example.org:transit\tactive\tCity Transit\ttransit\tDE-BE" in listed.stdout
    done = cli("authority", "revoke", "did:web:example.org:transit", "--reason", "test", env=env)
    assert done.returncode == 0 and '"status": "revoked"' in done.stdout
    bad = cli("authority", "revoke", "did:web:nobody", env=env)
    assert bad.returncode != 0 and "not a participant" in bad.stderr


def test_credentials_are_renewed_before_they_expire(space: Space) -> None:
    hana = space.member("hana", valid_seconds=3)
    first = hana.api.get("/api/v1/credentials")[0]["expiresAt"]
    # at 80% of the validity the holder asks the authority again
    renewed = wait_for(
        "a renewed credential",
        lambda: [c for c in hana.api.get("/api/v1/credentials") if c["expiresAt"] > first],
        timeout=10,
    )
    assert not renewed[0]["expired"]
    hana.api.post("/api/v1/catalog/request", {"counterPartyAddress": space.provider.dsp})


def test_requesting_credentials_without_an_authority_is_a_clear_error(space: Space) -> None:
    ivan = ConnectorProcess(space.root, "ivan").start()
    space.nodes.append(ivan)
    with pytest.raises(ApiError) as info:
        ivan.api.post("/api/v1/credentials/request", {})
    assert info.value.status == 400 and "no issuer_url is configured" in str(info.value)


def test_the_registry_is_crawled_by_members_and_closed_to_revoked_ones(space: Space) -> None:
    """A member's federated catalog reads the authority's registry with its own token."""
    jan = ConnectorProcess(space.root, "jan")
    p = space.provider
    space.authority.api.post(
        "/api/v1/authority/participants",
        {"id": p.did, "name": "provider", "organisation": "Provider AG", "dspEndpoint": p.dsp},
    )
    space.authority.api.post(
        "/api/v1/authority/participants",
        {"id": jan.did, "name": "jan", "organisation": "Jan KG", "dspEndpoint": jan.dsp},
    )
    jan.set(
        issuer_url=space.authority.base_url,
        federated_catalog="true",
        federated_crawl_seconds="0",
        registry_url=space.authority.base_url + "/authority/v1/participants",
    )
    jan.start()
    space.nodes.append(jan)
    wait_for("jan's credentials", lambda: jan.api.get("/api/v1/credentials"))
    summary = jan.api.post("/api/v1/federated-catalog/crawl", {})
    assert summary["sourceErrors"] == []
    hits = jan.api.get("/api/v1/federated-catalog/datasets?q=stops")["hits"]
    assert [(h["datasetId"], h["member"]["id"]) for h in hits] == [
        ("open-data", space.provider.did)
    ]
    path = f"/api/v1/authority/participants/{quote(jan.did, safe='')}/revoke"
    space.authority.api.post(path, {"reason": "test"})
    summary = jan.api.post("/api/v1/federated-catalog/crawl", {})
    # the registry's refusal, without its text (a remote body is never shown: docs/security.md)
    assert any("answered 403" in e for e in summary["sourceErrors"]), summary["sourceErrors"]


def test_a_consumer_refuses_an_agreement_from_a_provider_that_is_not_a_member(
    space: Space,
) -> None:
    """Membership is checked both ways: a consumer that requires it accepts no agreement
    from a provider whose credentials fail, and both sides say why."""
    kate = space.member("kate", verifies=True)
    lena = space.member("lena")  # a member
    olaf = space.member("olaf", issuer=space.rogue)  # credentials from an untrusted issuer
    for provider in (lena, olaf):
        provider.publish(space.payload, "stops", title="Stops")

    assert negotiate(kate, lena, "stops")  # FINALIZED: lena's membership verified

    catalog = kate.api.post("/api/v1/catalog/request", {"counterPartyAddress": olaf.dsp})
    offer = catalog["dataset"][0]["hasPolicy"][0]
    neg = kate.api.post(
        "/api/v1/negotiations",
        {"counterPartyAddress": olaf.dsp, "datasetId": "stops", "offer": offer},
    )
    mine = state_of(kate, "negotiations", neg["id"], "TERMINATED")
    assert mine["reason"][0] == f"the provider {olaf.did} is not a verified member"
    assert any("which is not a trusted issuer" in r for r in mine["reason"]), mine["reason"]
    assert mine["agreement_id"] is None
    theirs = state_of(olaf, "negotiations", mine["provider_pid"], "TERMINATED")
    why = " ".join(theirs["reason"])
    assert "403" in why and "which is not a trusted issuer" in why, why
