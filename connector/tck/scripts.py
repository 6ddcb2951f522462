"""Scripted reactions for the TCK's cases, plugged into the services' `script` hooks.

A script runs inside the outbox's reaction job for a process whose dataset (negotiation) or
agreement (transfer) is a TCK case. It waits a moment first: the TCK registers the handler
for our next message only after it has seen our previous one and polled its own state, so an
immediate second message could reach it before it listens. After acting, it queues a
reaction for the new state, so that a case can chain steps (start, then suspend, ...).
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections import Counter
from typing import Any, Generic, TypeVar

from connector.dsp.negotiation import NegotiationService
from connector.dsp.transfer import TransferService
from connector.errors import ConnectorError
from connector.model.enums import Role
from connector.model.records import Negotiation, Transfer
from connector.model.states import CN_TERMINAL, TP_TERMINAL
from connector.runtime import Runtime
from connector.store.base import Store
from connector.tck.cases import (
    CONSUMER_NEGOTIATIONS,
    CONSUMER_TRANSFERS,
    PROVIDER_NEGOTIATIONS,
    PROVIDER_TRANSFERS,
    Script,
)

log = logging.getLogger(__name__)
R = TypeVar("R", Negotiation, Transfer)

STEP_DELAY = 1.0
"""Seconds to wait before each scripted step (the TCK polls its state every 100 ms)."""


class _Scripted(ABC, Generic[R]):
    """Runs the TCK case's step for a record's state; subclasses say where things are.
    `_reload`, `_do` and `_react` run together in one store unit (on the writer's store)."""

    def __init__(self, rt: Runtime, delay: float) -> None:
        self.rt = rt
        self.delay = delay
        self._visits: Counter[tuple[str, str]] = Counter()

    @abstractmethod
    def _script(self, record: R) -> Script | None: ...
    @abstractmethod
    def _reload(self, pid: str) -> R: ...
    @abstractmethod
    def _do(self, action: str, record: R) -> R: ...
    @abstractmethod
    def _react(self, record: R) -> None: ...

    async def __call__(self, record: R) -> bool:
        script = self._script(record)
        if script is None:
            return False
        key = (record.id, record.state)
        self._visits[key] += 1
        action = script.get((record.state, self._visits[key]))
        if action is None:
            return True
        await asyncio.sleep(self.delay)

        def step(store: Store) -> None:
            current = self._reload(record.id)
            if current.state != record.state:
                return
            after = self._do(action, current)
            if after.state not in CN_TERMINAL | TP_TERMINAL:
                self._react(after)

        try:
            await self.rt.db.write(step)
        except ConnectorError as exc:
            log.warning("TCK script %s on %s failed: %s", action, record.id, exc)
        return True


class NegotiationScript(_Scripted[Negotiation]):
    def __init__(self, service: NegotiationService, delay: float = STEP_DELAY) -> None:
        super().__init__(service.rt, delay)
        self.cn = service

    def _script(self, record: Negotiation) -> Script | None:
        table = PROVIDER_NEGOTIATIONS if record.role == Role.PROVIDER else CONSUMER_NEGOTIATIONS
        return table.get(record.dataset_id)

    def _reload(self, pid: str) -> Negotiation:
        return self.cn.get(pid)

    def _react(self, record: Negotiation) -> None:
        self.cn.react(record)

    def _do(self, action: str, neg: Negotiation) -> Negotiation:
        reason = [f"scripted for TCK case {neg.dataset_id}"]
        if action == "offer":
            dataset = self.rt.store.get_dataset(neg.dataset_id)
            offer: dict[str, Any] = dataset.offers[0] if dataset else neg.offer
            return self.cn.counter_offer(neg.id, offer)
        if action == "request":
            return self.cn.counter_request(neg.id, neg.offer)
        if action == "terminate":
            return self.cn.terminate(neg.id, reason)
        step = {
            "agree": self.cn.agree,
            "finalize": self.cn.finalize,
            "accept": self.cn.accept,
            "verify": self.cn.verify,
        }[action]
        return step(neg.id)


class TransferScript(_Scripted[Transfer]):
    def __init__(self, service: TransferService, delay: float = STEP_DELAY) -> None:
        super().__init__(service.rt, delay)
        self.tp = service

    def _script(self, record: Transfer) -> Script | None:
        table = PROVIDER_TRANSFERS if record.role == Role.PROVIDER else CONSUMER_TRANSFERS
        return table.get(record.agreement_id)

    def _reload(self, pid: str) -> Transfer:
        return self.tp.get(pid)

    def _react(self, record: Transfer) -> None:
        self.tp.react(record)

    def _do(self, action: str, tp: Transfer) -> Transfer:
        reason = [f"scripted for TCK case {tp.agreement_id}"]
        if action == "start":
            return self.tp.start(tp.id)
        if action == "complete":
            return self.tp.complete(tp.id)
        if action == "suspend":
            return self.tp.suspend(tp.id, reason)
        return self.tp.terminate(tp.id, reason)
