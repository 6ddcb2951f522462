"""Finding 9: an empty (or short) API key opened the management API. The connector must refuse
to start with a key shorter than 16 characters, naming the setting, without a traceback; and
every key the project generates or ships for development must pass that check."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from connector.config import MIN_API_KEY_LENGTH
from tests.harness import ConnectorProcess, cli

ROOT = Path(__file__).resolve().parents[2]


def _init(tmp_path: Path) -> Path:
    node = ConnectorProcess(tmp_path, "provider")
    return node.config


def _without_key(config: Path) -> str:
    return "\n".join(
        line for line in config.read_text().splitlines() if not line.startswith("api_key")
    )


@pytest.mark.parametrize("key", ["", " " * 20, "fifteen-chars-x"])
def test_serve_refuses_a_short_key_in_the_file(tmp_path: Path, key: str) -> None:
    config = _init(tmp_path)
    config.write_text(_without_key(config) + f"\napi_key = {json.dumps(key)}\n")
    done = cli("--config", str(config), "serve")
    assert done.returncode != 0
    assert "api_key" in done.stderr and "16 characters" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("key", ["", "0123456789abcde"])
def test_serve_refuses_a_short_key_from_the_environment(tmp_path: Path, key: str) -> None:
    config = _init(tmp_path)
    done = cli("--config", str(config), "serve", env={"CONNECTOR_API_KEY": key})
    assert done.returncode != 0
    assert "CONNECTOR_API_KEY" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_a_sixteen_character_key_opens_the_api_and_nothing_else_does(tmp_path: Path) -> None:
    node = ConnectorProcess(tmp_path, "provider")
    node.set(api_key="0123456789abcdef")
    node.settings["api_key"] = "0123456789abcdef"
    try:
        node.start()
        assert node.api.get("/api/v1/datasets") is not None
    finally:
        node.stop()


def test_init_generates_long_distinct_keys(tmp_path: Path) -> None:
    keys = {
        str(tomllib.loads(ConnectorProcess(tmp_path, f"n{i}").config.read_text())["api_key"])
        for i in range(3)
    }
    assert len(keys) == 3
    assert all(len(k) >= 32 for k in keys)


def _compose_keys() -> list[str]:
    text = (ROOT / "deploy" / "compose.yaml").read_text()
    found = re.findall(r"CONNECTOR_API_KEY:\s*\$\{\w+:-([^}]*)\}", text)
    assert found, "compose.yaml names no CONNECTOR_API_KEY default"
    return found


def _helm_keys() -> list[str]:
    keys = []
    for path in sorted((ROOT / "deploy" / "helm" / "connector").rglob("*values.yaml")):
        values = yaml.safe_load(path.read_text()) or {}
        value = (values.get("apiKey") or {}).get("value")
        if value:
            keys.append(str(value))
    return keys


def test_shipped_development_keys_are_long_enough() -> None:
    shipped = _compose_keys() + _helm_keys()
    assert shipped
    short = [k for k in shipped if len(k) < MIN_API_KEY_LENGTH]
    assert not short, f"development keys shorter than {MIN_API_KEY_LENGTH}: {short}"
