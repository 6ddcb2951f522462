"""The federated catalog's SQLite index: one file, FTS5 over titles, descriptions and keywords.

Kept apart from the connector's own store: it is a cache of other members' catalogs that a
crawl can always rebuild, and its write load must not contend with negotiations.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from connector.catalog.federated.members import Member
from connector.catalog.federated.parse import Catalog
from connector.model.records import utcnow

SCHEMA = """
create table if not exists members (
    did text primary key, name text not null, dsp text not null, attributes text not null,
    source text not null, publisher_name text not null default '', digest text,
    last_attempt_at text, last_success_at text, last_result text,
    last_error text, last_error_at text, datasets integer not null default 0,
    duration_ms real
);
create table if not exists datasets (
    id integer primary key, member text not null, dataset_id text not null,
    title text not null, description text not null, keywords text not null,
    themes text not null, classification text not null, offers text not null,
    hash text not null, indexed_at text not null, unique (member, dataset_id)
);
drop index if exists datasets_classification;
create index if not exists datasets_class on datasets (classification);
create table if not exists themes (
    theme text not null collate nocase, dataset integer not null,
    primary key (theme, dataset)
) without rowid;
create index if not exists themes_dataset on themes (dataset);
create virtual table if not exists search using fts5 (
    title, description, keywords, themes, tokenize = 'unicode61 remove_diacritics 2'
);
"""

RANK_LIMIT = 10_000  # ranking 50,000 matches takes ~40 ms; 10,000 about 8 ms
_WORD = re.compile(r"\w+", re.UNICODE)


class Changes(BaseModel):
    added: int = 0
    changed: int = 0
    removed: int = 0


class Results(BaseModel):
    total: int
    order: Literal["relevance", "indexed"]  # relevance: words, at most RANK_LIMIT matches
    hits: list[dict[str, Any]]


class Query(BaseModel):
    q: str | None = None
    theme: str | None = None
    publisher: str | None = None
    classification: str | None = None
    limit: int = 20
    offset: int = 0


def fts_query(text: str) -> str | None:
    """Free text to an FTS5 query: every word must match, as a word or a word prefix."""
    words = _WORD.findall(text)
    return " ".join(f'"{w}"*' for w in words) if words else None


class FederatedIndex:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("pragma journal_mode=wal")
        self._db.execute("pragma synchronous=normal")  # a cache: a crawl rebuilds it
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("begin immediate")
        try:
            yield self._db
        except BaseException:
            self._db.execute("rollback")
            raise
        self._db.execute("commit")

    # members ---------------------------------------------------------------------------------

    def digest(self, did: str) -> str | None:
        row = self._db.execute("select digest from members where did = ?", [did]).fetchone()
        return row["digest"] if row else None

    def upsert_member(self, m: Member) -> None:
        self._db.execute(
            "insert into members (did, name, dsp, attributes, source) values (?, ?, ?, ?, ?)"
            " on conflict (did) do update set name = excluded.name, dsp = excluded.dsp,"
            " attributes = excluded.attributes, source = excluded.source,"
            " digest = case when members.dsp = excluded.dsp then members.digest end",
            [m.did, m.name, m.dsp, json.dumps(m.attributes), m.source],
        )

    def drop_members_except(self, keep: set[str]) -> list[str]:
        """Members no source lists any more leave the index with their datasets."""
        gone = [
            r["did"] for r in self._db.execute("select did from members") if r["did"] not in keep
        ]
        with self._tx() as db:
            for did in gone:
                self._delete_rows(db, [r["id"] for r in self._rows(db, did)])
                db.execute("delete from members where did = ?", [did])
        return gone

    def record_failure(self, did: str, error: str, duration_ms: float) -> None:
        now = utcnow()
        self._db.execute(
            "update members set last_attempt_at = ?, last_result = 'failed', last_error = ?,"
            " last_error_at = ?, duration_ms = ? where did = ?",
            [now, error, now, duration_ms, did],
        )

    def members(self) -> list[dict[str, Any]]:
        rows = self._db.execute("select * from members order by name, did").fetchall()
        return [
            {
                "id": r["did"],
                "name": r["name"] or r["publisher_name"],
                "dspEndpoint": r["dsp"],
                "attributes": json.loads(r["attributes"]),
                "source": r["source"],
                "catalogDigest": r["digest"],
                "lastAttemptAt": r["last_attempt_at"],
                "lastSuccessAt": r["last_success_at"],
                "lastResult": r["last_result"],
                "lastError": r["last_error"],
                "lastErrorAt": r["last_error_at"],
                "datasets": r["datasets"],
                "durationMs": r["duration_ms"],
            }
            for r in rows
        ]

    # datasets --------------------------------------------------------------------------------

    def _rows(self, db: sqlite3.Connection, did: str) -> list[sqlite3.Row]:
        return db.execute(
            "select id, dataset_id, hash from datasets where member = ?", [did]
        ).fetchall()

    def _delete_rows(self, db: sqlite3.Connection, ids: list[int]) -> None:
        for n in range(0, len(ids), 500):
            part = ids[n : n + 500]
            marks = ",".join("?" * len(part))
            db.execute(f"delete from datasets where id in ({marks})", part)
            db.execute(f"delete from search where rowid in ({marks})", part)
            db.execute(f"delete from themes where dataset in ({marks})", part)

    def apply(self, did: str, catalog: Catalog, duration_ms: float) -> Changes:
        """Make the member's rows match its catalog: add, update and remove by dataset hash."""
        changes = Changes()
        now = utcnow()
        with self._tx() as db:
            held = {r["dataset_id"]: r for r in self._rows(db, did)}
            fresh = {e.dataset_id for e in catalog.entries}
            gone = [r["id"] for k, r in held.items() if k not in fresh]
            self._delete_rows(db, gone)
            changes.removed = len(gone)
            for e in catalog.entries:
                old = held.get(e.dataset_id)
                if old is not None and old["hash"] == e.hash:
                    continue
                if old is not None:
                    self._delete_rows(db, [old["id"]])
                    changes.changed += 1
                else:
                    changes.added += 1
                cur = db.execute(
                    "insert into datasets (member, dataset_id, title, description, keywords,"
                    " themes, classification, offers, hash, indexed_at)"
                    " values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        did, e.dataset_id, e.title, e.description, json.dumps(e.keywords),
                        json.dumps(e.themes), e.classification, json.dumps(e.offers), e.hash, now,
                    ],
                )  # fmt: skip
                rowid = cur.lastrowid
                db.execute(
                    "insert into search (rowid, title, description, keywords, themes)"
                    " values (?, ?, ?, ?, ?)",
                    [rowid, e.title, e.description, " ".join(e.keywords), " ".join(e.themes)],
                )
                db.executemany(
                    "insert or ignore into themes (theme, dataset) values (?, ?)",
                    [(t, rowid) for t in e.themes],
                )
            db.execute(
                "update members set digest = ?, publisher_name = ?, last_attempt_at = ?,"
                " last_success_at = ?, last_result = 'changed', last_error = null,"
                " datasets = (select count(*) from datasets where member = ?), duration_ms = ?"
                " where did = ?",
                [catalog.digest, catalog.publisher_name, now, now, did, duration_ms, did],
            )
        return changes

    def record_unchanged(self, did: str, duration_ms: float) -> None:
        now = utcnow()
        self._db.execute(
            "update members set last_attempt_at = ?, last_success_at = ?,"
            " last_result = 'unchanged', last_error = null, duration_ms = ? where did = ?",
            [now, now, duration_ms, did],
        )

    def total(self) -> int:
        return int(self._db.execute("select count(*) from datasets").fetchone()[0])

    # search ----------------------------------------------------------------------------------

    def search(self, query: Query) -> Results:
        """One page of matches and their count.

        Words are matched once (the FTS result kept in a materialized CTE), never per row;
        the other filters go through indexes; the page is chosen by id and score before any
        whole row is read. Relevance ranking costs time in proportion to the matches, so
        above RANK_LIMIT matches the page is in index order, like an unworded query, and
        the answer says so."""
        where, args = _filters(query)
        cond = (" where " + " and ".join(where)) if where else ""
        words = fts_query(query.q) if query.q else None
        if words is None:
            found = f"select d.id as id, 0 as score from datasets d{cond}"
            return self._page(found, args, "indexed", query)
        matches = self._count("select count(*) from search where search match ?", [words])
        ranked = matches <= RANK_LIMIT
        hits = f"select rowid as id, {'rank' if ranked else '0'} as score from search"
        hits += " where search match ?"
        if where:
            # from the matches to their rows (CROSS JOIN keeps that order): looking each
            # row's words up instead would repeat the match once per row
            found = (
                f"select d.id as id, h.score as score from ({hits}) as h"
                f" cross join datasets d on d.id = h.id{cond}"
            )
        else:
            found = hits
        return self._page(found, [words, *args], "relevance" if ranked else "indexed", query)

    def _count(self, sql: str, args: list[Any]) -> int:
        return int(self._db.execute(sql, args).fetchone()[0])

    def _page(
        self, found: str, args: list[Any], order: Literal["relevance", "indexed"], query: Query
    ) -> Results:
        """`found` yields (id, score) of every match; the page is taken from it before any
        whole row is read. Ranked matches are materialized once for both the page and the
        count; unranked ones are counted and paged straight from the indexes (ids ascend)."""
        ranked = order == "relevance"
        if ranked:
            head = f"with found as materialized ({found}),"
            source, total_col = "found", ", (select count(*) from found) as total"
            by = "score, id"
        else:
            head, source, total_col, by = "with", f"({found})", "", "id"
        rows = self._db.execute(
            f"{head} page as (select id, score from {source} order by {by} limit ? offset ?)"
            f" select d.*, m.name, m.publisher_name, m.dsp{total_col}"
            " from page cross join datasets d on d.id = page.id"
            f" join members m on m.did = d.member order by {by.replace('score', 'page.score')}",
            [*args, query.limit, query.offset],
        ).fetchall()
        if rows and ranked:
            total = int(rows[0]["total"])
        else:  # unranked, or a page past the end: the count alone
            total = self._count(f"select count(*) from ({found})", args)
        return Results(total=total, order=order, hits=[_hit(r) for r in rows])


def _filters(query: Query) -> tuple[list[str], list[Any]]:
    """The conditions on `datasets d` other than words, each answerable from an index."""
    where: list[str] = []
    args: list[Any] = []
    if query.theme:
        where.append("d.id in (select dataset from themes where theme = ?)")
        args.append(query.theme)
    if query.publisher:
        where.append(
            "d.member in (select did from members where did = ?"
            " or name = ? collate nocase or publisher_name = ? collate nocase)"
        )
        args += [query.publisher] * 3
    if query.classification:
        where.append("d.classification = ?")
        args.append(query.classification)
    return where, args


def _hit(r: sqlite3.Row) -> dict[str, Any]:
    name = r["name"] or r["publisher_name"]
    return {
        "datasetId": r["dataset_id"],
        "title": r["title"],
        "description": r["description"],
        "keywords": json.loads(r["keywords"]),
        "themes": json.loads(r["themes"]),
        "classification": r["classification"],
        "publisher": {"id": r["member"], "name": r["publisher_name"] or name},
        "member": {"id": r["member"], "name": name, "dspEndpoint": r["dsp"]},
        "offers": json.loads(r["offers"]),
        "indexedAt": r["indexed_at"],
    }
