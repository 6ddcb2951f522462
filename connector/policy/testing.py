"""`policy test -v`: OPA's verbose test run, and for each failing test what was expected and
what the test got, read from OPA's own report (`--var-values`)."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

# "  /path/x_test.rego:7:" then the failing expression, then a "|" line, then the values
_LOCATION = re.compile(r"^\s{2}(?P<file>\S+\.rego):(?P<line>\d+):\s*$")
_TEST = re.compile(r"^(?P<name>data\.\S+): FAIL\b")
_FAIL = re.compile(r"\| Fail (?P<expr>.+?)\s{2,}(?P<bindings>\{.*\})\s*$")


@dataclass(frozen=True)
class Failure:
    test: str
    where: str
    expected: str
    actual: str

    def line(self) -> str:
        return f"{self.test} ({self.where}): expected {self.expected}; actual {self.actual}"


def failures(report: str) -> list[Failure]:
    """The failing tests of an `opa test -v --var-values` report: each test's last failing
    expression (expected to hold) and the values its variables had (actual)."""
    out: list[Failure] = []
    lines = report.splitlines()
    test = ""
    last_fail: tuple[str, str] | None = None
    for i, text in enumerate(lines):
        if m := _TEST.match(text):
            if not any(f.test == m["name"] for f in out):  # (the summary repeats the name)
                test, last_fail = m["name"], None
            continue
        if (f := _FAIL.search(text)) and not f["expr"].startswith("data."):
            last_fail = (f["expr"].strip(), f["bindings"])
        if (loc := _LOCATION.match(text)) and test:
            expr = lines[i + 1].strip() if i + 1 < len(lines) else ""
            # OPA prints "name: value" under the expression's variables; one bare value when
            # there is one variable, whose name the trace's bindings give
            values = _values_below(lines, i + 2)
            bindings = last_fail[1] if last_fail else ""
            usable = bindings not in ("", "{}") and "__local" not in bindings
            actual = bindings if usable and ": " not in values else values
            out.append(
                Failure(
                    test,
                    f"{Path(loc['file']).name}:{loc['line']}",
                    expr or (last_fail[0] if last_fail else "?"),
                    actual or "no variables",
                )
            )
            test = ""
    return out


def _values_below(lines: list[str], start: int) -> str:
    """The values OPA prints under an expression's variables (after its `|` markers)."""
    values = []
    for text in lines[start:]:
        stripped = text.strip()
        if not stripped or stripped.startswith(("SUMMARY", "data.", "---")):
            break
        if set(stripped) <= {"|", " "}:
            continue
        values.append(stripped)
    return ", ".join(values)


def run_verbose(opa_bin: str, folder: Path) -> tuple[bool, str, list[Failure]]:
    """`opa test -v --var-values`; (passed, report, failures)."""
    try:
        done = subprocess.run(
            [opa_bin, "test", "-v", "--var-values", str(folder)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"cannot run {opa_bin} test: {exc}", []
    report = (done.stdout + done.stderr).strip()
    return done.returncode == 0, report, failures(report)
