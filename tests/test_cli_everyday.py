"""Everyday use through the CLI (issue 17): tables and --json, progress and time-outs,
errors in words a user acts on, and what `datasets add` guesses and warns about."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
from pathlib import Path
from typing import Any

from connector.credentials.verifier import CredentialVerifier, claims_of
from tests.harness import ConnectorProcess, GatedSource, cli, negotiate, received_files, wait_for


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_publish_negotiate_and_pull_with_tables_json_and_guesses(
    provider: ConnectorProcess, consumer: ConnectorProcess, tmp_path: Path
) -> None:
    p, c = ("--config", str(provider.config)), ("--config", str(consumer.config))
    data = tmp_path / "stops.csv"
    data.write_text("stop,lat,lon\n" * 1000)
    added = cli(*p, "datasets", "add", "--id", "stops", "--file", str(data))
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["media_type"] == "text/csv"
    assert "the offer is unrestricted" in added.stderr

    listed = cli(*p, "datasets", "list")
    lines = listed.stdout.splitlines()
    assert lines[0].split("\t") == ["ID", "TITLE", "MEDIA TYPE", "BYTES", "OFFERS"]
    assert lines[1].split("\t")[0] == "stops" and len(lines) == 2
    as_json = json.loads(cli(*p, "datasets", "list", "--json").stdout)
    assert [d["id"] for d in as_json] == ["stops"]

    updated = cli(*p, "datasets", "update", "stops", "--title", "Bus stops", "--keyword", "bus")
    assert updated.returncode == 0, updated.stderr
    shown = json.loads(cli(*p, "datasets", "show", "stops", "--json").stdout)
    assert shown["title"] == "Bus stops" and shown["keywords"] == ["bus"]
    assert shown["media_type"] == "text/csv"  # untouched fields stay
    assert "title:" in cli(*p, "datasets", "show", "stops").stdout

    offers = cli(*c, "catalog", "fetch", provider.dsp, "--table").stdout.splitlines()
    assert offers[0] == "DATASET\tTITLE\tOFFER" and offers[1].startswith("stops\tBus stops\t")
    agreed = cli(*c, "negotiations", "start", provider.dsp, "stops", "--wait")
    assert agreed.returncode == 0, agreed.stderr
    agreement_id = agreed.stdout.strip()
    assert agreement_id in [
        a["id"] for a in json.loads(cli(*c, "agreements", "list", "--json").stdout)
    ]
    assert cli(*c, "negotiations", "list").stdout.startswith("ID\tROLE\tSTATE")

    started = cli(*c, "transfers", "start", agreement_id)
    assert started.returncode == 0, started.stderr
    waited = cli(*c, "transfers", "wait", started.stdout.strip(), "--timeout", "30")
    assert waited.returncode == 0 and "COMPLETED" in waited.stdout, waited.stderr
    (received,) = received_files(consumer, started.stdout.strip())
    assert stat.S_IMODE(received.stat().st_mode) == 0o600
    rows = json.loads(cli(*c, "transfers", "list", "--json").stdout)
    assert rows[0]["bytes"] == data.stat().st_size
    assert cli(*c, "transfers", "list").stdout.splitlines()[0].startswith("ID\tROLE\tSTATE\tBYTES")


def test_errors_say_what_to_do(provider: ConnectorProcess, consumer: ConnectorProcess) -> None:
    c = ("--config", str(consumer.config))
    port = _free_port()
    down = cli(*c, "catalog", "fetch", f"http://127.0.0.1:{port}/dsp")
    assert down.returncode != 0
    assert f"provider at http://127.0.0.1:{port} unreachable (connection refused)" in down.stderr
    assert "ClientConnectorError" not in down.stderr

    management = f"http://127.0.0.1:{provider.settings['management_port']}"
    wrong_port = cli(*c, "catalog", "fetch", management)
    assert wrong_port.returncode != 0
    assert "is a connector's management API, not its DSP endpoint" in wrong_port.stderr

    did = provider.did.replace("%3A", ":")
    colon = cli(*c, "catalog", "fetch", provider.dsp, "--id", did)
    assert colon.returncode != 0 and f"did you mean {provider.did}?" in colon.stderr


def test_transfer_progress_and_timeout(
    provider: ConnectorProcess, consumer: ConnectorProcess
) -> None:
    data = os.urandom(1024 * 1024)
    gated = GatedSource(data, hold_after=len(data) // 4)
    try:
        source = {"type": "http", "url": gated.url}
        provider.api.post("/api/v1/datasets", {"id": "gated", "source": source})
        agreement_id = negotiate(consumer, provider, "gated")
        c = ("--config", str(consumer.config))
        pid = cli(*c, "transfers", "start", agreement_id).stdout.strip()

        def moved() -> dict[str, Any] | None:
            record: dict[str, Any] = json.loads(cli(*c, "transfers", "show", pid, "--json").stdout)
            return record if record["bytes"] == len(data) // 4 else None

        record = wait_for("the first quarter on the consumer's disk", moved)
        # an HTTP upstream's size is not known in advance (a file's is, and is announced)
        assert record["state"] == "STARTED" and record["bytes_expected"] is None
        shown = cli(*c, "transfers", "show", pid)
        assert f"moved: {len(data) // 4} bytes" in shown.stdout

        late = cli(*c, "transfers", "wait", pid, "--timeout", "0.5")
        assert late.returncode != 0 and "timed out after 0.5 s" in late.stderr, late.stderr
        assert "default: 120" in cli("transfers", "wait", "--help").stdout.replace("\n", " ")

        gated.release.set()
        done = cli(*c, "transfers", "wait", pid, "--timeout", "30")
        assert done.returncode == 0 and f"{len(data)} bytes" in done.stdout, done.stderr
    finally:
        gated.close()


def test_config_errors_name_the_setting_and_where_it_came_from(tmp_path: Path) -> None:
    made = cli("init", "--dir", str(tmp_path / "n"), "--dev")
    assert made.returncode == 0, made.stderr
    config = tmp_path / "n" / "connector.toml"
    text = config.read_text()
    config.write_text(text + 'polcy_engine = "embedded"\n')
    typo = cli("--config", str(config), "serve")
    assert typo.returncode != 0
    assert "unknown setting 'polcy_engine'" in typo.stderr
    assert "(did you mean policy_engine?)" in typo.stderr
    config.write_text(text)
    bad = cli("--config", str(config), "serve", env={"CONNECTOR_MANAGEMENT_PORT": "eighty"})
    assert bad.returncode != 0 and "CONNECTOR_MANAGEMENT_PORT (environment)" in bad.stderr
    assert "connector, version" in cli("--version").stdout
    assert "_CONNECTOR_COMPLETE=bash_source" in cli("--help").stdout


def test_refusals_are_not_cached_and_clean_verifications_are() -> None:
    verifier = CredentialVerifier(None, None, "did:web:us", ["did:web:a"], 30.0)  # type: ignore[arg-type]
    calls: list[str] = []
    answers = {"bad": claims_of([], ["revoked"]), "good": claims_of([], [])}

    async def verify(caller: str, token: str | None) -> dict[str, Any]:
        calls.append(caller)
        return answers[caller]

    verifier._verify = verify  # type: ignore[method-assign]

    async def run() -> None:
        for caller in ("bad", "bad", "good", "good"):
            await verifier.claims(caller, "t")

    asyncio.run(run())
    assert calls == ["bad", "bad", "good"]
