"""Kill storm: transfers between two real connectors, either side SIGKILLed mid-transfer, and
after each round the delivery invariant checked with the project's own offline tools.

Each round publishes a file of random size (a few MB to ~30 MB, sparse with random bytes in
every MiB), negotiates it, starts a pull or a push (at random), SIGKILLs the provider or the
consumer (os.kill, no clean-up) once a random share of the bytes has arrived, restarts it,
waits for the transfer to end (COMPLETED or TERMINATED, within a generous deadline) and runs
tests/faults/invariants.check on the round's agreement: both sides terminal, equal copies,
the provider's chain verifies offline with the consumer's export as witness, every byte the
consumer holds is covered by a receipted record, and the invoices bill each byte once.

    .venv/bin/python bench/killstorm.py [--rounds 30] [--store sqlite|postgres] [--seed N]

Prints each violation, then `N violations`; exits 1 when there are any. The checker lives in
tests/faults (the fault tests and this script share it; tests/ is importable from bench/ as in
the other bench scripts).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.percentile import pct
from connector.mgmt_client import ApiError
from tests.faults.invariants import TERMINAL
from tests.faults.pair import MIB, Pair, sigkill
from tests.harness import ThrottledUpstream, file_sha256

MB = 1000 * 1000
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Round:
    number: int
    kind: str  # pull | push
    source: str  # file | upstream (throttled HTTP)
    size: int
    victim: str
    kill_at: int = 0  # bytes the consumer held when the victim was killed
    killed_after: float = 0.0  # seconds from the transfer's start
    state: str = "?"
    seconds: float = 0.0  # start to terminal on the consumer
    recovery: float = 0.0  # kill to terminal
    check_seconds: float = 0.0
    violations: list[str] = field(default_factory=list)
    round_seconds: float = 0.0  # all of it: file, publication, negotiation, transfer, check


def make_file(path: Path, size: int, rng: random.Random) -> tuple[Path, str]:
    """`size` bytes, sparse, with 4 KiB of seeded random bytes at a random place in every MiB
    (order, length and content all matter); the path and its SHA-256."""
    with path.open("wb") as fh:
        fh.truncate(size)
        for mib in range(0, size, MIB):
            at = mib + rng.randrange(0, max(1, min(MIB, size - mib) - 4096))
            fh.seek(at)
            fh.write(rng.randbytes(min(4096, size - at)))
    return path, file_sha256(path)


def consumer_state(pair: Pair, cid: str) -> str | None:
    try:
        return str(pair.consumer.api.get(f"/api/v1/transfers/{cid}")["state"])
    except ApiError:
        return None  # (restarting)


def wait_terminal(pair: Pair, cid: str, deadline: float) -> str:
    """The consumer's state once terminal, or the last state seen when the deadline passed."""
    state = consumer_state(pair, cid) or "?"
    while state not in TERMINAL and time.monotonic() < deadline:
        time.sleep(0.1)
        state = consumer_state(pair, cid) or state
    return state


def run_round(
    pair: Pair,
    upstream: ThrottledUpstream,
    number: int,
    rng: random.Random,
    args: argparse.Namespace,
) -> Round:
    size = rng.randrange(args.min_mb * MB, args.max_mb * MB + 1)
    kind = rng.choice(["pull", "push"])
    where = "file" if rng.random() < args.file_share else "upstream"
    r = Round(number, kind, where, size, rng.choice(["provider", "consumer"]))
    path, sha = make_file(upstream.directory / f"data-{number}.bin", size, rng)
    source: Path | str = path if where == "file" else f"{upstream.url}/{path.name}"
    agreement_id = pair.offer(source, f"ds-{number}")
    share = rng.random()  # kill once this share of the bytes has arrived
    started = time.monotonic()
    cid = pair.transfer(agreement_id, push=r.kind == "push")["id"]
    while time.monotonic() - started < 30:
        r.kill_at = pair.held(cid)
        if r.kill_at >= share * size or consumer_state(pair, cid) in TERMINAL:
            break
        time.sleep(0.01)
    victim = pair.provider if r.victim == "provider" else pair.consumer
    killed = time.monotonic()
    r.killed_after = killed - started
    sigkill(victim)
    victim.start()
    r.state = wait_terminal(pair, cid, time.monotonic() + args.deadline)
    ended = time.monotonic()
    r.seconds, r.recovery = ended - started, ended - killed
    if r.state not in TERMINAL:
        r.violations.append(
            f"consumer {r.kind} {cid} still {r.state} {args.deadline:.0f} s after the kill"
        )
    outcome = pair.check({agreement_id: sha}, agreements=[agreement_id], settle_seconds=args.settle)
    r.check_seconds = time.monotonic() - ended
    r.violations += outcome.violations
    return r


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--seed", type=int, default=None, help="default: random (printed)")
    parser.add_argument("--min-mb", type=int, default=3)
    parser.add_argument("--max-mb", type=int, default=30)
    parser.add_argument(
        "--rate", type=float, default=8.0, help="MB/s of the throttled upstream source"
    )
    parser.add_argument(
        "--file-share",
        type=float,
        default=0.25,
        help="share of rounds that publish a plain file instead of the throttled upstream",
    )
    parser.add_argument(
        "--deadline", type=float, default=180.0, help="seconds after a kill for the transfer to end"
    )
    parser.add_argument(
        "--settle", type=float, default=15.0, help="seconds for the invariant to come to hold"
    )
    args = parser.parse_args()
    # the connector processes run this checkout's code, wherever the script is started from
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p
    )
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    rng = random.Random(seed)
    print(
        f"kill storm: {args.rounds} rounds on {args.store}, seed {seed}, upstream at"
        f" {args.rate:g} MB/s",
        flush=True,
    )

    server = None
    rounds: list[Round] = []
    with tempfile.TemporaryDirectory(prefix="bench-killstorm-") as tmp:
        urls = None
        if args.store == "postgres":
            from tests.postgres_server import PostgresServer

            server = PostgresServer().start()
            urls = (server.new_database(), server.new_database())
        pair = Pair(Path(tmp), urls)
        upstream = ThrottledUpstream(Path(tmp), args.rate * MB)
        try:
            pair.start()
            for number in range(1, args.rounds + 1):
                began = time.monotonic()
                r = run_round(pair, upstream, number, rng, args)
                rounds.append(r)
                r.round_seconds = time.monotonic() - began
                print(
                    f"round {number:>3}: {r.kind} {r.size / MB:5.1f} MB from {r.source:<8},"
                    f" killed {r.victim:<8}"
                    f" at {r.kill_at / MB:5.1f} MB ({r.killed_after:4.1f} s), {r.state}"
                    f" {r.recovery:5.1f} s after the kill; checked in {r.check_seconds:4.1f} s:"
                    f" {len(r.violations)} violation(s)",
                    flush=True,
                )
                for v in r.violations:
                    print(f"    {v}", flush=True)
        finally:
            pair.stop()
            upstream.close()
            if server is not None:
                server.stop()

    total = sum(len(r.violations) for r in rounds)
    if rounds:
        spans = [r.round_seconds for r in rounds]
        recovery = [r.recovery for r in rounds]
        by_victim = {
            f"{v} killed mid-{k}": sum(
                1 for r in rounds if r.victim == v and r.kind == k and r.violations
            )
            for v in ("provider", "consumer")
            for k in ("pull", "push")
        }
        print(
            f"rounds: median {statistics.median(spans):.1f} s, max {max(spans):.1f} s (file,"
            " offer, negotiation, transfer, kill, restart, check); kill to terminal: median"
            f" {statistics.median(recovery):.1f} s, p90 {pct(recovery, 0.9):.1f} s"
        )
        print(
            "rounds with violations: "
            + ", ".join(f"{name} {count}" for name, count in by_victim.items())
            + f"; ended COMPLETED {sum(r.state == 'COMPLETED' for r in rounds)},"
            f" TERMINATED {sum(r.state == 'TERMINATED' for r in rounds)}"
        )
    print(f"{total} violations")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
