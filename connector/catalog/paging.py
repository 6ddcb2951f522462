"""DSP catalog paging (catalog HTTPS binding, "Pagination"): a page of the datasets a caller
may see, and the `Link` headers (`rel="next"`, `rel="previous"`) that lead to the others.

The catalog is in dataset id order. A page asked by offset skips that many visible, selected
datasets from the start; the `next` link carries the last id shown instead (keyset paging),
so walking a catalog of 100,000 datasets costs each page its own rows and decisions, never
the pages before it. The token is ours and opaque to the caller (the binding leaves its
form open); only a token we could have issued is accepted.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from urllib.parse import urljoin

from connector.catalog.filters import Page
from connector.model.records import Dataset
from connector.store.base import Store
from connector.store.gateway import Database

Decide = Callable[[list[Dataset]], Awaitable[list[Dataset]]]

MIN_CHUNK = 100
MAX_CHUNK = 2000


@dataclass
class Result:
    shown: list[Dataset]
    more: bool  # at least one more visible, selected dataset follows


def _rows(store: Store, *, after: str | None, limit: int) -> list[Dataset]:
    return store.page_datasets(after, limit)


async def select(db: Database, decide: Decide, page: Page) -> Result:
    """The page's datasets, reading the store in chunks until the page is full."""
    want = page.limit + 1  # one more tells whether a next page exists
    skip = 0 if page.after is not None else page.offset
    ids = [c.value for c in page.criteria if c.field.value == "id"]
    shown: list[Dataset] = []
    if ids:  # an id criterion: at most one dataset, read directly
        found = await db.read(lambda s: s.get_dataset(ids[0]))
        later = found is not None and (page.after is None or found.id > page.after)
        rows = [found] if found is not None and later else []
        shown = (await decide([d for d in rows if page.selects(d)]))[skip:want]
        return Result(shown[: page.limit], len(shown) > page.limit)
    chunk = min(max(page.limit + 1, MIN_CHUNK), MAX_CHUNK)
    after = page.after
    while len(shown) < want:
        rows = await db.read(partial(_rows, after=after, limit=chunk))
        if not rows:
            break
        after = rows[-1].id
        for dataset in await decide([d for d in rows if page.selects(d)]):
            if skip:
                skip -= 1
            elif len(shown) < want:
                shown.append(dataset)
        if len(rows) < chunk:
            break
    return Result(shown[: page.limit], len(shown) > page.limit)


def slice_of(visible: list[Dataset], page: Page) -> Result:
    """The page out of a catalog already decided whole (when its digest was asked for)."""
    start = 0
    if page.after is not None:
        start = next((n for n, d in enumerate(visible) if d.id > page.after), len(visible))
    else:
        start = page.offset
    selected = [d for d in visible[start:] if page.selects(d)]
    return Result(selected[: page.limit], len(selected) > page.limit)


def links(request_url: str, page: Page, result: Result) -> str | None:
    """The Link header value for this page, None on a single page."""
    parts = []
    if result.more and result.shown:
        token = page.token(offset=page.offset + page.limit, after=result.shown[-1].id)
        parts.append(f'<{request_url}?continuationToken={token}>; rel="next"')
    if page.offset > 0:
        token = page.token(offset=max(0, page.offset - page.limit), after=None)
        parts.append(f'<{request_url}?continuationToken={token}>; rel="previous"')
    return ", ".join(parts) or None


_LINK = re.compile(r"<([^>]*)>\s*((?:;\s*[^,;<]*)*)")
_REL = re.compile(r'rel\s*=\s*"?([^";,]*)"?', re.IGNORECASE)


def next_link(values: list[str], base: str) -> str | None:
    """The `rel="next"` target among Link header values, made absolute against `base`."""
    for value in values:
        for target, params in _LINK.findall(value):
            rel = _REL.search(params)
            if rel and "next" in rel.group(1).lower().split():
                return str(urljoin(base, target.strip()))
    return None
