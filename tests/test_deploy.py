"""The deployment files agree with the connector: settings, ports, probes, pinned versions.

Schema validity is `make deploy-check`'s job (hadolint, compose-go, helm lint, kubeconform);
these tests check what no schema knows, such as a CONNECTOR_* variable naming a real setting
or each connector's OPA sidecar being reachable from that connector only.
"""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import ValidationError

import connector.config
from connector.config import Settings, load_settings
from connector.identity.did import did_from_url

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "connector"
HELM = ROOT / ".tools" / "bin" / "helm"
NOT_SETTINGS = {"CONNECTOR_CONFIG"}  # read by the CLI, not a setting


def opa_version() -> str:
    """The OPA version the Makefile pins, without the v."""
    found = re.search(r"^OPA_VERSION := v(\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert found
    return found.group(1)


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} with VAR unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def settings_from_env(env: dict[str, str]) -> dict[str, str]:
    names = {k for k in env if k.startswith("CONNECTOR_")} - NOT_SETTINGS
    unknown = {n for n in names if n[len("CONNECTOR_") :].lower() not in Settings.model_fields}
    assert not unknown, f"not settings: {sorted(unknown)}"
    return {n.removeprefix("CONNECTOR_").lower(): interpolate(env[n]) for n in names}


def service_settings(config: Path, env: dict[str, str]) -> Settings:
    """The settings a service gets: the file, and its variables read as the environment
    (as the server reads them: lists as JSON)."""
    given = {f"CONNECTOR_{k.upper()}": v for k, v in settings_from_env(env).items()}
    kept = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTOR_")}
    with mock.patch.dict(os.environ, {**kept, **given}, clear=True):
        return load_settings(config)


# compose ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


def connectors(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The members' connectors (the authority runs the same image, in its own role)."""
    return {
        name: svc
        for name, svc in compose["services"].items()
        if "CONNECTOR_PUBLIC_URL" in svc.get("environment", {})
        and "CONNECTOR_AUTHORITY" not in svc["environment"]
    }


def test_compose_has_a_small_data_space(compose: dict[str, Any]) -> None:
    nodes = connectors(compose)
    assert len(nodes) >= 2
    for svc in compose["services"].values():
        for name, cond in svc.get("depends_on", {}).items():
            assert name in compose["services"], name
            assert cond["condition"] in {"service_healthy", "service_completed_successfully"}
        for volume in svc.get("volumes", []):
            assert volume.split(":")[0] in compose["volumes"], volume
        for net in svc.get("networks", []):
            assert net in compose["networks"], net
    published = [p.rsplit(":", 1)[0] for s in nodes.values() for p in s["ports"]]
    assert len(published) == len(set(published)), "host ports collide"
    assert all(p.startswith("127.0.0.1:") for p in published), "publish on loopback only"


def test_each_connector_has_its_own_opa_sidecar(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, svc in connectors(compose).items():
        sidecar = services[f"{name}-opa"]
        assert sidecar["image"] == f"openpolicyagent/opa:{opa_version()}"
        assert sidecar["networks"] == [name], "OPA must not be on the shared network"
        assert compose["networks"][name] == {"internal": True}
        assert set(svc["networks"]) == {"dataspace", name}
        assert svc["depends_on"][f"{name}-opa"] == {"condition": "service_healthy"}
        assert svc["depends_on"][f"{name}-keys"] == {"condition": "service_completed_successfully"}
        assert "connector init" in services[f"{name}-keys"]["command"][0]
        env = svc["environment"]
        assert urlsplit(env["CONNECTOR_OPA_URL"]).hostname == f"{name}-opa"
        assert urlsplit(env["CONNECTOR_PUBLIC_URL"]).hostname == name


def test_compose_settings_are_valid(compose: dict[str, Any]) -> None:
    """The mounted file plus each service's variables pass the connector's own validation."""
    config = DEPLOY / "compose" / "connector.toml"
    for name, svc in connectors(compose).items():
        settings = service_settings(config, svc["environment"])
        assert settings.name == name
        assert settings.policy_engine == "opa"
        assert settings.public_host == settings.management_host == "0.0.0.0"
        assert settings.data_dir == Path("/var/lib/connector")
        assert settings.log_format == "json"
        target = svc["configs"][0]["target"]
        assert target == "/etc/connector/connector.toml"
        assert compose["configs"][svc["configs"][0]["source"]]["file"] == "./compose/connector.toml"


def test_compose_members_take_credentials_from_the_authority(compose: dict[str, Any]) -> None:
    services = compose["services"]
    authority = services["authority"]
    config = DEPLOY / "compose" / "connector.toml"
    settings = service_settings(config, authority["environment"])
    assert settings.authority and settings.federated_catalog
    assert settings.registry_url == f"{settings.public_url}/authority/v1/participants"
    assert set(authority["networks"]) == {"dataspace"}
    onboarding = services["onboarding"]
    assert onboarding["depends_on"] == {"authority": {"condition": "service_healthy"}}
    assert urlsplit(onboarding["environment"]["CONNECTOR_API_URL"]).hostname == "authority"
    script = onboarding["command"][0]
    for name, svc in connectors(compose).items():
        assert f"onboard did:web:{name}%3A8181" in script, f"{name} is not onboarded"
        member = service_settings(config, svc["environment"])
        assert member.issuer_url == settings.public_url
        assert member.trusted_issuers == [did_from_url(settings.public_url)]
        assert member.require_membership
        assert svc["depends_on"]["onboarding"] == {"condition": "service_completed_successfully"}


# Dockerfile ---------------------------------------------------------------------------------


def final_stage(text: str) -> list[str]:
    joined = re.sub(r"\\\n\s*", " ", text)
    lines = [x.strip() for x in joined.splitlines() if x.strip() and not x.startswith("#")]
    start = max(i for i, x in enumerate(lines) if x.startswith("FROM "))
    return lines[start:]


def test_dockerfile_runtime_stage() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    stage = final_stage(text)
    base = re.fullmatch(r"FROM python:(\d+)\.(\d+)\.\d+-slim-\w+", stage[0])
    assert base, stage[0]
    user = next(x for x in stage if x.startswith("USER "))
    uid = user.split()[1].split(":")[0]
    assert uid.isdigit() and int(uid) > 0, "numeric non-root user (runAsNonRoot can check it)"
    assert f"ARG OPA_VERSION=v{opa_version()}" in text
    # The package looks for its default library beside itself: site-packages/policies.
    assert Path(connector.config.__file__).resolve().parent.parent / "policies" == (
        Settings(data_dir=Path("/x"), api_key="k" * 16).policy_folder
    )
    site = f"/opt/venv/lib/python{base.group(1)}.{base.group(2)}/site-packages/policies"
    assert f"COPY policies {site}" in stage
    env = " ".join(x for x in stage if x.startswith("ENV "))
    assert re.findall(r"CONNECTOR_\w+", env) == ["CONNECTOR_CONFIG"], "settings stay the file's"
    assert 'ENTRYPOINT ["connector"]' in stage
    assert any("connector.observability.probe" in x for x in stage if x.startswith("HEALTHCHECK"))
    assert 'VOLUME ["/var/lib/connector"]' in stage
    # healthy as soon as it answers: probed every 2 s while starting, not first after 30 s
    check = next(x for x in stage if x.startswith("HEALTHCHECK"))
    assert "--start-period=" in check and "--start-interval=2s" in check
    # the first start on an empty volume makes its key (tests/test_container_start.py)
    assert 'CMD ["serve", "--create-key"]' in stage


def test_the_docker_run_configuration_is_valid() -> None:
    """deploy/connector.toml, with the README's `-e CONNECTOR_API_KEY`: listeners reachable
    through published ports, state on the volume, no secret in the file."""
    config = DEPLOY / "connector.toml"
    assert "api_key" not in config.read_text()
    settings = service_settings(config, {"CONNECTOR_API_KEY": "k" * 24})
    assert settings.public_host == settings.management_host == "0.0.0.0"
    assert (settings.public_port, settings.management_port) == (8181, 8182)
    assert settings.data_dir == Path("/var/lib/connector") and settings.key_file is None


def test_no_service_leaves_an_anonymous_volume(compose: dict[str, Any]) -> None:
    """The image declares VOLUME /var/lib/connector: a service of that image without a named
    volume or a tmpfs there would leave an anonymous volume behind on every run."""
    for name, svc in compose["services"].items():
        if not str(svc.get("image", "")).startswith("tdsc-connector:"):
            continue
        named = [v for v in svc.get("volumes", []) if v.endswith(":/var/lib/connector")]
        assert named or "/var/lib/connector" in svc.get("tmpfs", []), name


# Helm chart ---------------------------------------------------------------------------------


def helm_template(*args: str) -> subprocess.CompletedProcess[str]:
    if not HELM.exists():
        pytest.skip("helm is not built: make deploy-check")
    return subprocess.run(
        [str(HELM), "template", "t", str(CHART), "--kube-version", "1.33.0", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def rendered(*args: str) -> dict[str, dict[str, Any]]:
    done = helm_template(*args)
    assert done.returncode == 0, done.stderr
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}


@pytest.mark.parametrize("values", ["sqlite", "https", "postgresql"])
def test_chart_renders_a_working_pod(values: str) -> None:
    docs = rendered("-f", str(CHART / "ci" / f"{values}-values.yaml"))
    pod = docs["Deployment/t-connector"]["spec"]["template"]["spec"]
    (main,) = pod["containers"]
    (opa,) = pod["initContainers"]
    assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert main["resources"]["limits"] and opa["resources"]["limits"]
    assert opa["restartPolicy"] == "Always"  # a native sidecar: up before the connector
    assert opa["image"] == f"openpolicyagent/opa:{opa_version()}"
    assert pod["securityContext"]["runAsNonRoot"] is True
    # The rendered connector.toml, with the API key from its Secret, is a valid configuration
    # whose OPA URL is the sidecar's loopback address.
    file = tomllib.loads(docs["ConfigMap/t-connector"]["data"]["connector.toml"])
    settings = Settings(**file, api_key="from-the-secret-key")
    assert settings.opa_url == f"http://127.0.0.1:{opa['args'][2].rsplit(':', 1)[1]}"
    assert main["env"][0]["name"] == "CONNECTOR_API_KEY"
    mounts = {m["mountPath"] for m in main["volumeMounts"]}
    assert {"/etc/connector/connector.toml", "/etc/connector/keys", "/var/lib/connector"} <= mounts
    assert str(settings.private_key_path).startswith("/etc/connector/keys/")


def test_chart_sets_data_space_membership() -> None:
    docs = rendered("-f", str(CHART / "ci" / "https-values.yaml"))
    file = tomllib.loads(docs["ConfigMap/t-connector"]["data"]["connector.toml"])
    settings = Settings(**file, api_key="from-the-secret-key")
    assert settings.issuer_url == "https://authority.example.org"
    assert settings.trusted_issuers == ["did:web:authority.example.org"]
    assert settings.require_membership is True
    refused = helm_template(
        "--set", "connector.publicUrl=https://x.org",
        "--set", "connector.dataspace.requireMembership=true",
    )  # fmt: skip
    assert refused.returncode != 0 and "needs connector.dataspace.trustedIssuers" in refused.stderr


def test_chart_scales_out_on_postgresql_only() -> None:
    values = str(CHART / "ci" / "sqlite-values.yaml")
    done = helm_template("-f", values, "--set", "replicaCount=2")
    assert done.returncode != 0
    assert "replicaCount > 1 needs the PostgreSQL store" in done.stderr
    done = helm_template(
        "-f", values, "--set", "replicaCount=2", "--set", "postgresql.existingSecret=pg"
    )
    assert done.returncode != 0
    assert "set persistence.accessModes to [ReadWriteMany]" in done.stderr
    docs = rendered("-f", str(CHART / "ci" / "postgresql-values.yaml"))
    deployment = docs["Deployment/t-connector"]["spec"]
    assert deployment["replicas"] == 2
    assert "strategy" not in deployment  # rolling updates: the replicas share the database
    (main,) = deployment["template"]["spec"]["containers"]
    [db] = [e for e in main["env"] if e["name"] == "CONNECTOR_DATABASE_URL"]
    assert db["valueFrom"]["secretKeyRef"] == {"name": "connector-database", "key": "url"}
    claim = docs["PersistentVolumeClaim/t-connector-data"]["spec"]
    assert claim["accessModes"] == ["ReadWriteMany"]
    # every replica signs with the one key from the Secret and has one public URL
    file = tomllib.loads(docs["ConfigMap/t-connector"]["data"]["connector.toml"])
    settings = Settings(**file, api_key="k" * 16, database_url="postgresql://u:p@db:5432/connector")
    assert str(settings.private_key_path) == "/etc/connector/keys/private.pem"
    assert settings.public_url == "https://connector.example.org"


def test_the_connector_takes_only_a_postgresql_database_url() -> None:
    with pytest.raises(ValidationError, match="database_url must be a postgresql:// URL"):
        Settings(data_dir="/tmp/x", api_key="k" * 16, database_url="mysql://db/connector")
    ok = Settings(data_dir="/tmp/x", api_key="k" * 16, database_url="postgresql://db/connector")
    assert ok.database_url is not None


def test_chart_refuses_overriding_what_it_sets() -> None:
    done = helm_template(
        "-f",
        str(CHART / "ci" / "sqlite-values.yaml"),
        "--set",
        "connector.extraConfig.policy_engine=embedded",
    )
    assert done.returncode != 0
    assert "the chart sets policy_engine itself" in done.stderr
