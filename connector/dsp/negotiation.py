"""Contract negotiation in both roles: incoming messages, operator actions, reactions.

Every state change is written together with the job that sends its message (the outbox),
so a crash never leaves a state reached but unannounced. Reactions (agree, counter, verify,
finalize) are jobs too, and are skipped when the state moved on before they ran.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from connector.dsp.auth import not_a_member
from connector.dsp.callbacks import check_callback
from connector.dsp.client import DspClient
from connector.errors import BadRequest, NotFound, PeerError, TooManyProcesses
from connector.identity import signatures
from connector.model import messages as m
from connector.model.enums import CNEvent, Direction, Role
from connector.model.jobs import NegotiationReact, NegotiationSend
from connector.model.records import Agreement, Job, Negotiation
from connector.model.states import CN, CN_TERMINAL, CNStep, negotiation_next
from connector.outbox import Outbox
from connector.policy.decision import DecisionInput, Party, Phase
from connector.policy.inputs import dataset_facts
from connector.runtime import Runtime
from connector.store.base import Duplicate

Reaction = Callable[[Negotiation], Awaitable[bool]]


def new_pid() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# How far a negotiation is on its way to an agreement (TERMINATED is on no such way).
_PROGRESS: dict[str, int] = {
    CN.REQUESTED: 0,
    CN.OFFERED: 0,
    CN.ACCEPTED: 1,
    CN.AGREED: 2,
    CN.VERIFIED: 3,
    CN.FINALIZED: 4,
}


def _declared_purpose(msg: m.Message) -> str | None:
    value = (msg.model_extra or {}).get(m.PURPOSE)
    return value if isinstance(value, str) and value else None


def _rules(policy: dict[str, Any]) -> dict[str, Any]:
    return {k: policy[k] for k in ("permission", "prohibition", "obligation") if k in policy}


class NegotiationService:
    def __init__(self, runtime: Runtime, outbox: Outbox, client: DspClient) -> None:
        self.rt = runtime
        self.outbox = outbox
        self.client = client
        # A scripted reaction (TCK mode) may take over; it returns True when it handled one.
        self.script: Reaction | None = None
        outbox.register(NegotiationSend.KIND, self._send_job, self._send_failed)
        outbox.register(NegotiationReact.KIND, self._react_job, self._react_failed)

    # lookups ---------------------------------------------------------------------------------

    def owned(self, pid: str, caller: str) -> Negotiation:
        """The negotiation `pid` if it is ours with `caller`; 404 hides foreign ones."""
        neg = self.rt.store.get_negotiation(pid)
        if neg is None or neg.counterparty_id != caller:
            raise NotFound(f"no negotiation {pid}")
        return neg

    def get(self, pid: str) -> Negotiation:
        neg = self.rt.store.get_negotiation(pid)
        if neg is None:
            raise NotFound(f"no negotiation {pid}")
        return neg

    @staticmethod
    def ack(neg: Negotiation) -> dict[str, Any]:
        return m.ContractNegotiation(
            providerPid=neg.provider_pid or "", consumerPid=neg.consumer_pid or "", state=neg.state
        ).dump()

    def _check_pids(
        self, neg: Negotiation, provider_pid: str | None, consumer_pid: str | None
    ) -> None:
        if neg.provider_pid and provider_pid and provider_pid != neg.provider_pid:
            raise BadRequest(f"providerPid {provider_pid} does not belong to this negotiation")
        if neg.consumer_pid and consumer_pid and consumer_pid != neg.consumer_pid:
            raise BadRequest(f"consumerPid {consumer_pid} does not belong to this negotiation")

    def _move(
        self, neg: Negotiation, message: m.Message | CNStep, sender: Role, **fields: Any
    ) -> Negotiation:
        # The state as it is now, locked: of two replicas handling messages for this
        # negotiation at once, the second sees the first one's transition.
        current = self.rt.store.lock_negotiation(neg.id) or neg
        nxt = negotiation_next(current.state, message, sender)
        return self.rt.store.update_negotiation(neg.id, state=nxt.value, **fields)

    def _received(self, neg: Negotiation, msg: m.Message, **kw: Any) -> None:
        self.rt.log(neg.id, Direction.RECEIVED, msg.type, state=neg.state, body=msg.dump(), **kw)

    def react(self, neg: Negotiation) -> None:
        self.outbox.enqueue(neg.id, NegotiationReact(state=neg.state))

    # incoming: provider side -----------------------------------------------------------------

    async def on_request(
        self,
        msg: m.ContractRequestMessage,
        caller: str,
        pid: str | None,
        claims: dict[str, Any] | None = None,
    ) -> tuple[Negotiation, bool]:
        """Initial request (pid None) or counter-request; returns (record, created)."""
        target = msg.offer.target or ""
        if pid is None:
            if msg.providerPid:
                raise BadRequest("an initial ContractRequestMessage must not carry providerPid")
            if not msg.callbackAddress:
                raise BadRequest("callbackAddress is required on an initial ContractRequestMessage")
            existing = self.rt.store.find_negotiation(
                role=Role.PROVIDER, consumer_pid=msg.consumerPid, counterparty_id=caller
            )
            if existing is not None:
                return existing, False
            await check_callback(self.rt, caller, msg.callbackAddress)
            self._published_offer(target, msg.offer.id)
            self._within_cap(caller, Role.PROVIDER)
            neg_id = new_pid()
            neg = Negotiation(
                id=neg_id,
                role=Role.PROVIDER,
                state=CN.REQUESTED.value,
                provider_pid=neg_id,
                consumer_pid=msg.consumerPid,
                counterparty_id=caller,
                counterparty_address=msg.callbackAddress,
                dataset_id=target,
                offer=msg.offer.model_dump(by_alias=True, exclude_none=True),
                offer_by=Role.CONSUMER,
                initiator=Role.CONSUMER,
                purpose=_declared_purpose(msg),
                counterparty_credentials=claims or {},
            )
            try:
                with self.rt.store.transaction():
                    self.rt.store.insert_negotiation(neg)
                    self._received(neg, msg)
                    self.react(neg)
            except Duplicate:
                # another replica created it from the same request a moment ago
                found = self.rt.store.find_negotiation(
                    role=Role.PROVIDER, consumer_pid=msg.consumerPid, counterparty_id=caller
                )
                if found is None:
                    raise
                return found, False
            return neg, True
        neg = self.owned(pid, caller)
        if neg.role != Role.PROVIDER:
            raise BadRequest("ContractRequestMessage goes to the provider's negotiation")
        self._check_pids(neg, msg.providerPid, msg.consumerPid)
        if target != neg.dataset_id:
            raise BadRequest(f"offer target {target} is not this negotiation's dataset")
        with self.rt.store.transaction():
            neg = self._move(
                neg,
                msg,
                Role.CONSUMER,
                offer=msg.offer.model_dump(by_alias=True, exclude_none=True),
                offer_by=Role.CONSUMER,
                counterparty_credentials=claims or neg.counterparty_credentials,
            )
            self._received(neg, msg)
            self.react(neg)
        return neg, False

    def _published_offer(self, dataset_id: str, offer_id: str) -> dict[str, Any]:
        dataset = self.rt.store.get_dataset(dataset_id)
        if dataset is None:
            raise BadRequest(f"unknown dataset {dataset_id} (offer target)")
        for offer in dataset.offers:
            if offer.get("@id") == offer_id:
                return offer
        raise BadRequest(f"unknown offer {offer_id} for dataset {dataset_id}")

    async def on_event(
        self, msg: m.ContractNegotiationEventMessage, caller: str, pid: str
    ) -> Negotiation:
        neg = self.owned(pid, caller)
        self._check_pids(neg, msg.providerPid, msg.consumerPid)
        sender = neg.role.other
        if (
            msg.eventType == CNEvent.ACCEPTED
            and neg.state == CN.OFFERED
            and neg.offer_by != Role.PROVIDER
        ):
            raise BadRequest("ACCEPTED is only valid for an offer the provider made")
        with self.rt.store.transaction():
            neg = self._move(neg, msg, sender)
            self._received(neg, msg)
            self.react(neg)
        return neg

    async def on_verification(
        self, msg: m.ContractAgreementVerificationMessage, caller: str, pid: str
    ) -> Negotiation:
        neg = self.owned(pid, caller)
        if neg.role != Role.PROVIDER:
            raise BadRequest("agreement verification goes to the provider")
        self._check_pids(neg, msg.providerPid, msg.consumerPid)
        negotiation_next(neg.state, msg, Role.CONSUMER)
        agreement = self.rt.store.get_agreement(neg.agreement_id or "")
        signature = (msg.model_extra or {}).get(m.CONSUMER_SIGNATURE)
        if agreement is not None and isinstance(signature, str):
            document = await self.rt.resolver.resolve(caller)
            try:
                signatures.verify(agreement.body, signature, caller, document)
            except BadRequest as exc:
                raise self._refuse(
                    neg, msg, ["the consumer's countersignature is not valid", *exc.reasons]
                ) from exc
        elif not self._unsigned_allowed():
            raise self._refuse(
                neg,
                msg,
                [
                    "the agreement needs the consumer's countersignature"
                    f" ({m.CONSUMER_SIGNATURE}); this provider does not accept unsigned"
                    " agreements (accept_unsigned_agreements)"
                ],
            )
        with self.rt.store.transaction():
            if agreement is not None and isinstance(signature, str):
                self.rt.store.put_agreement(
                    agreement.model_copy(update={"consumer_signature": signature})
                )
            neg = self._move(neg, msg, Role.CONSUMER)
            self._received(neg, msg, detail="countersigned" if signature else "not countersigned")
            self.react(neg)
        return neg

    async def on_termination(
        self, msg: m.ContractNegotiationTerminationMessage, caller: str, pid: str
    ) -> Negotiation:
        neg = self.owned(pid, caller)
        self._check_pids(neg, msg.providerPid, msg.consumerPid)
        sender = neg.role.other
        reason = [str(r) for r in (msg.reason or [])] or ["terminated by the counterparty"]
        with self.rt.store.transaction():
            neg = self._move(neg, msg, sender, reason=reason)
            self._received(neg, msg, detail="; ".join(reason))
        return neg

    # incoming: consumer side -----------------------------------------------------------------

    async def on_offer(
        self, msg: m.ContractOfferMessage, caller: str, pid: str | None
    ) -> tuple[Negotiation, bool]:
        offer = msg.offer.model_dump(by_alias=True, exclude_none=True)
        if pid is None:
            if msg.consumerPid:
                raise BadRequest("an initial ContractOfferMessage must not carry consumerPid")
            if not msg.callbackAddress:
                raise BadRequest("callbackAddress is required on an initial ContractOfferMessage")
            if not msg.offer.target:
                raise BadRequest("offer.target (the dataset id) is required")
            existing = self.rt.store.find_negotiation(
                role=Role.CONSUMER, provider_pid=msg.providerPid, counterparty_id=caller
            )
            if existing is not None:
                return existing, False
            await check_callback(self.rt, caller, msg.callbackAddress)
            self._within_cap(caller, Role.CONSUMER)
            neg_id = new_pid()
            neg = Negotiation(
                id=neg_id,
                role=Role.CONSUMER,
                state=CN.OFFERED.value,
                provider_pid=msg.providerPid,
                consumer_pid=neg_id,
                counterparty_id=caller,
                counterparty_address=msg.callbackAddress,
                dataset_id=msg.offer.target,
                offer=offer,
                offer_by=Role.PROVIDER,
                initiator=Role.PROVIDER,
            )
            with self.rt.store.transaction():
                self.rt.store.insert_negotiation(neg)
                self._received(neg, msg)
                self.react(neg)
            return neg, True
        neg = self.owned(pid, caller)
        if neg.role != Role.CONSUMER:
            raise BadRequest("ContractOfferMessage goes to the consumer's negotiation")
        self._check_pids(neg, msg.providerPid, msg.consumerPid)
        with self.rt.store.transaction():
            neg = self._move(
                neg,
                msg,
                Role.PROVIDER,
                offer=offer,
                offer_by=Role.PROVIDER,
                provider_pid=neg.provider_pid or msg.providerPid,
            )
            self._received(neg, msg)
            self.react(neg)
        return neg, False

    async def on_agreement(
        self,
        msg: m.ContractAgreementMessage,
        caller: str,
        pid: str,
        not_member: list[str] | None = None,
    ) -> Negotiation:
        """`not_member`: why the provider is not a verified member (require_membership);
        the agreement is then refused and the negotiation ends here with those reasons."""
        neg = self.owned(pid, caller)
        if neg.role != Role.CONSUMER:
            raise BadRequest("ContractAgreementMessage goes to the consumer's negotiation")
        self._check_pids(neg, msg.providerPid, msg.consumerPid)
        negotiation_next(neg.state, msg, Role.PROVIDER)
        if not_member:
            reason = [f"the provider {caller} is not a verified member", *not_member]
            with self.rt.store.transaction():
                self._received(neg, msg, detail="refused: " + "; ".join(reason))
                # the refusal (403) is this side's answer: no termination message follows
                neg = self._move(
                    neg, m.ContractNegotiationTerminationMessage, Role.CONSUMER, reason=reason
                )
                self.rt.log(neg.id, Direction.NOTE, "TERMINATED", state=neg.state, detail=reason[0])
            raise not_a_member(not_member)
        body = msg.agreement.model_dump(by_alias=True, exclude_none=True)
        if msg.agreement.target != neg.dataset_id:
            raise BadRequest(f"agreement target {msg.agreement.target} is not {neg.dataset_id}")
        # The parties are fixed since the negotiation started: the provider is the DID whose
        # endpoint we negotiate with (and who is calling), the consumer is us.
        if self._fixed_parties(caller):
            wrong = []
            if msg.agreement.assigner != neg.counterparty_id:
                wrong.append(
                    f"the agreement names {msg.agreement.assigner} as assigner, but this"
                    f" negotiation is with {neg.counterparty_id}"
                )
            if msg.agreement.assignee != self.rt.did:
                wrong.append(
                    f"the agreement names {msg.agreement.assignee} as assignee, not {self.rt.did}"
                )
            if wrong:
                raise self._refuse(neg, msg, wrong)
        signature = (msg.model_extra or {}).get(m.PROVIDER_SIGNATURE)
        if isinstance(signature, str):
            document = await self.rt.resolver.resolve(neg.counterparty_id)
            try:
                signatures.verify(body, signature, neg.counterparty_id, document)
            except BadRequest as exc:
                reasons = [f"the provider signature is not valid for {neg.counterparty_id}"]
                raise self._refuse(neg, msg, reasons + exc.reasons) from exc
        elif not self._unsigned_allowed():
            raise self._refuse(
                neg,
                msg,
                [
                    f"the agreement carries no provider signature ({m.PROVIDER_SIGNATURE});"
                    " this consumer does not accept unsigned agreements"
                    " (accept_unsigned_agreements)"
                ],
            )
        record = Agreement(
            id=msg.agreement.id,
            negotiation_id=neg.id,
            dataset_id=neg.dataset_id,
            provider_id=neg.counterparty_id,
            consumer_id=self.rt.did,
            body=body,
            provider_signature=signature if isinstance(signature, str) else None,
        )
        with self.rt.store.transaction():
            self.rt.store.put_agreement(record)
            neg = self._move(
                neg,
                msg,
                Role.PROVIDER,
                agreement_id=record.id,
                provider_pid=neg.provider_pid or msg.providerPid,
            )
            self._received(neg, msg, detail="signed" if signature else "unsigned agreement")
            self.react(neg)
        return neg

    # refusals and limits ---------------------------------------------------------------------

    def _unsigned_allowed(self) -> bool:
        """Whether agreements may finalize without the peer's signature (TCK mode: the TCK
        knows nothing of our signature profile)."""
        s = self.rt.settings
        return s.accept_unsigned_agreements or s.tck_mode

    def _fixed_parties(self, caller: str) -> bool:
        """False only for TCK mode's fixed caller, which is no DID and names none."""
        return not (self.rt.settings.tck_mode and not caller.startswith("did:"))

    def _refuse(self, neg: Negotiation, msg: m.Message, reasons: list[str]) -> BadRequest:
        """End `neg` here because of `msg` (the 400 answer is this side's word: no
        termination message follows) and return the error to raise."""
        with self.rt.store.transaction():
            self._received(neg, msg, detail="refused: " + "; ".join(reasons))
            neg = self._move(neg, m.ContractNegotiationTerminationMessage, neg.role, reason=reasons)
            self.rt.log(neg.id, Direction.NOTE, "TERMINATED", state=neg.state, detail=reasons[0])
        return BadRequest("; ".join(reasons), reasons=reasons)

    def _within_cap(self, caller: str, role: Role) -> None:
        """Refuse (429) a new negotiation the peer opens while it already has
        max_open_processes_per_peer open ones it opened."""
        cap = self.rt.settings.max_open_processes_per_peer
        peer_role = role.other
        open_now = self.rt.store.count_open_negotiations(
            [CN.FINALIZED.value, CN.TERMINATED.value],
            counterparty_id=caller,
            role=role,
            initiator=peer_role,
        )
        if open_now >= cap:
            raise TooManyProcesses(
                f"{caller} already has {open_now} open negotiations it started here; at most"
                f" {cap} (max_open_processes_per_peer): finish or terminate some first"
            )

    # operator actions ------------------------------------------------------------------------

    def request(
        self,
        address: str,
        counterparty_id: str,
        dataset_id: str,
        offer: dict[str, Any],
        purpose: str | None = None,
    ) -> Negotiation:
        """Consumer: start a negotiation for `offer` on the provider's dataset."""
        neg_id = new_pid()
        offer = {**offer, "@type": "Offer", "target": dataset_id}
        neg = Negotiation(
            id=neg_id,
            role=Role.CONSUMER,
            state=CN.REQUESTED.value,
            consumer_pid=neg_id,
            counterparty_id=counterparty_id,
            counterparty_address=address.rstrip("/"),
            dataset_id=dataset_id,
            offer=offer,
            offer_by=Role.CONSUMER,
            initiator=Role.CONSUMER,
            purpose=purpose,
        )
        msg = m.ContractRequestMessage(
            consumerPid=neg_id, offer=offer, callbackAddress=self.rt.settings.dsp_url
        )
        body = msg.dump()
        if purpose:
            body[m.PURPOSE] = purpose
        with self.rt.store.transaction():
            self.rt.store.insert_negotiation(neg)
            self._send(neg, msg, "/negotiations/request", body=body)
        return neg

    def counter_request(self, pid: str, offer: dict[str, Any]) -> Negotiation:
        neg = self._mine(pid, Role.CONSUMER)
        offer = {**offer, "@type": "Offer", "target": neg.dataset_id}
        msg = m.ContractRequestMessage(
            consumerPid=neg.id, providerPid=neg.provider_pid, offer=offer
        )
        with self.rt.store.transaction():
            neg = self._move(neg, msg, Role.CONSUMER, offer=offer, offer_by=Role.CONSUMER)
            self._send(neg, msg, "/negotiations/{peer}/request")
        return neg

    def accept(self, pid: str) -> Negotiation:
        neg = self._mine(pid, Role.CONSUMER)
        if neg.state == CN.OFFERED and neg.offer_by != Role.PROVIDER:
            raise BadRequest("only an offer made by the provider can be accepted")
        msg = m.ContractNegotiationEventMessage(
            providerPid=neg.provider_pid or "", consumerPid=neg.id, eventType=CNEvent.ACCEPTED
        )
        with self.rt.store.transaction():
            neg = self._move(neg, CNEvent.ACCEPTED, Role.CONSUMER)
            self._send(neg, msg, "/negotiations/{peer}/events")
        return neg

    def verify(self, pid: str) -> Negotiation:
        """Consumer: countersign the agreement and send the verification."""
        neg = self._mine(pid, Role.CONSUMER)
        agreement = self.rt.store.get_agreement(neg.agreement_id or "")
        if agreement is None:
            raise BadRequest("no agreement to verify")
        signature = signatures.sign(agreement.body, self.rt.did, self.rt.keys)
        msg = m.ContractAgreementVerificationMessage(
            providerPid=neg.provider_pid or "", consumerPid=neg.id
        )
        payload = msg.dump()
        payload[m.CONSUMER_SIGNATURE] = signature
        with self.rt.store.transaction():
            neg = self._move(neg, msg, Role.CONSUMER)
            self.rt.store.put_agreement(
                agreement.model_copy(update={"consumer_signature": signature})
            )
            self._send(neg, msg, "/negotiations/{peer}/agreement/verification", body=payload)
        return neg

    def counter_offer(self, pid: str, offer: dict[str, Any]) -> Negotiation:
        neg = self._mine(pid, Role.PROVIDER)
        offer = {**offer, "@type": "Offer", "target": neg.dataset_id}
        msg = m.ContractOfferMessage(providerPid=neg.id, consumerPid=neg.consumer_pid, offer=offer)
        with self.rt.store.transaction():
            neg = self._move(neg, msg, Role.PROVIDER, offer=offer, offer_by=Role.PROVIDER)
            self._send(neg, msg, "/negotiations/{peer}/offers")
        return neg

    def agree(self, pid: str) -> Negotiation:
        """Provider: turn the current offer into a signed agreement."""
        neg = self._mine(pid, Role.PROVIDER)
        negotiation_next(neg.state, m.ContractAgreementMessage, Role.PROVIDER)
        body: dict[str, Any] = {
            "@id": new_pid(),
            "@type": "Agreement",
            "target": neg.dataset_id,
            "assigner": self.rt.did,
            "assignee": neg.counterparty_id,
            "timestamp": _now(),
            **_rules(neg.offer),
        }
        if "permission" not in body and "prohibition" not in body:
            body["permission"] = [{"action": "use"}]
        signature = signatures.sign(body, self.rt.did, self.rt.keys)
        msg = m.ContractAgreementMessage(
            providerPid=neg.id,
            consumerPid=neg.consumer_pid or "",
            agreement=body,
            callbackAddress=self.rt.settings.dsp_url,
        )
        payload = msg.dump()
        payload[m.PROVIDER_SIGNATURE] = signature
        record = Agreement(
            id=body["@id"],
            negotiation_id=neg.id,
            dataset_id=neg.dataset_id,
            provider_id=self.rt.did,
            consumer_id=neg.counterparty_id,
            body=body,
            provider_signature=signature,
            policy_version=getattr(self.rt.decisions, "version", None) or "permit-all",
        )
        with self.rt.store.transaction():
            self.rt.store.put_agreement(record)
            neg = self._move(neg, msg, Role.PROVIDER, agreement_id=record.id)
            self._send(neg, msg, "/negotiations/{peer}/agreement", body=payload)
        return neg

    def finalize(self, pid: str) -> Negotiation:
        neg = self._mine(pid, Role.PROVIDER)
        msg = m.ContractNegotiationEventMessage(
            providerPid=neg.id, consumerPid=neg.consumer_pid or "", eventType=CNEvent.FINALIZED
        )
        with self.rt.store.transaction():
            neg = self._move(neg, CNEvent.FINALIZED, Role.PROVIDER)
            self._send(neg, msg, "/negotiations/{peer}/events")
        return neg

    def terminate(self, pid: str, reason: list[str], code: str | None = None) -> Negotiation:
        neg = self.get(pid)
        msg = m.ContractNegotiationTerminationMessage(
            providerPid=neg.provider_pid or "",
            consumerPid=neg.consumer_pid or "",
            code=code,
            reason=reason,
        )
        with self.rt.store.transaction():
            neg = self._move(neg, msg, neg.role, reason=reason)
            self._send(neg, msg, "/negotiations/{peer}/termination")
        return neg

    def _mine(self, pid: str, role: Role) -> Negotiation:
        neg = self.get(pid)
        if neg.role != role:
            raise BadRequest(
                f"this action is for the {role}; this negotiation's role is {neg.role}"
            )
        return neg

    # sending ---------------------------------------------------------------------------------

    def _send(
        self, neg: Negotiation, msg: m.Message, path: str, body: dict[str, Any] | None = None
    ) -> None:
        message = body or msg.dump()
        payload = NegotiationSend(type=msg.type, path=path, message=message, expect=neg.state)
        self.outbox.enqueue(neg.id, payload)

    async def _send_job(self, job: Job) -> None:
        neg = self.get(job.process_id)
        payload = job.read(NegotiationSend)
        message = dict(payload.message)
        peer_field = "providerPid" if neg.role == Role.CONSUMER else "consumerPid"
        peer_pid = neg.provider_pid if neg.role == Role.CONSUMER else neg.consumer_pid
        path = payload.path
        if "{peer}" in path:
            if not peer_pid:
                raise PeerError("the counterparty's process id is not known yet", retry=False)
            path = path.replace("{peer}", peer_pid)
            message[peer_field] = peer_pid
        url = neg.counterparty_address.rstrip("/") + path
        try:
            status, body = await self.client.call("POST", url, neg.counterparty_id, message)
        except PeerError as exc:
            if exc.http_status == 400 and job.attempts > 0 and await self._peer_in(neg, payload):
                self.rt.log(
                    neg.id, Direction.NOTE, payload.type, detail="delivered earlier (peer state)"
                )
                return
            direction = Direction.FAILED if exc.retry else Direction.REFUSED
            if not exc.retry:
                self.rt.log(
                    neg.id,
                    direction,
                    payload.type,
                    status=exc.http_status,
                    body=exc.body,
                    detail=str(exc),
                )
            raise
        updates: dict[str, Any] = {}
        initial = payload.type == m.ContractRequestMessage.TYPE and not neg.provider_pid
        if initial and isinstance(body, dict) and isinstance(body.get("providerPid"), str):
            updates["provider_pid"] = body["providerPid"]
        with self.rt.store.transaction():
            if updates:
                self.rt.store.update_negotiation(neg.id, **updates)
            self.rt.log(
                neg.id,
                Direction.SENT,
                payload.type,
                status=status,
                body=message,
                state=neg.state,
            )

    async def _peer_in(self, neg: Negotiation, payload: NegotiationSend) -> bool:
        """After a lost answer: did the peer already apply our message?"""
        peer_pid = neg.provider_pid if neg.role == Role.CONSUMER else neg.consumer_pid
        url = f"{neg.counterparty_address.rstrip('/')}/negotiations/{peer_pid}"
        try:
            _, body = await self.client.call("GET", url, neg.counterparty_id)
        except PeerError:
            return False
        if not isinstance(body, dict) or not isinstance(body.get("state"), str):
            return False
        state, expect = str(body["state"]), payload.expect
        # A peer found further on the way to an agreement has applied our message too.
        ahead = _PROGRESS.get(state, -1) > _PROGRESS.get(expect, len(_PROGRESS))
        return state == expect or ahead

    async def _send_failed(self, job: Job, why: str) -> None:
        neg = self.get(job.process_id)
        sent = job.read(NegotiationSend)
        reason = f"{sent.type} was not delivered: {why}"
        if neg.state in CN_TERMINAL:
            self.rt.log(neg.id, Direction.NOTE, sent.type, detail=reason)
            return
        with self.rt.store.transaction():
            neg = self.rt.store.update_negotiation(
                neg.id, state=CN.TERMINATED.value, reason=[reason]
            )
            self.rt.log(neg.id, Direction.NOTE, "TERMINATED", state=neg.state, detail=reason)
            peer_pid = neg.provider_pid if neg.role == Role.CONSUMER else neg.consumer_pid
            if peer_pid and sent.type != m.ContractNegotiationTerminationMessage.TYPE:
                msg = m.ContractNegotiationTerminationMessage(
                    providerPid=neg.provider_pid or "",
                    consumerPid=neg.consumer_pid or "",
                    reason=[reason],
                )
                self._send(neg, msg, "/negotiations/{peer}/termination")

    # reactions -------------------------------------------------------------------------------

    async def _react_job(self, job: Job) -> None:
        neg = self.get(job.process_id)
        if neg.state != job.read(NegotiationReact).state:
            return
        if self.script is not None and await self.script(neg):
            return
        if neg.role == Role.PROVIDER:
            await self._provider_reaction(neg)
        else:
            self._consumer_reaction(neg)

    async def _react_failed(self, job: Job, why: str) -> None:
        neg = self.get(job.process_id)
        if neg.state not in CN_TERMINAL:
            self.terminate(neg.id, [f"internal error while reacting: {why}"])

    async def _provider_reaction(self, neg: Negotiation) -> None:
        if neg.state == CN.REQUESTED:
            try:
                published = self._published_offer(neg.dataset_id, str(neg.offer.get("@id")))
            except BadRequest as exc:
                self.terminate(neg.id, exc.reasons)
                return
            decision = await self.rt.decisions.decide(
                DecisionInput(
                    phase=Phase.NEGOTIATION,
                    provider=Party(id=self.rt.did),
                    consumer=Party(
                        id=neg.counterparty_id, credentials=neg.counterparty_credentials
                    ),
                    dataset=dataset_facts(
                        self.rt.store.get_dataset(neg.dataset_id), neg.dataset_id, self.rt.did
                    ),
                    policy=published,
                    request={"purpose": neg.purpose, "process_id": neg.id},
                )
            )
            if not decision.allow:
                self.terminate(neg.id, decision.reasons or ["refused by policy"], code="POLICY")
            elif _rules(published) == _rules(neg.offer):
                self.agree(neg.id)
            else:
                self.rt.log(
                    neg.id,
                    Direction.NOTE,
                    "counter-offer",
                    detail="requested terms differ from the offer",
                )
                self.counter_offer(neg.id, published)
        elif neg.state == CN.ACCEPTED:
            self.agree(neg.id)
        elif neg.state == CN.VERIFIED:
            self.finalize(neg.id)

    def _consumer_reaction(self, neg: Negotiation) -> None:
        if neg.state == CN.OFFERED:
            # only a counter-offer in a negotiation we started; an unsolicited offer (or a
            # record from before `initiator` was kept) waits for the operator
            if self.rt.settings.auto_accept_offers and neg.initiator == Role.CONSUMER:
                self.accept(neg.id)
            else:
                self.rt.log(
                    neg.id,
                    Direction.NOTE,
                    "awaiting operator",
                    detail="the provider made an offer: accept, counter-request or terminate",
                )
        elif neg.state == CN.AGREED:
            agreement = self.rt.store.get_agreement(neg.agreement_id or "")
            if agreement is None:
                self.terminate(neg.id, ["agreement missing"])
            elif _rules(agreement.body) != _rules(neg.offer):
                self.terminate(neg.id, ["the agreement's terms differ from the last offer"])
            else:
                self.verify(neg.id)
