"""Prometheus metrics at /metrics on the management listener, counted from the store.

The figures come from the store at scrape time rather than from in-process counters: they
survive restarts, agree with what the API shows, and count what happened while no scraper
was looking. The counts are read on one of the store's reader connections (SQLite file or
PostgreSQL), so a scrape neither blocks the event loop nor waits for the store's lock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from connector.model.enums import DutyState
from connector.model.states import ANY_ROLE, CN, TP
from connector.store.gateway import Database
from connector.store.stats import RecordCounts

log = logging.getLogger(__name__)

DELETION_STATES = tuple(DutyState)  # always reported, so dashboards see 0 rather than no data


class StoreCollector(Collector):
    """The counts of one scrape as metric families (`up` False: they could not be read)."""

    def __init__(self, counts: RecordCounts, up: bool, commits: int = 0, units: int = 0) -> None:
        self._counts = counts
        self._up = up
        self._commits = commits
        self._units = units

    def collect(self) -> Iterator[Metric]:
        counts = self._counts
        yield GaugeMetricFamily(
            "connector_store_up",
            "1 if the counts below could be read from the store",
            1.0 if self._up else 0.0,
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
        # group commit: units / commits is how many writes shared one fsync on average
        yield CounterMetricFamily(
            "connector_store_commits",
            "Transactions the store's writer committed since start (each one fsync)",
            value=self._commits,
        )
        yield CounterMetricFamily(
            "connector_store_write_units",
            "Write units committed since start, several per commit under load",
            value=self._units,
        )


def _labelled(
    family: GaugeMetricFamily | CounterMetricFamily,
    values: Iterable[tuple[str | tuple[str, ...], int]],
) -> Metric:
    """One sample per label tuple (a single label may be a plain string), in a stable order."""
    for labels, value in sorted(values):
        family.add_metric([labels] if isinstance(labels, str) else list(labels), value)
    return family


async def read_counts(db: Database) -> tuple[RecordCounts, bool]:
    """The store's counts, read on a reader connection; empty and False when it cannot."""
    try:
        return await db.read(lambda s: s.record_counts()), True
    except Exception as exc:  # a store that fails: the scrape says so (connector_store_up 0)
        log.warning("metrics: cannot read counts from the store: %s", exc)
        return RecordCounts(), False


def add_metrics(app: web.Application, db: Database) -> None:
    """Serve /metrics (Prometheus text format) from `app`: store counts and process figures."""

    async def metrics(request: web.Request) -> web.Response:
        counts, up = await read_counts(db)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(StoreCollector(counts, up, db.commits, db.units))
        ProcessCollector(registry=registry)
        body = await asyncio.to_thread(generate_latest, registry)  # reads /proc files
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/metrics", metrics)
