"""Offer templates: ODRL JSON files with typed placeholders, filled from `--set name=value`.

A placeholder is a whole JSON string `"{{name:type=default}}"` (no default: the value is
required). It is replaced by a value of its type, so a template fills in to an offer the
library can decide as it is: `volume:bytes` turns "100 MB" into 100000000, `delete_after:
duration` turns "7 days" into "P7D". The key `_template` holds the template's description and
is dropped from the offer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from typing import Any

from connector.errors import BadRequest
from connector.policy.terms import closest

PLACEHOLDER = re.compile(r"^\{\{([a-z_][a-z0-9_]*)(?::([a-z]+))?(?:=(.*))?\}\}$", re.S)
DESCRIPTION = "_template"


class TemplateError(BadRequest):
    """A template that does not exist, or a value that does not fit its placeholder."""


class Kind(StrEnum):
    TEXT = "text"
    LIST = "list"
    BYTES = "bytes"
    INT = "int"
    NUMBER = "number"
    DURATION = "duration"
    CURRENCY = "currency"
    DATE = "date"


@dataclass(frozen=True)
class Param:
    name: str
    kind: Kind
    default: str | None


@dataclass(frozen=True)
class Template:
    name: str
    description: str
    body: dict[str, Any]
    params: tuple[Param, ...]


def templates_dir() -> Path:
    return Path(__file__).resolve().parent.parent.parent / "policies" / "templates"


def _params(value: Any, found: dict[str, Param]) -> None:
    if isinstance(value, dict):
        for v in value.values():
            _params(v, found)
    elif isinstance(value, list):
        for v in value:
            _params(v, found)
    elif isinstance(value, str) and (m := PLACEHOLDER.match(value)):
        try:
            kind = Kind(m.group(2) or "text")
        except ValueError as exc:
            raise TemplateError(f"placeholder {value!r}: unknown type {m.group(2)!r}") from exc
        found.setdefault(m.group(1), Param(m.group(1), kind, m.group(3)))


def load(path: Path) -> Template:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TemplateError(f"cannot read template {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise TemplateError(f"template {path} is not a JSON object")
    description = str(data.pop(DESCRIPTION, ""))
    found: dict[str, Param] = {}
    _params(data, found)
    return Template(path.stem, description, data, tuple(found.values()))


def available(folder: Path | None = None) -> list[Template]:
    return [load(p) for p in sorted((folder or templates_dir()).glob("*.jsonld"))]


def find(name: str, folder: Path | None = None) -> Template:
    """The template by name, or by path to a template file."""
    path = Path(name)
    if path.suffix in (".json", ".jsonld") and path.is_file():
        return load(path)
    folder = folder or templates_dir()
    candidate = folder / f"{name}.jsonld"
    if candidate.is_file():
        return load(candidate)
    names = [p.stem for p in sorted(folder.glob("*.jsonld"))]
    hint = closest(name, names)
    raise TemplateError(
        f"no template {name!r}"
        + (f" (did you mean {hint!r}?)" if hint else "")
        + "; templates: "
        + ", ".join(names)
    )


# values ----------------------------------------------------------------------------------

_DECIMAL_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_BINARY_UNITS = {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_BYTES = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_DURATION_WORDS = {
    "s": "S", "sec": "S", "second": "S", "seconds": "S",
    "min": "M", "minute": "M", "minutes": "M",
    "h": "H", "hour": "H", "hours": "H",
    "d": "D", "day": "D", "days": "D",
    "w": "W", "week": "W", "weeks": "W",
}  # fmt: skip
_ISO_DURATION = re.compile(r"^P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+S)?)?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2}))?$")


def parse_bytes(text: str) -> int:
    """'100 MB' -> 100000000 (KB/MB/GB are powers of 10, KiB/MiB/GiB powers of 2)."""
    m = _BYTES.match(text)
    unit = m.group(2).lower() if m else ""
    factor = _DECIMAL_UNITS.get(unit) or _BINARY_UNITS.get(unit)
    if m is None or factor is None:
        raise ValueError("a size such as '100 MB', '1 GiB' or 5000 (bytes)")
    return int(Decimal(m.group(1)) * factor)


def parse_duration(text: str) -> str:
    """'7 days' / '7d' / 'P7D' -> an ISO 8601 duration."""
    text = text.strip()
    if _ISO_DURATION.match(text):
        return text
    m = re.match(r"^(\d+)\s*([a-zA-Z]+)$", text)
    letter = _DURATION_WORDS.get(m.group(2).lower()) if m else None
    if m is None or letter is None:
        raise ValueError("a duration such as '7 days', '12 hours' or 'P7D'")
    if letter == "W":
        return f"P{int(m.group(1)) * 7}D"
    return f"P{m.group(1)}D" if letter == "D" else f"PT{m.group(1)}{letter}"


def convert(kind: Kind, text: str) -> Any:
    """A `--set` value as its placeholder's type; ValueError names the expected form."""
    if kind is Kind.TEXT:
        return text
    if kind is Kind.LIST:
        items = [x.strip() for x in text.split(",") if x.strip()]
        if not items:
            raise ValueError("one or more values separated by commas")
        return items
    if kind is Kind.BYTES:
        return parse_bytes(text)
    if kind is Kind.INT:
        if not text.strip().isdigit():
            raise ValueError("a whole number such as 3")
        return int(text)
    if kind is Kind.NUMBER:
        try:
            number = Decimal(text.strip())
        except InvalidOperation as exc:
            raise ValueError("a number such as 0.05") from exc
        if not number.is_finite() or number < 0:
            raise ValueError("a non-negative number such as 0.05")
        return int(number) if number == number.to_integral_value() else float(number)
    if kind is Kind.DURATION:
        return parse_duration(text)
    if kind is Kind.CURRENCY:
        if not re.match(r"^[A-Za-z]{3}$", text.strip()):
            raise ValueError("an ISO 4217 currency code such as EUR")
        return text.strip().upper()
    if not _DATE.match(text.strip()):
        raise ValueError("a date such as 2026-12-31 or 2026-12-31T00:00:00Z")
    value = text.strip()
    return value if "T" in value else value + "T00:00:00Z"


def fill(template: Template, values: dict[str, str]) -> dict[str, Any]:
    """The offer with every placeholder replaced; TemplateError names a bad or missing value."""
    params = {p.name: p for p in template.params}
    unknown = [k for k in values if k not in params]
    if unknown:
        hint = closest(unknown[0], list(params))
        raise TemplateError(
            f"template {template.name!r} has no value {unknown[0]!r}"
            + (f" (did you mean {hint!r}?)" if hint else "")
            + "; its values: "
            + (", ".join(f"{p.name} ({p.kind})" for p in template.params) or "none")
        )
    resolved: dict[str, Any] = {}
    for p in template.params:
        text = values.get(p.name, p.default)
        if text is None:
            raise TemplateError(f"template {template.name!r} needs --set {p.name}=... ({p.kind})")
        try:
            resolved[p.name] = convert(p.kind, text)
        except ValueError as exc:
            raise TemplateError(f"{p.name}={text!r}: expected {exc}") from exc

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, str) and (m := PLACEHOLDER.match(value)):
            return resolved[m.group(1)]
        return value

    return {k: walk(v) for k, v in template.body.items()}
