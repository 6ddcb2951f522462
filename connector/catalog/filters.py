"""The DSP catalog `filter` elements this connector understands (docs/profile.md).

DSP leaves the filter's content to the implementation. We understand exactly one element,
`IfChanged` with the catalog digest the caller holds, so a crawler can refresh cheaply;
every other element is refused, as a filter we cannot apply must not be silently ignored.
"""

from __future__ import annotations

from typing import Any

from connector.errors import BadRequest
from connector.model.messages import CATALOG_DIGEST, IF_CHANGED


def known_digest(filters: list[Any] | None) -> str | None:
    """The digest of an IfChanged element, None without filters; BadRequest otherwise."""
    if not filters:
        return None
    if len(filters) != 1:
        raise BadRequest("catalog filters: only one IfChanged element is supported")
    element = filters[0]
    if not isinstance(element, dict) or element.get("@type") != IF_CHANGED:
        raise BadRequest(
            f"catalog filters are not supported by this connector, except {IF_CHANGED}"
        )
    value = element.get(CATALOG_DIGEST)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"catalog filter {IF_CHANGED} needs {CATALOG_DIGEST} (a string)")
    return value


def if_changed(digest: str) -> dict[str, Any]:
    """The filter element a caller sends with the digest of the catalog it holds."""
    return {"@type": IF_CHANGED, CATALOG_DIGEST: digest}
