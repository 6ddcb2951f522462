"""A throwaway PostgreSQL cluster for the tests: Debian's server binaries, a temp directory,
a free loopback port. Run as the `postgres` system user when the tests run as root (the
server refuses to run as root)."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from connector.ports import free_port


def server_bin() -> Path:
    """The newest installed server's bin directory; fails (never skips) when there is none."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        raise RuntimeError(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb):"
            " `make postgresql` installs Debian's package"
        )
    return found[-1].parent


class PostgresServer:
    """initdb + pg_ctl start on 127.0.0.1:<free port>; `stop` ends it and removes the files.

    The cluster lives in its own directory under the system temp dir: pytest's are private
    to root, and the server's user must reach its files."""

    def __init__(self) -> None:
        self.bin = server_bin()
        # /tmp, not $TMPDIR: the server's user must traverse every parent directory
        self.root = Path(tempfile.mkdtemp(prefix="tdsc-pg-", dir="/tmp"))
        self.data = self.root / "data"
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {done.stdout}\n{done.stderr}")

    def start(self) -> PostgresServer:
        # stopped even when pytest ends abnormally (an orphaned server would hold its port)
        atexit.register(self.stop)
        try:
            if self.as_postgres:
                shutil.chown(self.root, "postgres", "postgres")
            self._run(
                "initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                "--no-locale",
            )  # fmt: skip
            options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off"
            self._run(
                "pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w",
                "-o", options, "start",
            )  # fmt: skip
        except BaseException:
            self.stop()
            raise
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"create database {name}")
        return self.url(name)

    def stop(self) -> None:
        if not self.root.exists():
            return
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
