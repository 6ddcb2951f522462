"""The runnable examples work as their READMEs say: the whole story, end to end."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _free_block(size: int) -> int:
    """A base port with `size` free ports above it (the script uses fixed offsets)."""
    for _ in range(50):
        base = random.randrange(20000, 40000, 100)
        try:
            for port in range(base, base + size):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free block of ports")


def test_city_dataspace_story_runs_end_to_end() -> None:
    env = {
        **os.environ,
        "PORT_BASE": str(_free_block(40)),
        "BIN": str(Path(sys.executable).parent / "connector"),
    }
    done = subprocess.run(
        ["bash", "examples/city-dataspace/run.sh"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )
    out = done.stdout
    assert done.returncode == 0, out[-4000:]
    # onboarding gave the research institute both credentials
    assert "MembershipCredential\tdid:web:" in out and "RoleCredential" in out
    # the portal's crawl found every member's datasets; search answered by keyword and theme
    assert "crawled 4 members" in out and "3 datasets indexed" in out
    assert "urn:stats:population\tPopulation by district\tStatistics Office" in out
    # negotiation under the membership-only policy and the transfer completed intact
    sha = out.split("provider file: ")[1].split()[0]
    assert "COMPLETED  " in out and f"sha256 {sha}" in out
    # the revoked member is refused with the reason, and dropped from the federated catalog
    assert "was revoked by its issuer" in out
    assert "after the next crawl the revoked member's datasets are gone:\n0 of 0" in out


def test_make_demo_shows_each_finding_on_one_line() -> None:
    """`make demo`: every summary line present and holding, with what it claims."""
    done = subprocess.run(
        [sys.executable, "-m", "connector.demo"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )
    out = done.stdout
    assert done.returncode == 0, out[-4000:]
    summary = out.split("\ndemo OK\n")[1].splitlines()
    lines = {line.split()[1]: line for line in summary if line.startswith("  ok   ")}
    assert not [line for line in summary if line.startswith("  FAIL")], out
    assert set(lines) == {
        "wrong", "negotiation", "agreement", "transfer", "sha256", "volume", "metering",
        "invoice", "deletion",
    }  # fmt: skip
    assert "purpose 'marketing' is not among the permitted purposes: research" in lines["wrong"]
    assert lines["negotiation"].split("(")[0].rstrip().endswith("-> FINALIZED")
    assert "both signatures valid" in lines["agreement"]
    assert "-> COMPLETED" in lines["transfer"] and "32.0 MiB" in lines["transfer"]
    assert "(provider = consumer)" in lines["sha256"]
    assert "stopped at 8388608 bytes" in lines["volume"] and "maximum" in lines["volume"]
    assert "33554432 bytes" in lines["metering"] and "verified offline" in lines["metering"]
    assert "33554432 bytes, 1 transfer" in lines["invoice"] and "total 0.12 EUR" in lines["invoice"]
    assert "verified by the provider: valid" in lines["deletion"]
    # the steps after start-up are quick; start-up itself (two Rego libraries compiled and
    # tested) depends on the machine: about 4 s of CPU on two cores
    ready = float(out.split("both ready in ")[1].split()[0])
    total = float(summary[-1].split()[1])
    assert total - ready < 15, out
