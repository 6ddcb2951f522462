"""Usage-control documents to the other party, through the outbox: written with the change
that needs them, retried with backoff, resumed after a restart."""

from __future__ import annotations

from typing import Any

from connector.model.enums import Direction
from connector.model.jobs import UsageSend
from connector.model.records import Job
from connector.model.usage import utcnow
from connector.outbox import Outbox
from connector.peer.client import DspClient
from connector.runtime import Runtime
from connector.store.base import Store


class PeerMail:
    def __init__(self, rt: Runtime, outbox: Outbox, client: DspClient) -> None:
        self.rt = rt
        self.outbox = outbox
        self.client = client
        outbox.register(UsageSend.KIND, self._job, self._failed)

    def send(
        self,
        process_id: str,
        address: str,
        peer: str,
        path: str,
        body: dict[str, Any],
        what: str,
        after: dict[str, Any] | None = None,
    ) -> None:
        """Queue one POST to `address` + `path` (the peer's DSP base URL); `after` names what
        to record once the peer accepted it. Inside a `db.write` unit, with the change that
        needs it."""
        url = address.rstrip("/") + path
        payload = UsageSend(url=url, peer=peer, body=body, type=what, after=after or {})
        self.outbox.enqueue(process_id, payload)

    async def _job(self, job: Job) -> None:
        p = job.read(UsageSend)
        status, answer = await self.client.call("POST", p.url, p.peer, p.body)

        def sent(store: Store) -> None:
            self.rt.log(job.process_id, Direction.SENT, p.type, status=status, body=answer)
            self._after(store, p.after, "accepted by the provider" if status < 300 else "")

        await self.rt.db.write(sent)

    def _after(self, store: Store, after: dict[str, Any], note: str) -> None:
        if after.get("kind") == "uses":
            store.mark_uses_reported(after["agreement"], after.get("seqs", []), utcnow())
        elif after.get("kind") == "receipt":
            duty = store.get_deletion(after["duty"])
            if duty is not None:
                store.update_deletion(duty.id, notes=[*duty.notes, f"receipt {note}"])

    async def _failed(self, job: Job, why: str) -> None:
        p = job.read(UsageSend)

        def not_delivered(store: Store) -> None:
            self.rt.log(job.process_id, Direction.FAILED, p.type, detail=f"not delivered: {why}")
            if p.after.get("kind") == "receipt":
                duty = store.get_deletion(p.after["duty"])
                if duty is not None:
                    store.update_deletion(
                        duty.id, notes=[*duty.notes, f"receipt not delivered: {why}"]
                    )

        await self.rt.db.write(not_delivered)
