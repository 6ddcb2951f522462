"""Power loss: nothing is acknowledged that a power loss could take back.

A consumer that sends a metering receipt, answers a push, or reports COMPLETED vouches that
it holds the data. The kernel may keep written bytes (and a new directory entry) in memory
for a while, so the received file and its directory must be on disk (fsync) first. These
tests watch a real consumer process with strace and check the order of its system calls:
the file's fsync and its directory's fsync come before the receipt, the push's answer and
the TransferCompletionMessage leave the process.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness import (
    ConnectorProcess,
    entries,
    file_sha256,
    negotiate,
    state_of,
    wait_for,
)

pytestmark = pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")

CALLS = "trace=openat,fsync,fdatasync,rename,renameat,renameat2,connect,sendto,write"


@dataclass
class Call:
    """One system call in the trace: where it started and where it returned (line numbers)."""

    start: int
    end: int
    pid: str
    text: str  # the whole call, its arguments and its result

    @property
    def name(self) -> str:
        return self.text.split("(", 1)[0]

    @property
    def result(self) -> str:
        return self.text.rsplit("=", 1)[-1].strip()


def parse(trace: str) -> list[Call]:
    """The calls of an `strace -f` output in order of their start, a call that another
    thread interrupted (`<unfinished ...>` ... `<... fsync resumed>`) joined into one."""
    calls: list[Call] = []
    pending: dict[str, tuple[int, str]] = {}
    for number, line in enumerate(trace.splitlines()):
        pid, _, text = line.partition(" ")
        text = text.strip()
        if text.endswith("<unfinished ...>"):
            pending[pid] = (number, text.removesuffix("<unfinished ...>").rstrip())
        elif text.startswith("<..."):
            start, head = pending.pop(pid, (number, ""))
            tail = text.split("resumed>", 1)[-1]
            calls.append(Call(start, number, pid, head + tail))
        elif "(" in text:
            calls.append(Call(number, number, pid, text))
    return sorted(calls, key=lambda c: c.start)


class Strace:
    """strace attached to a running process (all its threads); detached on `stop`."""

    def __init__(self, pid: int, out: Path) -> None:
        self.out = out
        self.log = out.with_suffix(".stderr")
        with self.log.open("wb") as err:
            self.proc = subprocess.Popen(
                ["strace", "-f", "-s", "512", "-e", CALLS, "-o", str(out), "-p", str(pid)],
                stderr=err,
            )
        wait_for("strace to attach", lambda: f"Process {pid} attached" in self.log.read_text())

    def stop(self) -> list[Call]:
        self.proc.terminate()
        self.proc.wait(10)
        return parse(self.out.read_text(errors="replace"))


@pytest.fixture
def traced(consumer: ConnectorProcess, tmp_path: Path) -> Iterator[Strace]:
    assert consumer.proc is not None
    tracer = Strace(consumer.proc.pid, tmp_path / "consumer.strace")
    yield tracer
    if tracer.proc.poll() is None:
        tracer.proc.terminate()
        tracer.proc.wait(10)


def first(calls: list[Call], what: str, match: Callable[[Call], bool]) -> Call:
    found = next((c for c in calls if match(c)), None)
    assert found is not None, f"the trace has no {what}"
    return found


def fd_of(calls: list[Call], path: Path) -> Call:
    """The first openat of `path` (its result is the descriptor)."""
    return first(calls, f"openat of {path}", lambda c: c.name == "openat" and f'"{path}"' in c.text)


def fsync_of(calls: list[Call], opened: Call) -> Call:
    """The first fsync of the descriptor `opened` returned, after it (in any thread)."""
    fd = opened.result
    return first(
        calls,
        f"fsync of descriptor {fd} after line {opened.end} ({opened.text[:120]})",
        lambda c: (
            c.start > opened.end
            and c.name in ("fsync", "fdatasync")
            and c.text.startswith(f"{c.name}({fd})")
        ),
    )


def dir_synced_after(calls: list[Call], directory: Path, after: int) -> Call:
    """An fsync of `directory` (opened after line `after`) that returned 0."""
    for opened in calls:
        if opened.start > after and opened.name == "openat" and f'"{directory}"' in opened.text:
            # opened to be synced: the thread's next call (a listing opens it too)
            then = next((c for c in calls if c.pid == opened.pid and c.start > opened.end), None)
            if then is not None and then.text.startswith(f"fsync({opened.result})"):
                assert then.result == "0", then.text
                return then
    raise AssertionError(f"the trace has no fsync of {directory} after line {after}")


def sent(calls: list[Call], pattern: str) -> Call:
    """The first data written to a socket that matches `pattern` (an HTTP request line)."""
    found = re.compile(pattern)
    return first(
        calls,
        f"data sent matching {pattern}",
        lambda c: c.name in ("sendto", "write") and bool(found.search(c.text)),
    )


def test_a_pulled_file_is_on_disk_before_its_receipt_and_completion(
    provider: ConnectorProcess, consumer: ConnectorProcess, payload: Path, traced: Strace
) -> None:
    provider.publish(payload)
    agreement_id = negotiate(consumer, provider, "ds-1")
    tp = consumer.api.post(
        "/api/v1/transfers", {"agreementId": agreement_id, "format": "HttpData-PULL"}
    )
    done = state_of(consumer, "transfers", tp["id"], "COMPLETED")
    assert file_sha256(Path(done["path"])) == file_sha256(payload)
    # COMPLETED is recorded first, the message goes out after it (the outbox)
    wait_for(
        "the TransferCompletionMessage to go out",
        lambda: entries(
            consumer.api.get(f"/api/v1/transfers/{tp['id']}"), "sent", "TransferCompletionMessage"
        ),
    )
    calls = traced.stop()

    copy = Path(done["path"])
    opened = fd_of(calls, copy)
    file_synced = fsync_of(calls, opened)
    assert file_synced.result == "0"
    dir_synced = dir_synced_after(calls, copy.parent, opened.end)
    receipt = sent(calls, r"POST \S*/metering/transfers/\S+/receipts HTTP/1\.1")
    completion = sent(calls, r"POST \S*/transfers/\S+/completion HTTP/1\.1")
    assert file_synced.end < receipt.start
    assert dir_synced.end < receipt.start
    assert receipt.start < completion.start


def test_a_pushed_file_is_on_disk_before_the_push_is_answered_and_receipted(
    provider: ConnectorProcess, consumer: ConnectorProcess, payload: Path, traced: Strace
) -> None:
    provider.publish(payload)
    agreement_id = negotiate(consumer, provider, "ds-1")
    tp = consumer.api.post(
        "/api/v1/transfers", {"agreementId": agreement_id, "format": "HttpData-PUSH"}
    )
    record = state_of(consumer, "transfers", tp["id"], "COMPLETED")
    wait_for(
        "the consumer's receipts",
        lambda: [
            e
            for e in consumer.api.get(f"/api/v1/transfers/{tp['id']}")["timeline"]
            if e["message_type"] == "metering" and "receipted" in (e["detail"] or "")
        ],
    )
    copy = Path(record["path"])
    assert file_sha256(copy) == file_sha256(payload)
    calls = traced.stop()

    # staged beside the copy, synced, renamed into place, the rename synced
    part = re.compile(rf'"{re.escape(str(copy))}\.\w+\.part"')
    staged = first(
        calls,
        "openat of the staged part",
        lambda c: c.name == "openat" and bool(part.search(c.text)),
    )
    file_synced = fsync_of(calls, staged)
    assert file_synced.result == "0"
    renamed = first(
        calls, f"rename to {copy}", lambda c: c.name.startswith("rename") and f'"{copy}"' in c.text
    )
    assert file_synced.end < renamed.start
    dir_synced = dir_synced_after(calls, copy.parent, renamed.end)
    answer = sent(calls, r'HTTP/1\.1 200 OK.*\{\\"bytes\\": \d+, \\"sha256\\"')
    receipt = sent(calls, r"POST \S*/metering/transfers/\S+/receipts HTTP/1\.1")
    assert dir_synced.end < answer.start
    assert dir_synced.end < receipt.start
