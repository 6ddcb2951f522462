"""Real connector processes on loopback for the integration tests."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from connector.mgmt_client import ApiError, ManagementClient
from connector.ports import free_port


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "connector", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def wait_http(url: str, timeout: float = 10.0) -> None:
    """Wait until something answers HTTP at `url` (a server a test started)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing answered at {url} within {timeout:.0f} s")


class ConnectorProcess:
    """One `connector serve` process with its own directory, keys, DID, ports and SQLite file."""

    def __init__(self, root: Path, name: str, *, extra_init: tuple[str, ...] = ()) -> None:
        self.dir = root / name
        self.name = name
        self.public_port = free_port()
        self.management_port = free_port()
        args = [
            "init",
            "--dir",
            str(self.dir),
            "--name",
            name,
            "--public-port",
            str(self.public_port),
            "--management-port",
            str(self.management_port),
            *extra_init,
        ]
        if "--tls-cert" not in extra_init:
            args.append("--dev")
        done = cli(*args)
        assert done.returncode == 0, done.stderr
        self.config = self.dir / "connector.toml"
        self.settings: dict[str, Any] = tomllib.loads(self.config.read_text())
        self.proc: subprocess.Popen[bytes] | None = None
        self.env: dict[str, str] = {}
        if "--tls-cert" in extra_init:
            # HTTPS on loopback: the operator allows loopback explicitly (docs/security.md)
            self.set(egress_allow='["127.0.0.0/8"]')
        self.log_path = self.dir / "serve.log"
        # a command the serve command line is handed to (e.g. `unshare -m sh -c '...' sh`, to
        # run the process in its own mount namespace); it must exec the command it is given, so
        # that the process started is the connector (signals reach it, /proc/<pid> is it)
        self.wrapper: list[str] = []

    @property
    def base_url(self) -> str:
        return str(self.settings["public_url"])

    @property
    def dsp(self) -> str:
        return self.base_url + "/dsp/2025-1"

    @property
    def did(self) -> str:
        from connector.identity.did import did_from_url

        return did_from_url(self.base_url)

    @property
    def api(self) -> ManagementClient:
        return ManagementClient(
            f"http://127.0.0.1:{self.management_port}", str(self.settings["api_key"])
        )

    def set(self, **values: str) -> None:
        """Environment overrides (CONNECTOR_*) for the next start."""
        self.env.update({f"CONNECTOR_{k.upper()}": v for k, v in values.items()})

    def start(
        self, timeout: float = 20.0, *, env: dict[str, str] | None = None
    ) -> ConnectorProcess:
        """Start `connector serve`; `env` is added to the environment of this start only
        (e.g. `skewed_clock`), unlike `set`, which lasts for every later start."""
        log = self.log_path.open("ab")
        serve = [sys.executable, "-m", "connector", "--config", str(self.config), "serve"]
        self.proc = subprocess.Popen(
            [*self.wrapper, *serve],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env, **(env or {})},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_path.read_text()[-2000:]}")
            try:
                self.api.get("/api/v1/datasets")
                return self
            except ApiError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not become ready: {self.log_path.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, as in a crash."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def publish(self, path: Path, dataset_id: str = "ds-1", **extra: Any) -> dict[str, Any]:
        body = {
            "id": dataset_id,
            "title": "Test data",
            "source": {"type": "file", "path": str(path)},
        }
        body.update(extra)
        result: dict[str, Any] = self.api.post("/api/v1/datasets", body)
        return result


def skewed_clock(offset_seconds: int) -> dict[str, str]:
    """Environment that runs a process with its wall clock `offset_seconds` off, under
    libfaketime (Debian package faketime, installed by `make faketime`). Monotonic clocks are
    left alone, so asyncio timers and timeouts keep working."""
    found = sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))
    if not found:
        raise RuntimeError("libfaketime is missing: `make faketime` (apt-get install faketime)")
    return {
        "LD_PRELOAD": str(found[0]),
        "FAKETIME": f"{offset_seconds:+d}s",
        "DONT_FAKE_MONOTONIC": "1",
    }


def negotiate(
    consumer: ConnectorProcess,
    provider: ConnectorProcess,
    dataset_id: str,
    purpose: str | None = None,
) -> str:
    """Consumer negotiates the provider's first offer of `dataset_id` (declaring `purpose`, if
    given); returns the agreement id."""
    catalog = consumer.api.post("/api/v1/catalog/request", {"counterPartyAddress": provider.dsp})
    dataset = next(d for d in catalog["dataset"] if d["@id"] == dataset_id)
    body = {"counterPartyAddress": provider.dsp, "datasetId": dataset_id,
            "offer": dataset["hasPolicy"][0]}  # fmt: skip
    neg = consumer.api.post(
        "/api/v1/negotiations", body | ({"purpose": purpose} if purpose else {})
    )
    done = consumer.api.wait_state("negotiations", neg["id"], {"FINALIZED"}, timeout=30)
    return str(done["agreement_id"])


def wait_for(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def state_of(node: ConnectorProcess, kind: str, pid: str, state: str) -> dict[str, Any]:
    """Wait until `node`'s record `pid` is in `state`; fail at once if it ends elsewhere."""
    ends = {"FINALIZED", "TERMINATED", "COMPLETED"}

    def check() -> dict[str, Any] | None:
        record: dict[str, Any] = node.api.get(f"/api/v1/{kind}/{pid}")
        if record["state"] == state:
            return record
        if record["state"] in ends:
            lines = [
                f"{e['direction']} {e['message_type']} {e['detail']}" for e in record["timeline"]
            ]
            raise AssertionError(
                f"{node.name} {kind} {pid} ended {record['state']}, not {state}: "
                f"{record['reason']}\n" + "\n".join(lines)
            )
        return None

    found: dict[str, Any] = wait_for(f"{node.name} {kind} {pid} in {state}", check)
    return found


def entries(record: dict[str, Any], direction: str, message_type: str) -> list[dict[str, Any]]:
    return [
        e
        for e in record["timeline"]
        if e["direction"] == direction and e["message_type"] == message_type
    ]


def received_files(consumer: ConnectorProcess, cid: str) -> list[Path]:
    """The consumer's copy of a transfer and any push still being received beside it."""
    path = consumer.dir / "received" / f"{cid.rsplit(':', 1)[-1]}.bin"
    return [p for p in (path, *path.parent.glob(path.name + ".*.part")) if p.exists()]


def received_size(consumer: ConnectorProcess, cid: str) -> int:
    """Bytes received so far (the largest of the copy and a push under way)."""
    return max((p.stat().st_size for p in received_files(consumer, cid)), default=0)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(4 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def sparse_file(path: Path, size: int) -> tuple[Path, str]:
    """A large file, mostly sparse, with random bytes at every MiB so that order and length
    matter; the path and its SHA-256."""
    with path.open("wb") as fh:
        fh.truncate(size)
        for mib in range(size // (1024 * 1024)):
            fh.seek(mib * 1024 * 1024 + mib)
            fh.write(os.urandom(1024))
    return path, file_sha256(path)


class GatedSource:
    """Test double for an upstream HTTP data source: sends the first `hold_after` bytes of
    `data` at once and the rest only after `release` is set, so a test can act in the middle
    of a stream (Content-Length always announces the whole). Serves `Range: bytes=N-` with
    206 (beyond the end: 416), as a resuming provider asks for the rest."""

    def __init__(self, data: bytes, hold_after: int) -> None:
        self.data = data
        self.release = threading.Event()
        self.requests: list[str | None] = []  # the Range header of each request
        source = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                asked = self.headers.get("Range")
                source.requests.append(asked)
                first = int(asked.removeprefix("bytes=").rstrip("-")) if asked else 0
                if first > len(source.data):
                    self.send_response(416)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206 if asked else 200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(source.data) - first))
                self.end_headers()
                try:
                    if first < hold_after:
                        self.wfile.write(source.data[first:hold_after])
                        self.wfile.flush()
                        source.release.wait(60)
                    self.wfile.write(source.data[max(first, hold_after) :])
                except OSError:
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/data"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


class ThrottledUpstream:
    """Test double for an upstream HTTP data source (outside the project): serves the files of
    a directory at `rate` bytes/s, honouring `Range: bytes=N-`, so that a transfer lasts long
    enough for a kill to land in the middle of the stream (a file source on loopback is sent
    whole into the socket buffers within a fraction of a second)."""

    def __init__(self, directory: Path, rate: float) -> None:
        upstream = self
        self.directory = directory
        self.rate = rate

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = upstream.directory / self.path.lstrip("/")
                size = path.stat().st_size
                start = 0
                wanted = self.headers.get("Range", "")
                if wanted.startswith("bytes=") and wanted.endswith("-"):
                    start = int(wanted[6:-1])
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
                self.send_header("Content-Length", str(size - start))
                self.end_headers()
                chunk = 64 * 1024
                began = time.monotonic()
                try:
                    with path.open("rb") as fh:
                        fh.seek(start)
                        sent = 0
                        while block := fh.read(chunk):
                            self.wfile.write(block)
                            sent += len(block)
                            ahead = sent / upstream.rate - (time.monotonic() - began)
                            if ahead > 0:
                                time.sleep(ahead)  # the rate limit itself, not a wait
                except OSError:
                    pass  # the provider was killed mid-read

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
