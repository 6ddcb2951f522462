"""Rego engines behind one interface: embedded (OPA compiled to Wasm) or an OPA server."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from connector.errors import ConnectorError
from connector.policy.wasm import WasmPolicy, WasmPolicyError, compile_to_wasm

QUERY = "data.connector.decision.decision"
PACKAGE = "connector.decision"
ENTRYPOINT = "connector/decision/decision"

log = logging.getLogger(__name__)


class PolicyError(ConnectorError):
    """The policy bundle does not compile, fails its tests, or an engine cannot evaluate it."""


@dataclass(frozen=True)
class PolicyBundle:
    """The Rego modules of a policies folder; the version is their content digest."""

    modules: dict[str, str]
    tests: dict[str, str]
    version: str

    @classmethod
    def load(cls, folder: Path) -> PolicyBundle:
        if not folder.is_dir():
            raise PolicyError(f"policies folder not found: {folder}")
        modules: dict[str, str] = {}
        tests: dict[str, str] = {}
        digest = hashlib.sha256()
        for path in sorted(folder.rglob("*.rego")):
            rel = path.relative_to(folder).as_posix()
            text = path.read_text(encoding="utf-8")
            digest.update(rel.encode() + b"\0" + text.encode() + b"\0")
            (tests if path.stem.endswith("_test") else modules)[rel] = text
        if not modules:
            raise PolicyError(f"no Rego modules in {folder}")
        return cls(modules=modules, tests=tests, version=digest.hexdigest()[:16])


class Engine(Protocol):
    name: str

    async def load(self, bundle: PolicyBundle) -> None: ...
    async def evaluate(self, decision_input: dict[str, Any]) -> dict[str, Any]: ...
    async def ready(self) -> bool: ...
    async def close(self) -> None: ...


class EmbeddedEngine:
    """The policies compiled to Wasm by the real opa and run in process by wasmtime.

    OPA's own compiler decides the semantics, so the embedded engine and an OPA sidecar agree
    by construction; there is no network hop and no second Rego implementation.
    """

    name = "embedded"

    def __init__(self, opa_bin: str) -> None:
        self.opa_bin = opa_bin
        self._policy: WasmPolicy | None = None

    async def load(self, bundle: PolicyBundle) -> None:
        try:
            wasm = await asyncio.to_thread(
                compile_to_wasm, self.opa_bin, bundle.modules, ENTRYPOINT
            )
            policy = await asyncio.to_thread(WasmPolicy, wasm, ENTRYPOINT)
            probe = policy.evaluate({"phase": "catalog"})
        except WasmPolicyError as exc:
            raise PolicyError(str(exc)) from exc
        if not isinstance(probe, dict):
            raise PolicyError(f"{QUERY} is not defined by the policies (got {probe!r})")
        self._policy = policy

    async def evaluate(self, decision_input: dict[str, Any]) -> dict[str, Any]:
        if self._policy is None:
            raise PolicyError("no policies loaded")
        try:
            out = self._policy.evaluate(decision_input)
        except WasmPolicyError as exc:
            raise PolicyError(str(exc)) from exc
        if not isinstance(out, dict):
            raise PolicyError(f"{QUERY} returned no decision")
        return out

    async def ready(self) -> bool:
        """The library is compiled and in this process: nothing can take it away."""
        return self._policy is not None

    async def close(self) -> None:
        self._policy = None


class OpaServerEngine:
    """An OPA server (sidecar) through opa-python-client; the connector uploads its policies."""

    name = "opa"

    def __init__(self, url: str) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 8181
        self._ssl = parts.scheme == "https"
        self._client: Any = None
        self._uploaded: set[str] = set()
        self._bundle: PolicyBundle | None = None

    async def _connect(self) -> Any:
        if self._client is None:
            from opa_client.opa_async import AsyncOpaClient

            client = AsyncOpaClient(host=self._host, port=self._port, ssl=self._ssl, timeout=5)
            await client.__aenter__()
            self._client = client
        return self._client

    async def load(self, bundle: PolicyBundle) -> None:
        client = await self._connect()
        # OPA compiles each uploaded module against those already there: upload in passes
        # until every module that depends on another has found it.
        pending = dict(bundle.modules)
        while pending:
            errors: dict[str, Exception] = {}
            for name, text in pending.items():
                try:
                    await client.update_policy_from_string(
                        text, _policy_id(name), rego_compat=False
                    )
                except Exception as exc:
                    errors[name] = exc
            if len(errors) == len(pending):
                first = next(iter(errors.items()))
                raise PolicyError(f"OPA server refused the policies ({first[0]}): {first[1]}")
            pending = {n: pending[n] for n in errors}
        try:
            for stale in self._uploaded - {_policy_id(n) for n in bundle.modules}:
                await client.delete_policy(stale)
        except Exception as exc:
            raise PolicyError(f"OPA server refused to drop old policies: {exc}") from exc
        self._uploaded = {_policy_id(n) for n in bundle.modules}
        self._bundle = bundle

    async def evaluate(self, decision_input: dict[str, Any]) -> dict[str, Any]:
        result = await self._query(decision_input)
        if result is None and self._bundle is not None:
            # a restarted sidecar has forgotten the policies: upload them again, ask again
            await self.load(self._bundle)
            result = await self._query(decision_input)
        if result is None:
            raise PolicyError(f"{QUERY} returned no decision from the OPA server")
        return result

    async def ready(self) -> bool:
        """The server holds every module we uploaded. A sidecar that restarted (or had its
        policies deleted) gets them again here: readiness is asked every few seconds, while a
        connector marked not ready would get no traffic and so no decision that re-uploads."""
        if self._bundle is None:
            return False
        try:
            client = await self._connect()
            missing = self._uploaded - set(await client.get_policies_list())
            if missing:
                log.warning(
                    "the OPA server at %s:%d has lost %d of our %d policies; uploading them again",
                    self._host,
                    self._port,
                    len(missing),
                    len(self._uploaded),
                )
                await self.load(self._bundle)
                missing = self._uploaded - set(await client.get_policies_list())
        except Exception as exc:
            log.warning("readiness: the OPA server at %s:%d: %s", self._host, self._port, exc)
            return False
        return not missing

    async def _query(self, decision_input: dict[str, Any]) -> dict[str, Any] | None:
        client = await self._connect()
        try:
            answer = await client.query_rule(decision_input, PACKAGE, "decision")
        except Exception as exc:
            raise PolicyError(f"OPA server query failed: {exc}") from exc
        result = answer.get("result") if isinstance(answer, dict) else None
        return result if isinstance(result, dict) else None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close_connection()
            self._client = None


def _policy_id(name: str) -> str:
    return "tdsc/" + name.removesuffix(".rego").replace("/", "_")
