"""The egress guard itself: what it refuses before a byte is sent, and after DNS resolution.

In process, against real listeners on loopback: 127.0.0.1 stands for an allowed peer and
127.0.0.2 for an internal service (tests/security/internal.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from connector.egress import (
    Egress,
    EgressPolicy,
    EgressRefused,
    Pool,
    json_limited,
    read_limited,
)
from tests.security.internal import InternalService

PEERS_ONLY = EgressPolicy.from_settings(["127.0.0.1/32"], dev_insecure_http=True)


@pytest.fixture
async def egress() -> AsyncIterator[Egress]:
    guard = Egress(PEERS_ONLY)
    yield guard
    await guard.close()


@pytest.fixture
async def peer() -> AsyncIterator[str]:
    """A peer on 127.0.0.1 that redirects, answers big bodies and small JSON."""

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(request.query["to"])

    async def big(_: web.Request) -> web.StreamResponse:
        return web.Response(body=b"x" * 200_000)

    async def small(_: web.Request) -> web.StreamResponse:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/big", big)
    app.router.add_get("/small", small)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.org/x", "only https"),
        ("file:///etc/passwd", "only https"),
        ("https://user:pass@example.org/", "credentials"),
        ("https://user@example.org/", "credentials"),
        ("https://127.0.0.2/", "loopback"),
        ("https://[::1]/", "loopback"),
        ("https://[::ffff:127.0.0.2]/", "loopback"),
        ("https://10.1.2.3/", "private"),
        ("https://192.168.0.1/", "private"),
        ("https://172.16.0.1/", "private"),
        ("https://100.64.0.1/", "private or reserved"),
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
        ("https://[fe80::1]/", "link-local"),
        ("https://[fd00:ec2::254]/", "private"),
        ("https://0.0.0.0/", "unicast"),
        ("https://224.0.0.1/", "unicast"),
        ("https:///no-host", "no host"),
        # Unicode digits and dots the HTTP client folds into an address (yarl's IDNA)
        ("https://\uff11\uff10.\uff10.\uff10.\uff15/x", "private"),
        ("https://127\u30020\u30020\u30022/", "loopback"),
        ("https://\U0001d7cf\U0001d7d0\U0001d7d5.0.0.2/", "loopback"),
        ("https://\u2460\u2461\u2466.0.0.2/", "loopback"),
        (
            "https://\uff11\uff16\uff19.\uff12\uff15\uff14.\uff11\uff16\uff19.\uff12\uff15\uff14/latest",
            "link-local",
        ),
        # IPv4 embedded in IPv6: NAT64, 6to4, IPv4-translated, IPv4-compatible; site-local
        ("https://[64:ff9b::a00:5]/", "private"),
        ("https://[64:ff9b:1::a9fe:a9fe]/", "link-local"),
        ("https://[2002:a9fe:a9fe::]/", "link-local"),
        ("https://[::ffff:0:7f00:2]/", "loopback"),
        ("https://[::7f00:2]/", "loopback"),
        ("https://[fec0::1]/", "private"),
        ("https://example.org:99999/", "not a valid URL"),
    ],
)
def test_refused_before_sending(url: str, why: str) -> None:
    with pytest.raises(EgressRefused, match=why):
        PEERS_ONLY.check_url(url)


def test_plain_http_only_in_development() -> None:
    production = EgressPolicy.from_settings(None, dev_insecure_http=False)
    with pytest.raises(EgressRefused, match="plain http"):
        production.check_url("http://example.org/")
    production.check_url("https://example.org/")
    # and production allows no loopback by default, development does
    with pytest.raises(EgressRefused, match="loopback"):
        production.check_url("https://127.0.0.1:8443/")
    EgressPolicy.from_settings(None, dev_insecure_http=True).check_url("http://127.0.0.1/")


def test_operator_allows_networks_and_hosts() -> None:
    policy = EgressPolicy.from_settings(
        ["10.0.0.0/8", "opa.internal:8181", "registry.internal"], dev_insecure_http=False
    )
    policy.check_url("https://10.9.8.7/")
    policy.check_url("https://opa.internal:8181/v1/data")
    policy.check_url("https://registry.internal/participants")
    with pytest.raises(EgressRefused, match="private"):
        policy.check_url("https://192.168.1.1/")


async def test_a_name_resolving_to_an_internal_address_is_refused(
    internal: InternalService,
) -> None:
    """`localhost` is a name, not a literal: the address is decided after DNS resolution."""
    guard = Egress(EgressPolicy(allow_http=True))  # nothing internal allowed
    url = f"http://localhost:{internal.port}/admin"
    try:
        with pytest.raises(EgressRefused, match="localhost refused: loopback"):
            async with guard.request("GET", url):
                pass
    finally:
        await guard.close()
    assert internal.requests == []


async def test_redirects_are_not_followed(
    egress: Egress, peer: str, internal: InternalService
) -> None:
    target = f"{internal.url}/secret"
    async with egress.request("GET", f"{peer}/redirect", params={"to": target}) as resp:
        assert resp.status == 302
    assert internal.requests == []


async def test_answers_are_read_up_to_a_limit(egress: Egress, peer: str) -> None:
    async with egress.request("GET", f"{peer}/big") as resp:
        with pytest.raises(EgressRefused, match="larger than 100000 bytes"):
            await read_limited(resp, 100_000)
    async with egress.request("GET", f"{peer}/small", pool=Pool.DID) as resp:
        assert await json_limited(resp, 1000) == {"ok": True}


async def test_did_resolution_has_its_own_small_pool(peer: str) -> None:
    """Connections held by DID resolution never take the general pool's."""
    guard = Egress(PEERS_ONLY, general_limit=4, did_limit=2)
    try:
        held = [
            await guard._session(Pool.DID).get(f"{peer}/small", timeout=aiohttp.ClientTimeout(5))
            for _ in range(2)
        ]
        async with guard.request("GET", f"{peer}/small") as resp:
            assert resp.status == 200
        for resp in held:
            resp.release()
    finally:
        await guard.close()
