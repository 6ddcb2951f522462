"""Prometheus metrics at /metrics on the management listener, counted from the store.

The figures come from the store at scrape time rather than from in-process counters: they
survive restarts, agree with what the API shows, and count what happened while no scraper
was looking. The queries run in a worker thread on their own read-only connection (SQLite
file or PostgreSQL), so a scrape neither blocks the event loop nor waits for the store's lock.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from connector.config import Settings
from connector.model.enums import DutyState
from connector.model.states import ANY_ROLE, CN, TP

log = logging.getLogger(__name__)

# Tables of features that may not exist yet in a store: absent means nothing counted so far.
METERING_TABLE = "metering"
DELETION_TABLE = "deletion_duties"
DELETION_STATES = tuple(DutyState)  # always reported, so dashboards see 0 rather than no data


@dataclass
class Counts:
    negotiations: Counter[tuple[str, str]] = field(default_factory=Counter)
    transfers: Counter[tuple[str, str]] = field(default_factory=Counter)
    transfer_bytes: Counter[str] = field(default_factory=Counter)
    decisions: Counter[tuple[str, str]] = field(default_factory=Counter)
    metering_records: int = 0
    deletion_duties: Counter[str] = field(default_factory=Counter)


class CountsUnavailable(Exception):
    """The store could not be read for a scrape."""


Query = Callable[[str], list[tuple[Any, ...]]]


def count_rows(query: Query, tables: set[str]) -> Counts:
    """Group-by counts through `query` (plain SQL both stores understand)."""
    counts = Counts()
    for role, state, n in query("select role, state, count(*) from negotiations group by 1, 2"):
        counts.negotiations[(role, state)] = n
    rows = query(
        "select role, state, count(*), coalesce(sum(bytes), 0) from transfers group by 1, 2"
    )
    for role, state, n, moved in rows:
        counts.transfers[(role, state)] = n
        counts.transfer_bytes[role] += int(moved)
    for phase, allow, n in query("select phase, allow, count(*) from decisions group by 1, 2"):
        counts.decisions[(phase, "allow" if allow else "deny")] = n
    if METERING_TABLE in tables:
        counts.metering_records = query(f"select count(*) from {METERING_TABLE}")[0][0]
    if DELETION_TABLE in tables:
        for state, n in query(f"select state, count(*) from {DELETION_TABLE} group by 1"):
            counts.deletion_duties[state] = n
    return counts


def read_counts(db_path: Path) -> Counts:
    """Counts from the SQLite file, on a read-only connection of their own."""
    uri = db_path.resolve().as_uri() + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=5)
        try:
            tables = {
                r[0] for r in conn.execute("select name from sqlite_master where type='table'")
            }
            return count_rows(lambda sql: conn.execute(sql).fetchall(), tables)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise CountsUnavailable(str(exc)) from exc


def read_counts_postgres(url: str) -> Counts:
    """Counts from the shared PostgreSQL database, on a connection of their own. Every
    replica reports the same totals."""
    from connector.store.postgres import connect

    try:
        with connect(url, timeout=5) as conn:
            conn.read_only = True

            def query(sql: str) -> list[tuple[Any, ...]]:
                return [tuple(r.values()) for r in conn.execute(sql).fetchall()]

            return count_rows(query, {METERING_TABLE, DELETION_TABLE})
    except Exception as exc:  # psycopg.Error, or the store's own StoreUnavailable
        raise CountsUnavailable(str(exc)) from exc


class StoreCollector(Collector):
    """Turns one `read_counts` per scrape into metric families."""

    def __init__(self, read: Callable[[], Counts]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        try:
            counts, up = self._read(), 1.0
        except CountsUnavailable as exc:
            log.warning("metrics: cannot read counts from the store: %s", exc)
            counts, up = Counts(), 0.0
        yield GaugeMetricFamily(
            "connector_store_up", "1 if the counts below could be read from the store", up
        )
        yield _labelled(
            GaugeMetricFamily(
                "connector_negotiations",
                "Contract negotiations in the store, by role and state",
                labels=["role", "state"],
            ),
            ({(r, s.value): 0 for r in ANY_ROLE for s in CN} | counts.negotiations).items(),
        )
        yield _labelled(
            GaugeMetricFamily(
                "connector_transfers",
                "Transfer processes in the store, by role and state",
                labels=["role", "state"],
            ),
            ({(r, s.value): 0 for r in ANY_ROLE for s in TP} | counts.transfers).items(),
        )
        yield _labelled(
            CounterMetricFamily(
                "connector_transfer_bytes",
                "Bytes moved by transfers: sent as provider, received as consumer",
                labels=["role"],
            ),
            ({r: 0 for r in ANY_ROLE} | counts.transfer_bytes).items(),
        )
        yield _labelled(
            CounterMetricFamily(
                "connector_policy_decisions",
                "Policy decisions in the decision log, by phase and result",
                labels=["phase", "result"],
            ),
            counts.decisions.items(),
        )
        yield CounterMetricFamily(
            "connector_metering_records",
            "Signed metering records kept in the store",
            value=counts.metering_records,
        )
        yield _labelled(
            GaugeMetricFamily(
                "connector_deletion_duties", "Deletion duties, by state", labels=["state"]
            ),
            ({s: 0 for s in DELETION_STATES} | counts.deletion_duties).items(),
        )


def _labelled(
    family: GaugeMetricFamily | CounterMetricFamily,
    values: Iterable[tuple[str | tuple[str, ...], int]],
) -> Metric:
    """One sample per label tuple (a single label may be a plain string), in a stable order."""
    for labels, value in sorted(values):
        family.add_metric([labels] if isinstance(labels, str) else list(labels), value)
    return family


def add_metrics(app: web.Application, settings: Settings) -> CollectorRegistry:
    """Serve /metrics (Prometheus text format) from `app`: store counts and process figures."""
    registry = CollectorRegistry(auto_describe=False)
    url = settings.database_url.get_secret_value() if settings.database_url else None
    if url is not None:
        registry.register(StoreCollector(lambda: read_counts_postgres(url)))
    else:
        registry.register(StoreCollector(lambda: read_counts(settings.db_path)))
    ProcessCollector(registry=registry)

    async def metrics(request: web.Request) -> web.Response:
        body = await asyncio.to_thread(generate_latest, registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/metrics", metrics)
    return registry
