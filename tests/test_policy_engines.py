"""The connector's two engines (embedded Wasm, a real OPA server) decide the same table alike."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from connector.policy.engines import EmbeddedEngine, OpaServerEngine, PolicyBundle
from tests.harness import free_port, wait_http
from tests.test_policy_library import POLICIES, _cases, _check_expectations, _opa_bin


@pytest.fixture(scope="module")
def opa_server() -> Iterator[str]:
    """A real OPA server on loopback, as operators run it beside the connector."""
    port = free_port()
    proc = subprocess.Popen(
        [
            str(_opa_bin()),
            *("run", "--server", "--disable-telemetry"),
            *("--addr", f"127.0.0.1:{port}", "--log-level", "error"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/health")
    yield url
    proc.terminate()
    proc.wait(10)


def test_the_table_decides_alike_on_both_engines(opa_server: str) -> None:
    cases = [p.values for p in _cases()]

    async def run() -> list[tuple[Any, Any]]:
        bundle = PolicyBundle.load(POLICIES)
        embedded, server = EmbeddedEngine(str(_opa_bin())), OpaServerEngine(opa_server)
        await embedded.load(bundle)
        await server.load(bundle)
        try:
            return [(await embedded.evaluate(i), await server.evaluate(i)) for i, _ in cases]
        finally:
            await embedded.close()
            await server.close()

    results = asyncio.run(run())
    assert len(results) == len(cases) >= 20
    for (mine, theirs), (_, expect) in zip(results, cases, strict=True):
        assert mine == theirs
        _check_expectations(mine, expect)


def test_a_broken_bundle_is_refused_by_the_opa_server(opa_server: str, tmp_path: Any) -> None:
    (tmp_path / "bad.rego").write_text("package connector.decision\n\ndecision := {{{\n")
    from connector.policy.engines import PolicyError

    async def load() -> None:
        engine = OpaServerEngine(opa_server)
        try:
            await engine.load(PolicyBundle.load(tmp_path))
        finally:
            await engine.close()

    with pytest.raises(PolicyError, match="refused"):
        asyncio.run(load())


def test_a_restarted_sidecar_gets_the_policies_again(opa_server: str) -> None:
    """An OPA sidecar that restarted has no policies: the engine uploads them and decides."""
    import json
    import urllib.error
    import urllib.request

    cases = [p.values for p in _cases()]

    async def run() -> tuple[Any, Any]:
        engine = OpaServerEngine(opa_server)
        await engine.load(PolicyBundle.load(POLICIES))
        try:
            first = await engine.evaluate(cases[0][0])
            with urllib.request.urlopen(opa_server + "/v1/policies") as resp:
                ids = [p["id"] for p in json.loads(resp.read())["result"]]
            assert ids
            while ids:  # what a restart leaves: an empty server (dependents go first)
                for policy_id in list(ids):
                    url = f"{opa_server}/v1/policies/{policy_id}"
                    try:
                        urllib.request.urlopen(urllib.request.Request(url, method="DELETE")).close()
                        ids.remove(policy_id)
                    except urllib.error.HTTPError:
                        pass
            again = await engine.evaluate(cases[0][0])
            return first, again
        finally:
            await engine.close()

    first, again = asyncio.run(run())
    assert first == again
    _check_expectations(again, cases[0][1])


def test_readiness_asks_the_sidecar_and_gives_back_lost_policies(opa_server: str) -> None:
    """`ready()` (what /readyz asks) is false before a load, and a server that lost the
    policies gets them again before it answers true."""
    import json
    import urllib.error
    import urllib.request

    def ids() -> set[str]:
        with urllib.request.urlopen(opa_server + "/v1/policies") as resp:
            return {p["id"] for p in json.loads(resp.read())["result"]}

    async def run() -> tuple[bool, bool, set[str], set[str]]:
        engine = OpaServerEngine(opa_server)
        try:
            before = await engine.ready()
            await engine.load(PolicyBundle.load(POLICIES))
            loaded = ids()
            left = set(loaded)
            while left:  # dependents go first
                for policy_id in sorted(left):
                    req = urllib.request.Request(
                        f"{opa_server}/v1/policies/{policy_id}", method="DELETE"
                    )
                    try:
                        urllib.request.urlopen(req).close()
                        left.discard(policy_id)
                    except urllib.error.HTTPError:
                        pass
            assert ids() == set()
            after = await engine.ready()
            return before, after, loaded, ids()
        finally:
            await engine.close()

    before, after, loaded, again = asyncio.run(run())
    assert before is False and after is True
    assert loaded and again == loaded


def test_an_unreachable_sidecar_is_not_ready() -> None:
    async def run() -> bool:
        engine = OpaServerEngine(f"http://127.0.0.1:{free_port()}")
        engine._bundle = PolicyBundle.load(POLICIES)  # as after a load, before the server died
        try:
            return await engine.ready()
        finally:
            await engine.close()

    assert asyncio.run(run()) is False
