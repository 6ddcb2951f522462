"""Incoming DSP messages in any JSON-LD form that means the same, brought to the DSP form.

A message whose `@context` is exactly the DSP 2025-1 context is read as it is (the fast
path: every message we and the TCK send). Any other form (EDC adds its own context, a peer
may send expanded JSON-LD, or its own prefixes) is expanded and compacted again to the DSP
context by a JSON-LD processor, so the models only ever see the compact DSP terms.

Contexts are never fetched: the processor's document loader knows only the copies shipped in
`contexts/` (see its README for their sources and licences). A message naming any other
remote context is refused, naming it: fetching it would let a peer make us call any URL.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from connector.errors import BadRequest

DSP_CONTEXT = "https://w3id.org/dspace/2025/1/context.jsonld"
DSP_ODRL_PROFILE = "https://w3id.org/dspace/2025/1/odrl-profile.jsonld"
EDC_DSPACE_CONTEXT = "https://w3id.org/edc/dspace/v0.0.1"
ODRL_CONTEXT = "http://www.w3.org/ns/odrl.jsonld"
EDC_NS = "https://w3id.org/edc/v0.0.1/ns/"

_DIR = Path(__file__).with_name("contexts")
_FILES = {
    DSP_CONTEXT: "dspace-2025-1.jsonld",
    DSP_ODRL_PROFILE: "dspace-2025-1-odrl-profile.jsonld",
    EDC_DSPACE_CONTEXT: "edc-dspace-v0.0.1.jsonld",
    ODRL_CONTEXT: "w3c-odrl.jsonld",
}
KNOWN = tuple(_FILES)

# Bounds on what a peer can make the processor do (the body is already size-limited).
MAX_NODES = 20_000
MAX_DEPTH = 64


class UnknownContext(Exception):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


@cache
def _document(url: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((_DIR / _FILES[url]).read_text(encoding="utf-8"))
    return doc


def _loader(url: str, options: Any = None) -> dict[str, Any]:
    """The offline document loader: a shipped copy, or UnknownContext (nothing is fetched)."""
    if url not in _FILES:
        raise UnknownContext(url)
    return {
        "contentType": "application/ld+json",
        "contextUrl": None,
        "documentUrl": url,
        "document": _document(url),
    }


_OPTIONS: dict[str, Any] = {"documentLoader": _loader, "base": None}  # ids stay as sent


def is_dsp_form(context: Any) -> bool:
    """Exactly the DSP context (as a string or a one-element array): no processing needed."""
    return bool(context == DSP_CONTEXT or context == [DSP_CONTEXT])


def _too_big(value: Any) -> bool:
    """More nodes or deeper nesting than the processor is let to work through."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    nodes = 0
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES or depth > MAX_DEPTH:
            return True
        if isinstance(item, dict):
            stack += [(v, depth + 1) for v in item.values()]
        elif isinstance(item, list):
            stack += [(v, depth + 1) for v in item]
    return False


def _unknown(exc: BaseException) -> str | None:
    """The unknown context URL behind a processor error, however deeply it was wrapped."""
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        item = stack.pop()
        if id(item) in seen or item is None:
            continue
        seen.add(id(item))
        if isinstance(item, UnknownContext):
            return item.url
        if isinstance(item, BaseException):
            stack += [item.__cause__, item.__context__, getattr(item, "cause", None)]
            details = getattr(item, "details", None)
            if isinstance(details, dict):
                stack.append(details.get("cause"))
    return None


def _first_line(exc: BaseException) -> str:
    """The processor's own short message, without its dump of the offending document."""
    message = getattr(exc, "message", None) or (exc.args[0] if exc.args else None)
    text = message if isinstance(message, str) else str(exc)
    return (text.splitlines() or ["unknown error"])[0][:300]


def to_dsp_form(body: dict[str, Any]) -> dict[str, Any]:
    """Expand `body` and compact it to the DSP context; BadRequest naming what is wrong."""
    if _too_big(body):
        raise BadRequest(
            f"message too complex for JSON-LD processing (over {MAX_NODES} nodes"
            f" or {MAX_DEPTH} levels)"
        )
    from pyld import jsonld  # imported on the first message that needs it (0.3 s)

    try:
        expanded = jsonld.expand(body, _OPTIONS)
        compacted: dict[str, Any] = jsonld.compact(expanded, DSP_CONTEXT, _OPTIONS)
    except Exception as exc:  # pyld raises JsonLdError wrapping anything, our loader's too
        url = _unknown(exc)
        if url is not None:
            raise BadRequest(
                f"@context names {url}, which this connector does not know; remote contexts"
                f" are never fetched (known: {', '.join(KNOWN)})"
            ) from exc
        why = _first_line(exc)
        raise BadRequest(f"message is not valid JSON-LD under its @context: {why}") from exc
    compacted["@context"] = [DSP_CONTEXT]
    return compacted
