"""The Rego decision point: normalise, ask the engine, log, and hot-reload the policies.

A new policy version replaces the working one only after it compiles in the engine and its
`*_test.rego` unit tests pass (when an `opa` binary is configured); otherwise the operator is
told why and the working version stays.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import subprocess
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connector.model.records import DecisionRecord, utcnow
from connector.policy.decision import Decision, DecisionInput
from connector.policy.engines import Engine, PolicyBundle, PolicyError
from connector.policy.odrl import UndecidablePolicy, normalise
from connector.policy.reads import reads_dataset_identity

log = logging.getLogger(__name__)


def run_opa_tests(opa_bin: str, folder: Path) -> tuple[bool, str]:
    """`opa test` on the folder; returns (passed, output)."""
    try:
        done = subprocess.run(
            [opa_bin, "test", str(folder)], capture_output=True, text=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"cannot run {opa_bin} test: {exc}"
    return done.returncode == 0, (done.stdout + done.stderr).strip()


FORGET_EVERY = timedelta(hours=1)


def decision_inputs_keeper(
    days: float,
) -> Callable[[list[DecisionRecord]], tuple[list[DecisionRecord], str | None]]:
    """What the decision log keeps of inputs: none with `days` 0; else each input, and at most
    once an hour the time before which kept inputs are forgotten (their digests stay)."""
    last: list[datetime] = []

    def keep(records: list[DecisionRecord]) -> tuple[list[DecisionRecord], str | None]:
        if days <= 0:
            return [r.model_copy(update={"input": None}) for r in records], None
        now = datetime.now(UTC)
        if last and now - last[0] < FORGET_EVERY:
            return records, None
        last[:] = [now]
        before = (now - timedelta(days=days)).isoformat(timespec="milliseconds")
        before = before.replace("+00:00", "Z")
        return records, before

    return keep


class RegoDecisionPoint:
    def __init__(
        self,
        engine: Engine,
        folder: Path,
        record: Callable[[list[DecisionRecord]], Awaitable[None]] | None = None,
        *,
        opa_bin: str | None = None,
    ) -> None:
        """`record` keeps the decision log (the store's writer); None keeps none (the CLI)."""
        self.engine = engine
        self.folder = folder
        self._record = record
        self.opa_bin = opa_bin
        self.version = ""
        # False when the library reads only a dataset's classification and owner: the
        # catalog may then share one decision between datasets (connector/policy/reads.py)
        self.reads_dataset_id = True
        self.loaded_at: str | None = None
        self.last_error: str | None = None
        self._fingerprint: tuple[tuple[str, float, int], ...] = ()
        self._watcher: asyncio.Task[None] | None = None

    # loading ---------------------------------------------------------------------------------

    def _scan(self) -> tuple[tuple[str, float, int], ...]:
        return tuple(
            (str(p), p.stat().st_mtime, p.stat().st_size)
            for p in sorted(self.folder.rglob("*.rego"))
        )

    async def load(self) -> None:
        """Load or reload; raises PolicyError (and keeps the working version) on failure."""
        fingerprint = self._scan()
        try:
            bundle = PolicyBundle.load(self.folder)
            if bundle.version == self.version:
                self._fingerprint = fingerprint
                return
            if self.opa_bin and bundle.tests:
                passed, output = await asyncio.to_thread(run_opa_tests, self.opa_bin, self.folder)
                if not passed:
                    raise PolicyError(
                        f"policy tests failed; keeping {self.version or 'none'}:\n{output}"
                    )
            await self.engine.load(bundle)
        except PolicyError as exc:
            self._fingerprint = fingerprint
            self.last_error = exc.detail
            log.error("policy reload refused: %s", exc.detail)
            raise
        self._fingerprint = fingerprint
        self.reads_dataset_id = reads_dataset_identity(bundle.modules)
        self.version = bundle.version
        self.loaded_at = utcnow()
        self.last_error = None
        log.info("policies %s loaded into the %s engine", self.version, self.engine.name)

    def watch(self, interval: float = 1.0) -> None:
        self._watcher = asyncio.create_task(self._watch(interval))

    async def _watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                if self._scan() != self._fingerprint:
                    await self.load()
            except PolicyError:
                pass
            except Exception:
                log.exception("policy watcher failed")

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        await self.engine.close()

    def status(self) -> dict[str, Any]:
        return {
            "engine": self.engine.name,
            "version": self.version,
            "loaded_at": self.loaded_at,
            "folder": str(self.folder),
            "last_error": self.last_error,
        }

    # deciding --------------------------------------------------------------------------------

    def build_input(self, decision_input: DecisionInput) -> dict[str, Any]:
        data = decision_input.model_dump(mode="json")
        data["policy"] = normalise(decision_input.policy)
        return data

    async def decide(self, decision_input: DecisionInput) -> Decision:
        decision, record = await self._decide(decision_input)
        if self._record is not None:
            await self._record([record])
        return decision

    async def decide_unlogged(self, decision_input: DecisionInput) -> Decision:
        """A decision the decision log does not keep: a what-if or a replay."""
        decision, _ = await self._decide(decision_input)
        return decision

    async def decide_many(self, inputs: list[DecisionInput]) -> list[Decision]:
        pairs = [await self._decide(i) for i in inputs]
        if self._record is not None:
            await self._record([record for _, record in pairs])
        return [decision for decision, _ in pairs]

    async def _decide(self, decision_input: DecisionInput) -> tuple[Decision, DecisionRecord]:
        try:
            data = self.build_input(decision_input)
            raw = await self.engine.evaluate(data)
            decision = Decision(
                allow=bool(raw.get("allow")),
                reasons=[str(r) for r in raw.get("reasons") or []],
                obligations=list(raw.get("obligations") or []),
                limits=dict(raw.get("limits") or {}),
                engine=self.engine.name,
            )
        except (PolicyError, UndecidablePolicy) as exc:
            data = decision_input.model_dump(mode="json")
            decision = Decision(allow=False, reasons=exc.reasons, engine=self.engine.name)
        if not decision.allow and not decision.reasons:
            decision.reasons = ["denied by policy"]
        record = DecisionRecord(
            phase=decision_input.phase.value,
            process_id=decision_input.request.get("process_id"),
            dataset_id=decision_input.dataset.get("id"),
            consumer_id=decision_input.consumer.id,
            input_sha256=hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest(),
            allow=decision.allow,
            reasons=decision.reasons,
            obligations=decision.obligations,
            limits=decision.limits,
            engine=self.engine.name,
            policy_version=self.version,
            input=decision_input.model_dump(mode="json"),
        )
        return decision, record
