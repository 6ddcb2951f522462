"""Ending an agreement after it was finalized (DSP has no message for it; our profile does).

The provider stops every transfer under it, refuses new ones, and sends the consumer a signed
notice; the consumer stops serving the data and, if the agreement carries a delete duty,
deletes every copy at once, with receipts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from connector.errors import BadRequest, NotFound
from connector.identity.signatures import seal
from connector.model.enums import Direction, Role
from connector.model.records import Agreement
from connector.model.states import TP_TERMINAL
from connector.model.usage import TERMINATION_TYPE, utcnow
from connector.runtime import Runtime
from connector.store.base import Store
from connector.usage.deletion import ConsumerDeletions, agreement_path, peer_address
from connector.usage.outbound import PeerMail
from connector.usage.signed import check
from connector.usage.tracking import ProviderDeletions

# Ends one transfer process (sent the peer through the outbox) inside the unit that records
# the agreement's termination: synchronous code on the writer's store.
TerminateTransfer = Callable[[str, list[str], str | None], object]


class Termination:
    def __init__(
        self,
        rt: Runtime,
        mail: PeerMail,
        consumer: ConsumerDeletions,
        provider: ProviderDeletions,
        terminate_transfer: TerminateTransfer,
    ) -> None:
        self.rt = rt
        self.mail = mail
        self.consumer = consumer
        self.provider = provider
        self.terminate_transfer = terminate_transfer

    async def terminate(self, agreement_id: str, reason: str) -> Agreement:
        """Provider: end the agreement now (again: no change)."""
        agreement = await self.rt.db.read(lambda s: s.get_agreement(agreement_id))
        if agreement is None:
            raise NotFound(f"no agreement {agreement_id}")
        if agreement.provider_id != self.rt.did:
            raise BadRequest(f"only the provider can terminate agreement {agreement_id}")
        if agreement.terminated_at:
            return agreement
        record = {
            "type": TERMINATION_TYPE,
            "agreement": agreement.id,
            "provider": self.rt.did,
            "consumer": agreement.consumer_id,
            "reason": reason,
            "terminated_at": utcnow(),
        }
        _, signature = seal(record, self.rt.did, self.rt.keys)

        def terminated(store: Store) -> Agreement:
            current = store.get_agreement(agreement_id)
            if current is None or current.terminated_at:
                return current or agreement  # terminated meanwhile: no change
            ended = store.update_agreement(
                current.id, terminated_at=record["terminated_at"], termination_reason=reason
            )
            for tp in store.agreement_transfers(ended.id, Role.PROVIDER):
                if tp.state not in TP_TERMINAL:
                    self.terminate_transfer(tp.id, [f"agreement terminated: {reason}"], None)
            self.provider.on_terminated(ended)
            self.rt.log(ended.id, Direction.NOTE, "AgreementTermination", detail=reason)
            self.mail.send(
                ended.id,
                peer_address(self.rt, ended),
                ended.consumer_id,
                agreement_path(ended.id, "termination"),
                {"record": record, "signature": signature},
                "AgreementTermination",
            )
            return ended

        return await self.rt.db.write(terminated)

    async def on_notice(self, caller: str, agreement_id: str, body: Any) -> dict[str, Any]:
        """Consumer: the provider's signed notice that it ended the agreement."""
        agreement = await self.rt.db.read(lambda s: s.get_agreement(agreement_id))
        if agreement is None or agreement.consumer_id != self.rt.did:
            raise NotFound(f"no agreement {agreement_id}")
        if agreement.provider_id != caller:
            raise NotFound(f"no agreement {agreement_id}")
        if not isinstance(body, dict):
            raise BadRequest("expected {'record': {...}, 'signature': JWS}")
        doc = await self.rt.resolver.resolve(caller)
        expected = {"agreement": agreement.id, "provider": caller, "consumer": self.rt.did}
        record = check(
            TERMINATION_TYPE, body.get("record"), body.get("signature"), caller, doc, expected
        )
        if agreement.terminated_at:
            return {"agreement": agreement.id, "terminated_at": agreement.terminated_at}

        def noted(store: Store) -> dict[str, Any]:
            current = store.get_agreement(agreement_id)
            if current is None or current.terminated_at:  # noted meanwhile (a retry)
                done = current or agreement
                return {"agreement": done.id, "terminated_at": done.terminated_at}
            ended = store.update_agreement(
                current.id,
                terminated_at=str(record["terminated_at"]),
                termination_reason=str(record["reason"]),
            )
            due = self.consumer.on_terminated(ended)
            self.rt.log(
                ended.id,
                Direction.RECEIVED,
                "AgreementTermination",
                detail=f"{record['reason']}; {due} cop{'y' if due == 1 else 'ies'} to delete now",
                body=body,
            )
            return {"agreement": ended.id, "terminated_at": ended.terminated_at, "deleting": due}

        return await self.rt.db.write(noted)
