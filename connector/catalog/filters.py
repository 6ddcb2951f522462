"""The DSP catalog `filter` elements this connector understands (docs/profile.md).

DSP leaves the filter's content to the implementation. We understand two kinds of element:

- our `IfChanged` with the catalog digest the caller holds, so a crawler can refresh cheaply;
- a QuerySpec as an Eclipse EDC consumer always sends one (`offset`, `limit`,
  `filterExpression` of `Criterion`s, `sortField`, `sortOrder`; terms of the
  `https://w3id.org/edc/v0.0.1/ns/` namespace, compact, `edc:`-prefixed or absolute): its
  offset and limit page the catalog, and `=` criteria on the dataset id and simple dataset
  properties select datasets.

What we cannot honour (another element, another operator, another property, a sort) is left
out, with one log line per request, and the rest of the request answered: refusing would
leave an EDC consumer with no catalog at all. Leaving out a criterion only ever shows more
datasets, never a dataset the caller may not see (visibility is decided for every dataset).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from connector.errors import BadRequest
from connector.model.messages import CATALOG_DIGEST, CLASSIFICATION, IF_CHANGED
from connector.model.records import Dataset

log = logging.getLogger(__name__)

EDC_NS = "https://w3id.org/edc/v0.0.1/ns/"
DCT = "http://purl.org/dc/terms/"
DCAT = "http://www.w3.org/ns/dcat#"

DEFAULT_LIMIT = 50  # EDC's QuerySpec default
MAX_LIMIT = 1000  # a larger limit is cut to this, and the Link header leads on
MAX_OFFSET = 10_000_000
MAX_CRITERIA = 16
MAX_TOKEN = 4096


class Field(StrEnum):
    """A dataset property a criterion can select on."""

    ID = "id"
    TITLE = "title"
    DESCRIPTION = "description"
    CLASSIFICATION = "classification"
    KEYWORD = "keyword"
    THEME = "theme"
    MEDIA_TYPE = "mediaType"


# Every spelling of a criterion's left operand we take for each field.
_FIELD_NAMES: dict[str, Field] = {}
for _field, _names in {
    Field.ID: ("id", "@id", "edc:id", EDC_NS + "id", "dct:identifier", DCT + "identifier"),
    Field.TITLE: ("title", "dct:title", DCT + "title", "edc:name", EDC_NS + "name", "name"),
    Field.DESCRIPTION: (
        "description",
        "dct:description",
        DCT + "description",
        "edc:description",
        EDC_NS + "description",
    ),
    Field.CLASSIFICATION: ("classification", CLASSIFICATION),
    Field.KEYWORD: ("keyword", "dcat:keyword", DCAT + "keyword"),
    Field.THEME: ("theme", "dcat:theme", DCAT + "theme"),
    Field.MEDIA_TYPE: (
        "mediaType",
        "dcat:mediaType",
        DCAT + "mediaType",
        "contenttype",
        "edc:contenttype",
        EDC_NS + "contenttype",
    ),
}.items():
    for _name in _names:
        _FIELD_NAMES[_name] = _field

_EQUALS = ("=", "eq", "odrl:eq", "http://www.w3.org/ns/odrl/2/eq")


@dataclass(frozen=True)
class Criterion:
    field: Field
    value: str

    def matches(self, dataset: Dataset) -> bool:
        match self.field:
            case Field.ID:
                return dataset.id == self.value
            case Field.TITLE:
                return dataset.title == self.value
            case Field.DESCRIPTION:
                return dataset.description == self.value
            case Field.CLASSIFICATION:
                return dataset.classification.value == self.value
            case Field.KEYWORD:
                return self.value in dataset.keywords
            case Field.THEME:
                return self.value in dataset.themes
            case Field.MEDIA_TYPE:
                return dataset.media_type == self.value


@dataclass(frozen=True)
class Page:
    """Which part of the catalog to answer: `offset` visible, selected datasets skipped
    (counted from the start, or from just after the dataset id `after`), `limit` shown."""

    offset: int = 0
    limit: int = DEFAULT_LIMIT
    criteria: tuple[Criterion, ...] = ()
    after: str | None = None

    def selects(self, dataset: Dataset) -> bool:
        return all(c.matches(dataset) for c in self.criteria)

    def token(self, *, offset: int, after: str | None) -> str:
        """The continuation token of another page of the same query (opaque to the caller)."""
        doc: dict[str, Any] = {"o": offset, "l": self.limit}
        if self.criteria:
            doc["c"] = [[c.field.value, c.value] for c in self.criteria]
        if after is not None:
            doc["a"] = after
        raw = json.dumps(doc, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@dataclass
class CatalogQuery:
    """What a CatalogRequestMessage's filter asks: a page (or the whole catalog) and/or the
    digest of the catalog the caller holds."""

    page: Page | None = None
    digest: str | None = None  # None: no IfChanged; "": IfChanged asking for the digest only
    ignored: list[str] = field(default_factory=list)


def _many(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _get(element: dict[str, Any], term: str) -> Any:
    """An EDC term in any of its spellings, a JSON-LD value object unwrapped."""
    for key in (term, "edc:" + term, EDC_NS + term):
        if key in element:
            value = element[key]
            if isinstance(value, list) and len(value) == 1:
                value = value[0]
            if isinstance(value, dict) and "@value" in value:
                value = value["@value"]
            return value
    return None


def _types(element: dict[str, Any]) -> list[str]:
    return [t for t in _many(element.get("@type")) if isinstance(t, str)]


def _is(element: dict[str, Any], term: str) -> bool:
    return any(t in (term, "edc:" + term, EDC_NS + term) for t in _types(element))


def _number(element: dict[str, Any], term: str, default: int, high: int) -> int:
    value = _get(element, term)
    if value is None:
        return default
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BadRequest(f"catalog filter: QuerySpec {term} must be a non-negative integer")
    return min(value, high)


def _criterion(item: Any, ignored: list[str]) -> Criterion | None:
    if not isinstance(item, dict):
        ignored.append("a filterExpression entry that is not an object")
        return None
    left, op, right = (_get(item, t) for t in ("operandLeft", "operator", "operandRight"))
    if not isinstance(left, str) or left not in _FIELD_NAMES:
        ignored.append(f"criterion on {str(left)[:100]!r} (not a property we select on)")
        return None
    if op not in _EQUALS:
        ignored.append(f"criterion {left} {str(op)[:20]} (only = is supported)")
        return None
    if isinstance(right, int | float) and not isinstance(right, bool):
        right = str(right)
    if not isinstance(right, str) or len(right) > 1024:
        ignored.append(f"criterion {left} = a value that is not a string")
        return None
    return Criterion(_FIELD_NAMES[left], right)


def _query_spec(element: dict[str, Any], ignored: list[str]) -> Page:
    criteria = [c for c in (_criterion(i, ignored) for i in _many(_get_list(element))) if c]
    if len(criteria) > MAX_CRITERIA:
        raise BadRequest(f"catalog filter: at most {MAX_CRITERIA} criteria")
    sort_field = _get(element, "sortField")
    if sort_field not in (None, "", *[n for n, f in _FIELD_NAMES.items() if f is Field.ID]):
        ignored.append(f"sortField {str(sort_field)[:100]!r} (the catalog is in dataset id order)")
    order = _get(element, "sortOrder")
    if order not in (None, "ASC", "asc"):
        ignored.append(f"sortOrder {str(order)[:10]!r} (the catalog is in ascending order)")
    return Page(
        offset=_number(element, "offset", 0, MAX_OFFSET),
        limit=max(1, _number(element, "limit", DEFAULT_LIMIT, MAX_LIMIT)),
        criteria=tuple(criteria),
    )


def _get_list(element: dict[str, Any]) -> Any:
    """filterExpression as given: a JSON-LD processor leaves a single entry unwrapped."""
    for key in ("filterExpression", "edc:filterExpression", EDC_NS + "filterExpression"):
        if key in element:
            return element[key]
    return None


def read(filters: list[Any] | None) -> CatalogQuery:
    """The query a message's filter elements ask; what we cannot honour is left out, and
    logged once."""
    query = CatalogQuery()
    for element in filters or []:
        if isinstance(element, dict) and IF_CHANGED in _types(element):
            value = element.get(CATALOG_DIGEST, "")
            if not isinstance(value, str):
                raise BadRequest(f"catalog filter {IF_CHANGED}: {CATALOG_DIGEST} must be a string")
            query.digest = value
        elif isinstance(element, dict) and _is(element, "QuerySpec"):
            if query.page is not None:
                query.ignored.append("a second QuerySpec")
                continue
            query.page = _query_spec(element, query.ignored)
        else:
            kinds = _types(element) if isinstance(element, dict) else []
            query.ignored.append(f"filter element {(kinds or ['without @type'])[0][:100]!r}")
    if query.ignored:
        log.info("catalog request: ignored %s", "; ".join(query.ignored))
    return query


def from_token(token: str) -> Page:
    """The page a continuation token of ours names; BadRequest for anything else."""
    try:
        if len(token) > MAX_TOKEN:
            raise ValueError("too long")
        doc = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        offset, limit = doc["o"], doc["l"]
        after = doc.get("a")
        criteria = tuple(Criterion(Field(f), v) for f, v in doc.get("c", []))
        ok = all(isinstance(c.value, str) for c in criteria) and len(criteria) <= MAX_CRITERIA
        ok = ok and isinstance(offset, int) and 0 <= offset <= MAX_OFFSET
        ok = ok and isinstance(limit, int) and 1 <= limit <= MAX_LIMIT
        if not ok or not (after is None or isinstance(after, str)):
            raise ValueError("out of range")
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise BadRequest("continuationToken is not one this connector issued") from exc
    return Page(offset=offset, limit=limit, criteria=criteria, after=after)


def with_token(query: CatalogQuery, token: str | None) -> CatalogQuery:
    """A continuation token (from our Link header) names the page; the body's own paging
    and digest do not apply to a later page."""
    if token is None:
        return query
    return replace(query, page=from_token(token), digest=None)


def if_changed(digest: str) -> dict[str, Any]:
    """The filter element a caller sends with the digest of the catalog it holds."""
    return {"@type": IF_CHANGED, CATALOG_DIGEST: digest}


def query_spec(limit: int) -> dict[str, Any]:
    """A QuerySpec asking for pages of `limit`, in absolute IRIs: valid JSON-LD under the DSP
    context alone, and understood by EDC and by us."""
    return {
        "@type": EDC_NS + "QuerySpec",
        EDC_NS + "offset": 0,
        EDC_NS + "limit": limit,
        EDC_NS + "filterExpression": [],
    }
