"""What the bench scripts share: the connectors they start (SQLite or PostgreSQL, one provider
or replicas behind one URL), the raw aiohttp baseline they compare against, peak memory.

The connectors are black boxes here: real `connector serve` processes, reached only through
their management API and DSP, so the scripts measure whatever the store and process core of
the day do.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness import ConnectorProcess
from tests.postgres_server import PostgresServer

ROUND_TRIPS = 4  # a negotiation: request, agreement, verification, finalized
STORES = ("sqlite", "postgres")


def ts(value: str) -> float:
    """A record's ISO timestamp (`...Z`) as Unix seconds."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def peak_rss_mb(node: ConnectorProcess) -> float:
    """The process's resident high-water mark (VmHWM), in MB."""
    assert node.proc is not None
    for line in Path(f"/proc/{node.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- the connectors -----------------------------------------------------------------------


@dataclass
class Deployment:
    """A consumer and the provider (one process, or replicas sharing one database and one
    public URL through a load balancer)."""

    consumer: ConnectorProcess
    providers: list[ConnectorProcess]
    store: str

    @property
    def provider(self) -> ConnectorProcess:
        return self.providers[0]

    @property
    def nodes(self) -> list[ConnectorProcess]:
        return [self.consumer, *self.providers]

    def describe(self) -> str:
        store = "SQLite (synchronous=FULL)" if self.store == "sqlite" else "PostgreSQL (fsync on)"
        n = len(self.providers)
        providers = "1 provider" if n == 1 else f"{n} provider replicas behind one URL"
        return f"consumer + {providers}, {store}, loopback"


def durable(server: PostgresServer) -> None:
    """The test cluster runs with fsync=off (speed); a benchmark compares commits that reach
    the disk, as SQLite's synchronous=FULL does, so turn it on again (a reload suffices)."""
    import psycopg

    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute("alter system set fsync = on")
        conn.execute("select pg_reload_conf()")


@contextmanager
def deployment(
    root: Path, store: str = "sqlite", provider_replicas: int = 1, **settings: str
) -> Iterator[Deployment]:
    """Start the consumer and the provider(s); stop them (and PostgreSQL) on the way out.
    `settings` are CONNECTOR_* overrides for every process."""
    if store not in STORES:
        raise ValueError(f"store must be one of {STORES}")
    if provider_replicas > 1 and store != "postgres":
        raise ValueError("provider replicas share one PostgreSQL database: use --store postgres")
    with ExitStack() as stack:
        server: PostgresServer | None = None
        if store == "postgres":
            server = PostgresServer().start()
            stack.callback(server.stop)
            durable(server)
        extra: tuple[str, ...] = ()
        balancer = None
        if provider_replicas > 1:
            # the test double tests/test_replicas.py runs replicas behind (a TCP proxy)
            from tests.test_replicas import LoadBalancer

            balancer = LoadBalancer()
            stack.callback(balancer.close)
            extra = ("--public-url", balancer.url)
        provider_db = server.new_database() if server else None
        providers: list[ConnectorProcess] = []
        for i in range(provider_replicas):
            name = "provider" if provider_replicas == 1 else f"provider-{i}"
            node = ConnectorProcess(root, name, extra_init=extra)
            node.set(**settings)
            if provider_db:
                node.set(database_url=provider_db)
            if providers:  # one identity: the first replica's key
                node.set(key_file=str(providers[0].dir / "keys" / "private.pem"))
            providers.append(node)
        if balancer is not None:
            balancer.targets = [node.public_port for node in providers]
        consumer = ConnectorProcess(root, "consumer")
        consumer.set(**settings)
        if server:
            consumer.set(database_url=server.new_database())
        for node in (*providers, consumer):
            node.start()
            stack.callback(node.stop)
        yield Deployment(consumer, providers, store)


def first_offer(consumer: ConnectorProcess, provider: ConnectorProcess, dataset_id: str) -> Any:
    catalog = consumer.api.post("/api/v1/catalog/request", {"counterPartyAddress": provider.dsp})
    return next(d for d in catalog["dataset"] if d["@id"] == dataset_id)["hasPolicy"][0]


# -- the raw baseline ---------------------------------------------------------------------


def _serve_echo(conn: Connection) -> None:
    async def echo(request: web.Request) -> web.Response:
        return web.json_response(await request.json())

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/m", echo)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        conn.send(runner.addresses[0][1])
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # until told to stop
        await runner.cleanup()

    asyncio.run(main())


@contextmanager
def echo_server() -> Iterator[int]:
    """A bare aiohttp server echoing JSON, in its own process (as each connector is); its
    port."""
    ours, theirs = multiprocessing.Pipe()
    proc = multiprocessing.get_context("spawn").Process(target=_serve_echo, args=(theirs,))
    proc.start()
    try:
        if not ours.poll(30):
            raise RuntimeError("the raw aiohttp server did not start")
        yield int(ours.recv())
    finally:
        ours.send("stop")
        proc.join(10)
        if proc.is_alive():
            proc.kill()


async def _exchange(session: aiohttp.ClientSession, url: str) -> float:
    t0 = time.perf_counter()
    for _ in range(ROUND_TRIPS):
        async with session.post(url, json={"x": 1}) as r:
            await r.read()
    return time.perf_counter() - t0


async def raw_exchanges(n: int, *, concurrent: bool) -> tuple[list[float], float]:
    """`n` exchanges of ROUND_TRIPS JSON round trips against a bare aiohttp server, one after
    the other or all at once: each exchange's seconds and the seconds of all of them."""
    with echo_server() as port:
        url = f"http://127.0.0.1:{port}/m"
        connector = aiohttp.TCPConnector(limit=0)  # no client-side cap on concurrency
        async with aiohttp.ClientSession(connector=connector) as session:
            await _exchange(session, url)  # warm: a connection open, handlers imported
            t0 = time.perf_counter()
            if concurrent:
                each = list(await asyncio.gather(*(_exchange(session, url) for _ in range(n))))
            else:
                each = [await _exchange(session, url) for _ in range(n)]
            return each, time.perf_counter() - t0
