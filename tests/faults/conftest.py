"""Fixtures for the fault tests: a provider/consumer pair on either store (tests/faults/pair.py)
and the invariant checker on top (tests/faults/invariants.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faults.pair import STORES, Pair
from tests.postgres_server import PostgresServer

MakePair = Callable[..., Pair]


@pytest.fixture(params=STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    """Each test using it runs on SQLite and on PostgreSQL."""
    kind: str = request.param
    return kind


@pytest.fixture
def make_pair(
    request: pytest.FixtureRequest, tmp_path: Path, store_kind: str
) -> Iterator[MakePair]:
    """Factory: `make_pair(name="", **settings)` -> a started Pair on `store_kind` (each side
    its own fresh database on PostgreSQL); all stopped at the end of the test."""
    made: list[Pair] = []

    def make(name: str = "", **settings: str) -> Pair:
        urls = None
        if store_kind == "postgres":
            server: PostgresServer = request.getfixturevalue("postgres")
            urls = (server.new_database(), server.new_database())
        pair = Pair(tmp_path / name if name else tmp_path, urls, **settings)
        made.append(pair)
        return pair.start()

    yield make
    for pair in made:
        pair.stop()


@pytest.fixture
def pair(make_pair: MakePair) -> Pair:
    """A started provider/consumer pair on SQLite and on PostgreSQL (default settings)."""
    return make_pair()
