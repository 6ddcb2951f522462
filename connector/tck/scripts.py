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
from collections import Counter
from typing import Any

from connector.dsp.negotiation import NegotiationService
from connector.dsp.states import CN_TERMINAL, TP_TERMINAL
from connector.dsp.transfer import TransferService
from connector.errors import ConnectorError
from connector.store.records import Negotiation, Transfer
from connector.tck.cases import (
    CONSUMER_NEGOTIATIONS,
    CONSUMER_TRANSFERS,
    PROVIDER_NEGOTIATIONS,
    PROVIDER_TRANSFERS,
    Script,
)

log = logging.getLogger(__name__)

STEP_DELAY = 1.0
"""Seconds to wait before each scripted step (the TCK polls its state every 100 ms)."""


class _Scripted:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self._visits: Counter[tuple[str, str]] = Counter()

    def _action(self, script: Script, pid: str, state: str) -> str | None:
        self._visits[(pid, state)] += 1
        return script.get((state, self._visits[(pid, state)]))


class NegotiationScript(_Scripted):
    def __init__(self, service: NegotiationService, delay: float = STEP_DELAY) -> None:
        super().__init__(delay)
        self.cn = service

    async def __call__(self, neg: Negotiation) -> bool:
        table = PROVIDER_NEGOTIATIONS if neg.role == "provider" else CONSUMER_NEGOTIATIONS
        script = table.get(neg.dataset_id)
        if script is None:
            return False
        action = self._action(script, neg.id, neg.state)
        if action is None:
            return True
        await asyncio.sleep(self.delay)
        current = self.cn.get(neg.id)
        if current.state != neg.state:
            return True
        try:
            after = self._do(action, current)
        except ConnectorError as exc:
            log.warning("TCK script %s on %s failed: %s", action, neg.id, exc)
            return True
        if after.state not in CN_TERMINAL:
            self.cn.outbox.enqueue(after.id, "cn-react", {"state": after.state})
        return True

    def _do(self, action: str, neg: Negotiation) -> Negotiation:
        reason = [f"scripted for TCK case {neg.dataset_id}"]
        if action == "offer":
            dataset = self.cn.rt.store.get_dataset(neg.dataset_id)
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


class TransferScript(_Scripted):
    def __init__(self, service: TransferService, delay: float = STEP_DELAY) -> None:
        super().__init__(delay)
        self.tp = service

    async def __call__(self, tp: Transfer) -> bool:
        table = PROVIDER_TRANSFERS if tp.role == "provider" else CONSUMER_TRANSFERS
        script = table.get(tp.agreement_id)
        if script is None:
            return False
        action = self._action(script, tp.id, tp.state)
        if action is None:
            return True
        await asyncio.sleep(self.delay)
        current = self.tp.get(tp.id)
        if current.state != tp.state:
            return True
        try:
            after = self._do(action, current)
        except ConnectorError as exc:
            log.warning("TCK script %s on %s failed: %s", action, tp.id, exc)
            return True
        if after.state not in TP_TERMINAL:
            self.tp.outbox.enqueue(after.id, "tp-react", {"state": after.state})
        return True

    def _do(self, action: str, tp: Transfer) -> Transfer:
        reason = [f"scripted for TCK case {tp.agreement_id}"]
        if action == "start":
            return self.tp.start(tp.id)
        if action == "complete":
            return self.tp.complete(tp.id)
        if action == "suspend":
            return self.tp.suspend(tp.id, reason)
        return self.tp.terminate(tp.id, reason)
