"""No phoning home: `opa run` (server and REPL mode) reports to OPA's telemetry service at start
unless given `--disable-telemetry`. Every OPA command line the project ships or runs (compose,
the Helm chart, the tests, the benchmarks, the docs) must carry the flag. `opa version` asks
only with `--check`, which nothing here uses."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUFFIXES = {".py", ".yaml", ".yml", ".md", ".tpl", ".toml", ".sh", ".txt"}
NAMES = {"Makefile", "Dockerfile"}
FLAG = "--disable-telemetry"
# OPA's run subcommand, or a `run` argument followed by --server / -s (an argument list, a
# YAML list, a compose command): the start of an OPA server command line.
OPA_RUN = re.compile(
    r"""\bopa\s+run\b"""
    r"""|(?<![\w-])["']?run["']?(?=[\s,"')\]]+(?:-\s+)?["']?(?:--server|-s)\b)"""
)
# A command line ends at a blank line; no command here is longer than this.
WINDOW = 300


def _files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    paths = [ROOT / p for p in listed.split("\0") if p]
    return [
        p
        for p in paths
        if (p.suffix in SUFFIXES or p.name in NAMES) and p.is_file() and not p.is_symlink()
    ]


def opa_run_commands(text: str) -> list[tuple[int, str]]:
    """Each OPA run command line in `text`: its line number and its text up to a blank line."""
    found = []
    for match in OPA_RUN.finditer(text):
        command = text[match.start() : match.start() + WINDOW].split("\n\n", 1)[0]
        found.append((text.count("\n", 0, match.start()) + 1, command))
    return found


# what the samples' placeholders stand for, spelled apart for the same reason
FILLS = {"opa": "o" + "pa", "run": "r" + "un", "server": "--" + "server", "s": "-" + "s"}


def test_the_detector_sees_every_kind_of_command_line() -> None:
    # the samples name the binary, the subcommand and the server flags as {opa}, {run},
    # {server}, {s}, filled in here: this file itself then holds no OPA command line without
    # the flag for any scanner to find
    samples = {
        '[{opa}, "{run}", "{server}", "--addr", "x"]': False,
        'command: ["{run}", "{server}", "--addr=0.0.0.0:8181", "--disable-telemetry"]': True,
        "args:\n  - {run}\n  - {server}\n  - --addr=x\n  - --disable-telemetry\n": True,
        "args:\n  - {run}\n  - {server}\n  - --addr=x\n": False,
        "start it with `{opa} {run} {s} policies/`": False,
        '*("{run}", "{server}", "--disable-telemetry")': True,
    }
    for template, ok in samples.items():
        text = template.format_map(FILLS)
        [(_, command)] = opa_run_commands(text)
        assert (FLAG in command) is ok, text
    assert opa_run_commands('subprocess.run(["ls"])\nrun the tests') == []


def test_every_opa_run_disables_telemetry() -> None:
    missing = []
    seen: set[str] = set()
    for path in _files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for line, command in opa_run_commands(text):
            rel = str(path.relative_to(ROOT))
            seen.add(rel)
            if FLAG not in command:
                missing.append(f"{rel}:{line}: {command.splitlines()[0].strip()}")
    assert not missing, "OPA started without --disable-telemetry:\n" + "\n".join(missing)
    # the detector is not blind: the known OPA servers are among what it checked
    assert {
        "deploy/compose.yaml",
        "deploy/helm/connector/templates/deployment.yaml",
        "tests/test_policy_engines.py",
        "bench/policy_latency.py",
    } <= seen, seen
