"""The federated catalog's search index on a real SQLite file: every filter combination, count
and page checked against a plain Python filter over the same random datasets."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.catalog.federated import index as index_module
from connector.catalog.federated.index import FederatedIndex, Query
from connector.catalog.federated.members import Member
from connector.catalog.federated.parse import Catalog, Entry

WORDS = ["traffic", "air", "noise", "parking", "water", "bus"]
THEMES = ["mobility", "environment", "energy"]
CLASSES = ["general", "important"]


def entry(rng: random.Random, member: int, n: int) -> Entry:
    word = rng.choice(WORDS)
    return Entry(
        dataset_id=f"ds-{member}-{n}",
        title=f"{word.title()} data {n}",
        description=f"{rng.choice(WORDS)} measurements",
        keywords=[rng.choice(WORDS)],
        themes=rng.sample(THEMES, rng.randint(0, 2)),
        classification=rng.choice(CLASSES),
        hash=f"h-{member}-{n}",
    )


@pytest.fixture
def filled(tmp_path: Path) -> Iterator[tuple[FederatedIndex, list[tuple[str, Entry]]]]:
    rng = random.Random(7)
    index = FederatedIndex(tmp_path / "federated.db")
    every: list[tuple[str, Entry]] = []
    for m in range(4):
        did = f"did:web:member{m}"
        index.upsert_member(Member(did=did, name=f"Member {m}", dsp=f"http://m{m}/dsp",
                                   source="static"))  # fmt: skip
        entries = [entry(rng, m, n) for n in range(60)]
        catalog = Catalog(digest=None, unchanged=False, publisher_name="", entries=entries)
        index.apply(did, catalog, 1.0)
        every += [(did, e) for e in entries]
    yield index, every
    index.close()


def expected(every: list[tuple[str, Entry]], q: Query) -> set[tuple[str, str]]:
    """What a query must find, decided without SQL."""

    def words_of(e: Entry) -> list[str]:
        text = " ".join([e.title, e.description, *e.keywords, *e.themes]).lower()
        return text.replace("-", " ").split()

    out = set()
    for did, e in every:
        if q.q and not all(any(w.startswith(t) for w in words_of(e)) for t in q.q.split()):
            continue
        if q.theme and q.theme.lower() not in [t.lower() for t in e.themes]:
            continue
        if q.publisher and q.publisher.lower() not in (did, f"member {did[-1]}"):
            continue
        if q.classification and e.classification != q.classification:
            continue
        out.add((did, e.dataset_id))
    return out


def every_page(index: FederatedIndex, q: Query, limit: int) -> tuple[list[tuple[str, str]], int]:
    seen: list[tuple[str, str]] = []
    offset, total = 0, -1
    while True:
        found = index.search(q.model_copy(update={"limit": limit, "offset": offset}))
        total = found.total if total < 0 else total
        assert found.total == total  # the count does not change from page to page
        if not found.hits:
            return seen, total
        seen += [(h["member"]["id"], h["datasetId"]) for h in found.hits]
        offset += limit


QUERIES = [
    Query(),
    Query(q="traffic"),
    Query(q="tra"),
    Query(q="air measurements"),
    Query(theme="Mobility"),
    Query(publisher="did:web:member2"),
    Query(publisher="member 1"),
    Query(classification="important"),
    Query(q="water", theme="energy"),
    Query(q="bus", theme="mobility", publisher="Member 3", classification="general"),
    Query(theme="environment", classification="general"),
    Query(q="nothing-like-this"),
]


@pytest.mark.parametrize("rank_limit", [10_000, 5], ids=["ranked", "above-rank-limit"])
@pytest.mark.parametrize("q", QUERIES, ids=lambda q: repr(q.model_dump(exclude_defaults=True)))
def test_pages_cover_exactly_the_matches(
    filled: tuple[FederatedIndex, list[tuple[str, Entry]]],
    q: Query,
    rank_limit: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(index_module, "RANK_LIMIT", rank_limit)
    index, every = filled
    want = expected(every, q)
    for limit in (7, 200):
        seen, total = every_page(index, q, limit)
        assert total == len(want)
        assert len(seen) == len(set(seen)), "a dataset appeared on two pages"
        assert set(seen) == want
    matches = index.search(Query(q=q.q)).total if q.q else None
    ranked = matches is not None and matches <= rank_limit
    assert index.search(q).order == ("relevance" if ranked else "indexed")
    if not ranked:  # index order: ascending as the datasets were indexed
        seen, _ = every_page(index, q, 200)
        order = [n for n, (did, e) in enumerate(every) if (did, e.dataset_id) in want]
        assert seen == [(every[n][0], every[n][1].dataset_id) for n in order]


def test_relevance_puts_the_most_mentioning_dataset_first(tmp_path: Path) -> None:
    index = FederatedIndex(tmp_path / "federated.db")
    did = "did:web:member"
    index.upsert_member(Member(did=did, dsp="http://m/dsp", source="static"))
    entries = [
        Entry(dataset_id="once", title="Bus stops", description="where buses halt", hash="1"),
        Entry(
            dataset_id="often",
            title="Noise",
            description="noise noise at night",
            keywords=["noise"],
            hash="2",
        ),
        Entry(dataset_id="twice", title="Noise map", description="city", hash="3"),
        Entry(dataset_id="other", title="Noise-free parks", description="quiet", hash="4"),
    ]
    index.apply(did, Catalog(digest=None, unchanged=False, publisher_name="", entries=entries), 1)
    found = index.search(Query(q="noise"))
    assert found.order == "relevance" and found.total == 3
    assert found.hits[0]["datasetId"] == "often"
    index.close()


def test_a_page_past_the_end_still_counts(
    filled: tuple[FederatedIndex, list[tuple[str, Entry]]],
) -> None:
    index, every = filled
    for q in (Query(q="traffic", offset=10_000), Query(theme="energy", offset=10_000)):
        found = index.search(q)
        assert found.hits == [] and found.total == len(expected(every, q)) > 0
