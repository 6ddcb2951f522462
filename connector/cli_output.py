"""How the CLI prints: one `--json` switch, tables with headers, progress on a terminal.

A terminal gets a rich table; a pipe gets a header line and tab-separated rows, so scripts
that split on tabs keep working and `--json` gives them the whole records.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def json_option(func: F) -> F:
    """The `--json` switch every list and show command takes."""
    return click.option("--json", "as_json", is_flag=True, help="Print the full records as JSON")(
        func
    )


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def is_terminal() -> bool:
    return sys.stdout.isatty()


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Print rows under headers: a rich table on a terminal, tab-separated otherwise."""
    cells = [[_cell(v) for v in row] for row in rows]
    if is_terminal():
        from rich.console import Console
        from rich.table import Table

        out = Table(box=None, header_style="bold", pad_edge=False)
        for header in headers:
            out.add_column(header, overflow="fold")  # ids are copied: wrapped, never cut
        for row in cells:
            out.add_row(*row)
        Console().print(out)
        return
    click.echo("\t".join(h.upper() for h in headers))
    for row in cells:
        click.echo("\t".join(row))


def listing(
    data: list[Any],
    as_json: bool,
    headers: Sequence[str],
    row: Callable[[Any], Sequence[Any]],
) -> None:
    """A list command's output: JSON records with --json, else a table of `row(record)`."""
    if as_json:
        emit_json(data)
    else:
        table(headers, [row(item) for item in data])


def fields(record: dict[str, Any], names: Sequence[tuple[str, str]]) -> None:
    """A show command's output without --json: one 'label: value' line per present field."""
    width = max(len(label) for _, label in names)
    for key, label in names:
        if record.get(key) not in (None, "", [], {}):
            click.echo(f"{label + ':':<{width + 1}} {_cell(record[key])}")


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover - loop always returns
