"""The compose data space, run without a container engine: every service of
`deploy/compose.yaml` started with its own command, environment and the mounted
configuration file, in compose's dependency order, health checks included. What a container
would isolate is mapped: each service's host name to a loopback port of its own, container
paths to temporary directories. The OPA sidecars are real `opa run --server --disable-telemetry`
processes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.config import find_opa
from connector.mgmt_client import ManagementClient
from connector.ports import free_port
from tests.harness import wait_for

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
BIN = Path(sys.executable).parent  # `connector` is on the image's PATH; here, the venv's


def _image_exec(instruction: str) -> list[str]:
    """The image's ENTRYPOINT or CMD (exec form), as deploy/Dockerfile writes it."""
    lines = (DEPLOY / "Dockerfile").read_text().splitlines()
    [line] = [x for x in lines if x.startswith(instruction + " ")]
    value: list[str] = json.loads(line.removeprefix(instruction + " "))
    return value


IMAGE_ENTRYPOINT, IMAGE_CMD = _image_exec("ENTRYPOINT"), _image_exec("CMD")
IMAGE_HEALTHCHECK = [sys.executable, "-m", "connector.observability.probe", "healthz"]


def interpolate(text: str) -> str:
    """Compose's own pass over the file: ${VAR:-default} with VAR unset, and $$ -> $."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", text).replace("$$", "$")


class Space:
    """The compose services as processes; `mapped` rewrites one service's view of names."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.compose: dict[str, Any] = yaml.safe_load(
            interpolate((DEPLOY / "compose.yaml").read_text())
        )
        self.services: dict[str, Any] = self.compose["services"]
        self.ports: dict[str, int] = {}  # "host:port" inside compose -> loopback port
        for name, svc in self.services.items():
            if "CONNECTOR_PUBLIC_URL" in svc.get("environment", {}):
                self.ports[f"{name}:8181"] = free_port()
                self.ports[f"{name}:8182"] = free_port()
            elif name.endswith("-opa"):
                self.ports[f"{name}:8181"] = free_port()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        opa = find_opa()
        assert opa, "make opa installs the opa binary"
        self.opa = opa

    def volume_dir(self, svc: dict[str, Any]) -> Path:
        [volume] = [v for v in svc.get("volumes", []) if v.endswith(":/var/lib/connector")]
        path = self.root / volume.split(":")[0]
        path.mkdir(exist_ok=True)
        return path

    def mapped(self, text: str, svc: dict[str, Any]) -> str:
        """Host names and container paths as this machine sees them."""
        for where, port in sorted(self.ports.items(), key=lambda kv: -len(kv[0])):
            host, inner = where.split(":")
            text = text.replace(f"did:web:{host}%3A{inner}", f"did:web:127.0.0.1%3A{port}")
            text = text.replace(f"//{where}", f"//127.0.0.1:{port}")
            text = text.replace(f'"{where}"', f'"127.0.0.1:{port}"')  # egress_allow
        if any(v.endswith(":/var/lib/connector") for v in svc.get("volumes", [])):
            text = text.replace("/var/lib/connector", str(self.volume_dir(svc)))
        return text.replace("/tmp/init", str(self.root / "init" / str(id(svc))))

    def env(self, name: str) -> dict[str, str]:
        svc = self.services[name]
        own = {k: self.mapped(str(v), svc) for k, v in svc.get("environment", {}).items()}
        base = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTOR_")}
        config = self.config(name) if "configs" in svc else None
        extra = {"CONNECTOR_CONFIG": str(config)} if config else {}
        return {**base, "PATH": f"{BIN}{os.pathsep}{base['PATH']}", **own, **extra}

    def config(self, name: str) -> Path:
        """The mounted file; in its own network namespace each service binds 0.0.0.0:8181
        and :8182, here each binds loopback ports of its own."""
        svc = self.services[name]
        [mount] = svc["configs"]
        text = (DEPLOY / self.compose["configs"][mount["source"]]["file"]).read_text()
        text = self.mapped(text, svc).replace('"0.0.0.0"', '"127.0.0.1"')
        text = text.replace("public_port = 8181", f"public_port = {self.ports[f'{name}:8181']}")
        text = text.replace(
            "management_port = 8182", f"management_port = {self.ports[f'{name}:8182']}"
        )
        path = self.root / f"{name}.toml"
        path.write_text(text)
        return path

    def run_once(self, name: str) -> subprocess.CompletedProcess[str]:
        """A one-shot service: its entrypoint (a shell) with its command."""
        svc = self.services[name]
        assert svc["entrypoint"] == ["/bin/sh", "-c"]
        script = self.mapped(svc["command"][0], svc)
        return subprocess.run(
            ["/bin/sh", "-c", script], env=self.env(name), capture_output=True, text=True
        )

    def start_opa(self, name: str) -> None:
        svc = self.services[name]
        port = self.ports[f"{name}:8181"]
        args = [a.replace("0.0.0.0:8181", f"127.0.0.1:{port}") for a in svc["command"]]
        log = (self.root / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen([self.opa, *args], stdout=log, stderr=subprocess.STDOUT)
        check = [
            a.replace("127.0.0.1:8181", f"127.0.0.1:{port}") for a in svc["healthcheck"]["test"]
        ]
        assert check[:2] == ["CMD", "/opa"]
        wait_for(
            f"{name} healthy",
            lambda: subprocess.run([self.opa, *check[2:]], capture_output=True).returncode == 0,
        )

    def start_connector(self, name: str) -> ManagementClient:
        env = self.env(name)
        log = (self.root / f"{name}.log").open("ab")
        cmd = [str(BIN / IMAGE_ENTRYPOINT[0]), *IMAGE_CMD]
        self.procs[name] = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)

        def healthy() -> bool:
            proc = self.procs[name]
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited: {(self.root / f'{name}.log').read_text()}")
            return subprocess.run(IMAGE_HEALTHCHECK, env=env, capture_output=True).returncode == 0

        wait_for(f"{name} healthy", healthy, timeout=60)
        return ManagementClient(
            f"http://127.0.0.1:{self.ports[f'{name}:8182']}", env["CONNECTOR_API_KEY"]
        )

    def close(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def space(tmp_path: Path) -> Iterator[Space]:
    s = Space(tmp_path)
    yield s
    s.close()


def test_the_compose_data_space_runs_as_configured(space: Space, tmp_path: Path) -> None:
    services = space.services
    members = [
        n for n, svc in services.items()
        if "CONNECTOR_PUBLIC_URL" in svc.get("environment", {}) and n != "authority"
    ]  # fmt: skip
    assert set(members) == {"factory", "supplier", "logistics"}

    for name in [n for n in services if n.endswith("-keys")]:
        done = space.run_once(name)
        assert done.returncode == 0, done.stderr
        key = space.volume_dir(services[name]) / "keys" / "private.pem"
        assert key.exists()
        again = space.run_once(name)  # a later `up` keeps the key
        assert again.returncode == 0 and key.exists()

    authority = space.start_connector("authority")
    done = space.run_once("onboarding")
    assert done.returncode == 0, done.stdout + done.stderr
    again = space.run_once("onboarding")  # a later `up` leaves registered members alone
    assert again.returncode == 0, again.stdout + again.stderr
    registry = authority.get("/api/v1/authority/participants")
    assert sorted(p["name"] for p in registry) == sorted([*members, "portal"])

    apis: dict[str, ManagementClient] = {}
    for name in members:
        space.start_opa(f"{name}-opa")
        apis[name] = space.start_connector(name)
        held = {c["type"] for c in apis[name].get("/api/v1/credentials")}
        assert held == {"MembershipCredential", "RoleCredential"}, name

    # the factory publishes; the supplier, a member, finds it, negotiates and pulls it
    data = tmp_path / "parts.csv"
    data.write_bytes(b"part,qty\n" * 20_000)
    apis["factory"].post(
        "/api/v1/datasets",
        {"id": "parts", "title": "Parts", "source": {"type": "file", "path": str(data)}},
    )
    factory_dsp = space.mapped("http://factory:8181/dsp/2025-1", {})
    catalog = apis["supplier"].post("/api/v1/catalog/request", {"counterPartyAddress": factory_dsp})
    [dataset] = catalog["dataset"]
    neg = apis["supplier"].post(
        "/api/v1/negotiations",
        {
            "counterPartyAddress": factory_dsp,
            "datasetId": "parts",
            "offer": dataset["hasPolicy"][0],
        },
    )
    done_neg = apis["supplier"].wait_state("negotiations", neg["id"], {"FINALIZED"}, timeout=30)
    tp = apis["supplier"].post("/api/v1/transfers", {"agreementId": done_neg["agreement_id"]})
    moved = apis["supplier"].wait_state("transfers", tp["id"], {"COMPLETED"}, timeout=30)
    assert moved["bytes"] == data.stat().st_size
    # the factory decided on the supplier's credentials, verified against the authority
    [theirs] = apis["factory"].get("/api/v1/negotiations")
    claims = theirs["counterparty_credentials"]
    assert claims["membership"] is True and claims["roles"] == ["supplier"]
    # the factory's policies were decided by its own OPA sidecar
    decisions = apis["factory"].get("/api/v1/decisions")
    assert decisions and all(d["engine"] == "opa" for d in decisions), decisions[:1]

    # the authority's portal, a member too, crawls the registry's members and finds the dataset
    wait_for("the portal's credentials", lambda: authority.get("/api/v1/credentials"), timeout=60)
    crawled = authority.post("/api/v1/federated-catalog/crawl", {})
    assert crawled["failed"] == 0 and crawled["sourceErrors"] == [], crawled
    hits = authority.get("/api/v1/federated-catalog/datasets?q=parts")["hits"]
    assert [h["member"]["name"] for h in hits] == ["factory"]
