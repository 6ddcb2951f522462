"""The provider waiting for a consumer's answers to a stream's records (push)."""

from __future__ import annotations

import asyncio
import time

from connector.model.enums import Direction
from connector.model.records import Transfer
from connector.runtime import Runtime

POLL_SECONDS = 0.05


async def wait_for_answers(
    rt: Runtime, tp: Transfer, last_seq: int | None, timeout: float
) -> list[str]:
    """Refusal reasons once the consumer answered every record up to `last_seq` (receipt or
    refusal); an empty list also when it did not answer in time (the records then stay
    unreceipted, which an invoice lists as disputed)."""
    deadline = time.monotonic() + timeout
    while True:
        chain = await rt.db.read(lambda s: s.metering_chain(tp.agreement_id, tp.id))
        answered = [e for e in chain if e.receipt or e.refusal]
        done = last_seq is None or any(e.seq == last_seq for e in answered)
        if done or time.monotonic() >= deadline:
            if not done:
                await rt.note(
                    tp.id,
                    Direction.NOTE,
                    "metering",
                    detail="the consumer sent no receipts in time",
                )
            return [
                f"the consumer refused metering record {e.seq}: {e.refusal}"
                for e in chain
                if e.refusal
            ]
        await asyncio.sleep(POLL_SECONDS)
