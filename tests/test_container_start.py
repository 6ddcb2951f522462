"""The container as a user meets it, without a container engine: the image's own command on an
empty volume, a bind mount the connector's user may not write, a configuration it may not read,
and readiness while its OPA sidecar forgets the policies.

"Another user" is simulated by running the CLI as root without the capabilities that let root
ignore file permissions (`setpriv`), so root-owned mode 0600/0700 paths behave as they do for
uid 10001 in the image."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.config import find_opa
from connector.ports import free_port
from tests.harness import ConnectorProcess, wait_for, wait_http

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
BIN = Path(sys.executable).parent


def _image_cmd() -> list[str]:
    lines = (DEPLOY / "Dockerfile").read_text().splitlines()
    [line] = [x for x in lines if x.startswith("CMD ")]
    cmd: list[str] = json.loads(line.removeprefix("CMD "))
    return cmd


def _volume_config(
    tmp_path: Path, source: Path = DEPLOY / "connector.toml", **extra: str
) -> tuple[Path, Path, int]:
    """The README's configuration for `docker run` as mounted, with an empty data volume;
    only what the container isolates is mapped (its ports, the volume's path)."""
    volume = tmp_path / "volume"
    volume.mkdir()
    port, mgmt = free_port(), free_port()
    text = source.read_text()
    text = text.replace('"0.0.0.0"', '"127.0.0.1"').replace("/var/lib/connector", str(volume))
    text = text.replace("public_port = 8181", f"public_port = {port}")
    text = text.replace("management_port = 8182", f"management_port = {mgmt}")
    text = text.replace("http://localhost:8181", f"http://127.0.0.1:{port}")
    assert f'public_url = "http://127.0.0.1:{port}"' in text
    text += "".join(f"{k} = {v}\n" for k, v in extra.items())
    config = tmp_path / "connector.toml"
    config.write_text(text)
    return config, volume, port


def _env(config: Path) -> dict[str, str]:
    """The image's environment and the README's `-e CONNECTOR_API_KEY=...`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTOR_")}
    return {**base, "CONNECTOR_CONFIG": str(config), "CONNECTOR_API_KEY": "k" * 24}


def test_first_start_of_the_image_makes_its_key_on_the_volume(tmp_path: Path) -> None:
    """The README's `docker run` on an empty volume: the image's CMD starts, with a key."""
    config, volume, port = _volume_config(tmp_path)
    env = _env(config)
    dids = []
    for _ in range(2):  # the second start keeps the identity the first one made
        log = (tmp_path / "serve.log").open("ab")
        proc = subprocess.Popen(
            [str(BIN / "connector"), *_image_cmd()], env=env, stdout=log, stderr=log
        )
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz", timeout=120)
            with urllib.request.urlopen(
                f"http://127.0.0.1:{port}/.well-known/did.json", timeout=5
            ) as resp:
                dids.append(json.loads(resp.read())["verificationMethod"][0]["publicKeyJwk"])
        finally:
            proc.terminate()
            proc.wait(20)
    key = volume / "keys" / "private.pem"
    assert key.stat().st_mode & 0o777 == 0o600
    assert dids[0] == dids[1]
    assert (tmp_path / "serve.log").read_text().count("created a new one") == 1


def test_without_create_key_a_missing_key_says_how_to_make_one(tmp_path: Path) -> None:
    config, volume, _ = _volume_config(tmp_path)
    done = subprocess.run(
        [str(BIN / "connector"), "serve"], env=_env(config), capture_output=True, text=True
    )
    assert done.returncode == 1
    assert "private key not found" in done.stderr and "--create-key" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (volume / "keys" / "private.pem").exists()


def test_a_named_key_file_is_never_created(tmp_path: Path) -> None:
    """A key_file the configuration names is a mounted secret: missing, it is an error."""
    secret = tmp_path / "secret" / "private.pem"
    config, _, _ = _volume_config(tmp_path, key_file=json.dumps(str(secret)))
    done = subprocess.run(
        [str(BIN / "connector"), "serve", "--create-key"],
        env=_env(config),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and "private key not found" in done.stderr
    assert not secret.exists()


# another user's files ---------------------------------------------------------------------

SETPRIV = shutil.which("setpriv")
needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or SETPRIV is None, reason="needs root and setpriv to drop DAC override"
)


def _as_plain_user(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as root without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH/CAP_FOWNER: permissions
    apply, and chmod of another user's directory fails, as for uid 10001 in the image."""
    assert SETPRIV is not None
    return subprocess.run(
        [
            SETPRIV,
            "--inh-caps=-all",
            "--bounding-set=-dac_override,-dac_read_search,-fowner",
            "--",
            sys.executable,
            "-m",
            "connector",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("CONNECTOR_")},
            "CONNECTOR_API_KEY": "k" * 24,
        },
    )


@needs_root
def test_init_on_a_mount_owned_by_another_user_says_so(tmp_path: Path) -> None:
    mount = tmp_path / "mount"
    mount.mkdir(mode=0o755)
    os.chown(mount, 4242, 4242)  # a bind mount owned by someone else
    probe = _as_plain_user("--help")
    assert probe.returncode == 0, probe.stderr
    done = _as_plain_user("init", "--dir", str(mount), "--dev")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "Permission denied" in done.stderr and "uid 4242" in done.stderr
    assert f"chown {os.getuid()} {mount}" in done.stderr
    assert not (mount / "connector.toml").exists()


@needs_root
def test_first_start_on_a_volume_owned_by_another_user_says_so(tmp_path: Path) -> None:
    """`docker run -v /srv/data:/var/lib/connector` with /srv/data root's: no key, no traceback."""
    config, volume, _ = _volume_config(tmp_path)
    os.chown(volume, 4242, 4242)
    done = _as_plain_user("--config", str(config), "serve", "--create-key")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert f"cannot open {volume / 'keys'}: Permission denied" in done.stderr
    assert "uid 4242" in done.stderr and f"chown {os.getuid()} {volume}" in done.stderr


@needs_root
def test_serve_with_an_unreadable_configuration_says_so(tmp_path: Path) -> None:
    config, _, _ = _volume_config(tmp_path)
    os.chown(config, 4242, 4242)
    config.chmod(0o600)
    done = _as_plain_user("--config", str(config), "serve", "--create-key")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert f"cannot read the configuration file {config}: Permission denied" in done.stderr


def test_a_configuration_path_that_is_a_directory_says_so(tmp_path: Path) -> None:
    """`docker run -v ./connector.toml:...` with no such file mounts a directory there."""
    (tmp_path / "connector.toml").mkdir()
    done = subprocess.run(
        [str(BIN / "connector"), "--config", str(tmp_path / "connector.toml"), "serve"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "is a directory" in done.stderr


# readiness with an OPA sidecar ------------------------------------------------------------


@pytest.fixture
def opa_sidecar() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    opa = find_opa()
    assert opa, "make opa installs the opa binary"
    url = f"http://127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [opa, "run", "--server", "--disable-telemetry", "--log-level=error", "--addr", url[7:]],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_http(url + "/health")
    yield url, proc
    proc.terminate()
    proc.wait(10)


def _policy_ids(opa_url: str) -> list[str]:
    with urllib.request.urlopen(opa_url + "/v1/policies", timeout=5) as resp:
        return [p["id"] for p in json.loads(resp.read())["result"]]


def _readyz(node: ConnectorProcess) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(node.base_url + "/readyz", timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_readyz_follows_the_policies_in_the_opa_sidecar(
    tmp_path: Path, opa_sidecar: tuple[str, subprocess.Popen[bytes]]
) -> None:
    opa_url, opa = opa_sidecar
    node = ConnectorProcess(tmp_path, "with-sidecar")
    node.set(policy_engine="opa", opa_url=opa_url)
    node.start()
    try:
        assert _readyz(node)[0] == 200
        ours = set(_policy_ids(opa_url))
        assert ours
        # the sidecar forgets them (a restart of OPA alone): dependents go first
        left = sorted(ours)
        while left:
            for policy_id in list(left):
                req = urllib.request.Request(f"{opa_url}/v1/policies/{policy_id}", method="DELETE")
                try:
                    urllib.request.urlopen(req, timeout=5).close()
                    left.remove(policy_id)
                except urllib.error.HTTPError:
                    pass
        assert _policy_ids(opa_url) == []
        # readiness notices and gives them back before it says ready
        assert _readyz(node)[0] == 200
        assert set(_policy_ids(opa_url)) == ours
        assert "has lost" in node.log_path.read_text()
        # a sidecar that is gone: not ready, and the body names only the check
        opa.terminate()
        opa.wait(10)
        wait_for("readyz 503", lambda: _readyz(node)[0] == 503)
        body = _readyz(node)[1]
        assert body["checks"] == {
            "store": "ok",
            "policies": "failing",
            "outbox": "ok",
            "disk": "ok",
        }
    finally:
        node.stop()
