"""did:web resolution of a token's `iss`: what an unauthenticated caller can make a connector do.

Findings 4 (request forgery through crafted DIDs, a 401 that told the target's status), 5 (DID
documents read whole and cached without bound), 15 (hanging DID hosts starving the pool a real
peer needs) and the DID part of 22 (non-JSON DID documents answered with a 500)."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from aiohttp import web

from connector.egress import DID_DOCUMENT_MAX, Egress, EgressPolicy
from connector.identity import keys as keyfile
from connector.identity.did import DidResolver
from connector.ports import free_port
from tests.harness import ConnectorProcess, wait_for
from tests.security.conftest import Factory
from tests.security.internal import SECRET, InternalService
from tests.security.peer_host import Answer, PeerHost, catalog_request, self_issued, text_of
from tests.test_bad_input import Reply, assert_dsp_error


def as_caller(provider: ConnectorProcess, did: str) -> Reply:
    """A catalog request whose token names `did` (signed with a key of no one)."""
    return catalog_request(provider, self_issued(did, keyfile.generate(), provider.did))


def assert_unresolved(reply: Reply, did: str) -> None:
    """401, and the reason is the one sentence that says nothing about the target."""
    assert_dsp_error(reply, 401, "CatalogError")
    assert reply.body["reason"] == [f"the DID {did} could not be resolved"], reply.body
    assert SECRET not in text_of(reply)


def test_crafted_dids_reach_nothing_and_say_nothing(
    guarded: Factory, peer: PeerHost, internal: InternalService
) -> None:
    """Path, query, fragment, userinfo and dot segments smuggled into a did:web are refused
    before any request: the attacker's own listener (reachable under the egress policy) hears
    nothing, and the internal service (not reachable) neither."""
    provider = guarded("provider")
    a = peer.authority
    crafted = [
        f"did:web:{a}:admin%3Fdelete%3D1%23",  # query and fragment
        f"did:web:{a}:x%2F..%2Fadmin",  # a slash inside a segment
        f"did:web:{a}:..:..:admin",  # dot segments
        f"did:web:{a}:a%252Fb",  # double encoding
        f"did:web:{a}:a%20b",  # whitespace
        f"did:web:user%3Apass%40{a}",  # Basic credentials
        f"did:web:{a}%2Fadmin",  # a path glued to the port
        f"did:web:127.0.0.2%3A{internal.port}",  # an internal address
        f"did:web:127.0.0.2%3A{internal.port}:x%3Fy",
        "did:web:169.254.169.254:latest:meta-data",  # the metadata address, as a literal
    ]
    for did in crafted:
        assert_unresolved(as_caller(provider, did), did)
    assert peer.total() == 0, peer.hits
    assert internal.requests == []


def test_the_401_does_not_tell_the_target_status(
    guarded: Factory, peer: PeerHost, internal: InternalService
) -> None:
    """Whatever a DID's host does (an error, a redirect into the operator's network, a closed
    port, a document for someone else), the caller learns only "could not be resolved"."""
    provider = guarded("provider")
    peer.serve("/e500/did.json", Answer(500, json.dumps({"detail": SECRET}).encode()))
    peer.serve("/e404/did.json", Answer(404, SECRET.encode()))
    peer.serve("/moved/did.json", Answer(302, headers={"Location": internal.url + "/did.json"}))
    other = peer.identity("other")
    peer.serve("/stolen/did.json", peer.answers["/other/did.json"])
    closed = f"did:web:127.0.0.1%3A{free_port()}"
    for did in (peer.did("e500"), peer.did("e404"), peer.did("moved"), peer.did("stolen"), closed):
        assert_unresolved(as_caller(provider, did), did)
    assert internal.requests == []  # the redirect is not followed
    assert peer.fetches("other") == 0 and other.did != peer.did("stolen")


def test_non_json_and_misshapen_did_documents_are_a_clean_401(
    guarded: Factory, peer: PeerHost
) -> None:
    """Finding 22 (DID part): documents that are not JSON, not UTF-8, too deeply nested or of
    the wrong shape are a 401 for the caller, not a 500 with a traceback in the log."""
    provider = guarded("provider")
    bodies: dict[str, bytes] = {
        "text": b"this is not json",
        "binary": b"\xff\xfe\x00{not utf-8}",
        "deep": b"[" * 50_000 + b"]" * 50_000,
        "array": b"[1, 2, 3]",
    }
    for name, body in bodies.items():
        peer.serve(f"/{name}/did.json", Answer(body=body))
        assert_unresolved(as_caller(provider, peer.did(name)), peer.did(name))
    for name, extra in {
        "methods": {"verificationMethod": "x", "capabilityInvocation": {"a": 1}},
        "entries": {"verificationMethod": [1, "x", None], "assertionMethod": [7]},
        "jwk": {
            "verificationMethod": [{"id": "#key-1", "publicKeyJwk": {"kty": "OKP", "x": 5}}],
            "assertionMethod": ["#key-1"],
        },
    }.items():
        did = peer.did(name)
        if name == "jwk":
            extra["verificationMethod"][0]["id"] = f"{did}#key-1"  # type: ignore[index]
            extra["assertionMethod"] = [f"{did}#key-1"]
        peer.serve(f"/{name}/did.json", Answer(body=json.dumps({"id": did, **extra}).encode()))
        reply = as_caller(provider, did)
        assert_dsp_error(reply, 401, "CatalogError")
    log = provider.log_path.read_text()
    assert "Traceback" not in log and "Internal Server Error" not in log


def test_a_large_did_document_is_refused(guarded: Factory, peer: PeerHost) -> None:
    """Finding 5: a 1 MB document is not read (the limit is DID_DOCUMENT_MAX)."""
    provider = guarded("provider")
    big = peer.identity("big")
    document = json.loads(peer.answers["/big/did.json"].body)
    document["padding"] = "x" * (1024 * 1024)
    peer.serve("/big/did.json", Answer(body=json.dumps(document).encode()))
    assert len(peer.answers["/big/did.json"].body) > DID_DOCUMENT_MAX
    assert_unresolved(catalog_request(provider, big.token(provider.did)), big.did)


def test_the_did_cache_is_bounded_and_remembers_failures(guarded: Factory, peer: PeerHost) -> None:
    """Finding 5: many distinct DIDs do not grow the cache past its bound (the oldest are
    fetched again), and a DID that failed is not fetched again for a while."""
    provider = guarded("provider", did_cache_entries="5")
    callers = [peer.identity(f"u{n}") for n in range(8)]
    for caller in callers:
        assert catalog_request(provider, caller.token(provider.did)).status == 200
    assert [peer.fetches(f"u{n}") for n in range(8)] == [1] * 8
    # the newest are still cached; the first were evicted and are fetched again
    assert catalog_request(provider, callers[7].token(provider.did)).status == 200
    assert peer.fetches("u7") == 1
    assert catalog_request(provider, callers[0].token(provider.did)).status == 200
    assert peer.fetches("u0") == 2

    bad = peer.did("gone")
    for _ in range(4):
        assert_unresolved(as_caller(provider, bad), bad)
    assert peer.fetches("gone") == 1


def test_hanging_did_hosts_do_not_starve_a_real_peer(guarded: Factory, peer: PeerHost) -> None:
    """Finding 15: many unauthenticated requests naming distinct DIDs on a host that never
    answers hold at most a few resolutions; a real consumer's catalog request goes through."""
    provider = guarded("provider")
    consumer = guarded("consumer")
    for n in range(40):
        peer.serve(PeerHost.document_path(f"h{n}"), Answer(hang=True))
    dids = [peer.did(f"h{n}") for n in range(40)]
    with ThreadPoolExecutor(max_workers=40) as pool:
        flood = [pool.submit(as_caller, provider, did) for did in dids]
        wait_for("the attacker's host to hold requests", lambda: peer.total() >= 4)
        catalog = consumer.api.post(
            "/api/v1/catalog/request", {"counterPartyAddress": provider.dsp}
        )
        assert catalog["@type"] == "Catalog"
        assert peer.total() <= 4  # resolutions per DID host are capped
        peer.stop()
        replies = [f.result(timeout=60) for f in flood]
    for did, reply in zip(dids, replies, strict=True):
        assert_unresolved(reply, did)


# the resolver in process ----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _serve(hits: dict[str, int]) -> tuple[web.AppRunner, int]:
    async def document(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        hits[name] = hits.get(name, 0) + 1
        if name.startswith("bad"):
            return web.Response(status=500, text=SECRET)
        port = request.url.port
        return web.json_response({"id": f"did:web:127.0.0.1%3A{port}:{name}"})

    app = web.Application()
    app.router.add_get("/{name}/did.json", document)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


def test_resolver_cache_bound_and_lifetimes_in_process() -> None:
    from connector.identity.did import UnresolvableDid

    async def scenario() -> dict[str, Any]:
        hits: dict[str, int] = {}
        runner, port = await _serve(hits)
        egress = Egress(EgressPolicy.from_settings(None, dev_insecure_http=True))
        clock = Clock()
        resolver = DidResolver(
            egress, insecure_http=True, ttl_seconds=300, max_entries=3,
            negative_seconds=30, clock=clock,
        )  # fmt: skip

        def did(name: str) -> str:
            return f"did:web:127.0.0.1%3A{port}:{name}"

        try:
            for n in range(10):
                await resolver.resolve(did(f"d{n}"))
            bounded = resolver.cached
            # concurrent resolutions of one DID share one fetch
            await asyncio.gather(*(resolver.resolve(did("shared")) for _ in range(5)))
            for _ in range(3):
                with pytest.raises(UnresolvableDid):
                    await resolver.resolve(did("bad"))
            failed_once = hits["bad"]
            clock.now += 31  # the failure is forgotten, the documents are not yet
            with pytest.raises(UnresolvableDid):
                await resolver.resolve(did("bad"))
            await resolver.resolve(did("shared"))
            shared_before_expiry = hits["shared"]
            clock.now += 300
            await resolver.resolve(did("shared"))
            return {
                "bounded": bounded,
                "shared": shared_before_expiry,
                "bad": (failed_once, hits["bad"]),
                "shared_after": hits["shared"],
                "size": resolver.cached,
            }
        finally:
            await egress.close()
            await runner.cleanup()

    seen = asyncio.run(scenario())
    assert seen["bounded"] == 3
    assert seen["shared"] == 1
    assert seen["bad"] == (1, 2)
    assert seen["shared_after"] == 2
    assert seen["size"] <= 3


def test_resolver_cache_keeps_to_its_byte_budget() -> None:
    """Entries are bounded by count and by the bytes of the documents they hold."""

    async def scenario() -> tuple[int, int]:
        hits: dict[str, int] = {}
        runner, port = await _serve(hits)
        egress = Egress(EgressPolicy.from_settings(None, dev_insecure_http=True))
        resolver = DidResolver(
            egress, insecure_http=True, ttl_seconds=300, max_entries=100, max_bytes=200
        )
        try:
            for n in range(20):
                await resolver.resolve(f"did:web:127.0.0.1%3A{port}:d{n}")
            return resolver.cached, len(hits)
        finally:
            await egress.close()
            await runner.cleanup()

    cached, fetched = asyncio.run(scenario())
    assert fetched == 20
    assert 1 <= cached <= 200 // len('{"id": "did:web:127.0.0.1%3A12345:d1"}')


@pytest.mark.parametrize(
    "did",
    [
        "did:web:example.com:a%2Fb",
        "did:web:example.com:a%3Fb",
        "did:web:example.com:a%23b",
        "did:web:example.com:a%40b",
        "did:web:example.com:a%252F",
        "did:web:example.com:.",
        "did:web:example.com:%2E%2E",
        "did:web:example.com::a",
        "did:web:example.com:a b",
        "did:web:user%3Apass%40example.com",
        "did:web:example.com%3A0",
        "did:web:example.com%3A70000",
        "did:web:example.com%2Fx",
        "did:web:-bad.example",
        "did:web:[::1]",
        "did:web:300.1.1.1",
        "did:web:example.com#key-1",
        "did:web:" + "a" * 2000 + ".com",
    ],
)
def test_did_web_syntax_is_strict(did: str) -> None:
    from connector.identity.did import UnresolvableDid, parse_did_web

    with pytest.raises(UnresolvableDid):
        parse_did_web(did)


def test_did_web_syntax_accepts_the_method_examples() -> None:
    from connector.identity.did import parse_did_web

    assert parse_did_web("did:web:w3c-ccg.github.io").path == ()
    found = parse_did_web("did:web:w3c-ccg.github.io:user:alice")
    assert (found.host, found.port, found.path) == ("w3c-ccg.github.io", None, ("user", "alice"))
    found = parse_did_web("did:web:example.com%3A3000:user:alice")
    assert found.document_url(insecure_http=False) == (
        "https://example.com:3000/user/alice/did.json"
    )


def test_a_time_out_is_not_remembered_against_an_honest_peer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With every DID connection held by a host that never answers, an honest peer's
    resolution times out waiting: that failure may be ours, so it is not negative-cached."""
    from connector.identity import did as did_module
    from connector.identity.did import UnresolvableDid

    monkeypatch.setattr(did_module, "RESOLVE_TIMEOUT", 1.0)

    async def scenario() -> tuple[bool, bool]:
        hits: dict[str, int] = {}
        runner, port = await _serve(hits)
        release, entered = asyncio.Event(), asyncio.Event()

        async def hang(_: web.Request) -> web.Response:
            entered.set()
            await release.wait()
            return web.Response(status=404)

        app = web.Application()
        app.router.add_get("/{name}/did.json", hang)
        hanging = web.AppRunner(app)
        await hanging.setup()
        hang_port = free_port()
        await web.TCPSite(hanging, "127.0.0.1", hang_port).start()
        egress = Egress(EgressPolicy.from_settings(None, dev_insecure_http=True), did_limit=1)
        resolver = DidResolver(egress, insecure_http=True, ttl_seconds=300, negative_seconds=30)
        honest = f"did:web:127.0.0.1%3A{port}:honest"
        try:
            held = asyncio.create_task(
                resolver.resolve(f"did:web:127.0.0.1%3A{hang_port}:attacker")
            )
            await asyncio.wait_for(entered.wait(), 5)  # the one DID connection is held
            starved = False
            try:
                await resolver.resolve(honest)
            except UnresolvableDid:
                starved = True
            release.set()
            await asyncio.gather(held, return_exceptions=True)
            document = await resolver.resolve(honest)  # not refused from a negative cache
            return starved, document["id"] == honest
        finally:
            release.set()
            await egress.close()
            await hanging.cleanup()
            await runner.cleanup()

    starved, resolved = asyncio.run(scenario())
    assert starved, "the honest resolution should have waited past the time-out"
    assert resolved
