"""Contract negotiation in both roles: incoming messages, operator actions, reactions.

Every state change is written together with the job that sends its message (the outbox),
so a crash never leaves a state reached but unannounced. Reactions (agree, counter, verify,
finalize) are jobs too, and are skipped when the state moved on before they ran.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from connector.dsp.process import NEGOTIATION, ProcessService, Send, new_pid, opened, peer_pid
from connector.errors import BadRequest, PeerError, TooManyProcesses
from connector.identity import signatures
from connector.model import messages as m
from connector.model.enums import CNEvent, Direction, Role
from connector.model.jobs import NegotiationSend
from connector.model.records import Agreement, Dataset, Negotiation
from connector.model.states import CN, negotiation_next
from connector.peer.auth import not_a_member
from connector.peer.callbacks import check_callback
from connector.policy.decision import DecisionInput, Party, Phase
from connector.policy.inputs import dataset_facts
from connector.store.base import Duplicate, Store


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


def _offer_of(dataset: Dataset | None, dataset_id: str, offer_id: str) -> dict[str, Any]:
    """The published offer `offer_id` of the dataset, or BadRequest."""
    if dataset is None:
        raise BadRequest(f"unknown dataset {dataset_id} (offer target)")
    for offer in dataset.offers:
        if offer.get("@id") == offer_id:
            return offer
    raise BadRequest(f"unknown offer {offer_id} for dataset {dataset_id}")


class NegotiationService(ProcessService[Negotiation]):
    KIND = NEGOTIATION

    def _sending(self, record: Negotiation, fields: dict[str, Any]) -> dict[str, Any]:
        return {**fields, "expect": record.state}

    # incoming: provider side -----------------------------------------------------------------

    async def on_request(
        self,
        msg: m.ContractRequestMessage,
        caller: str,
        pid: str | None,
        claims: dict[str, Any] | None = None,
    ) -> tuple[Negotiation, bool]:
        """Initial request (pid None) or counter-request; returns (record, created)."""
        if pid is not None:
            return await self.rt.db.write(
                lambda _s: (self._counter(msg, caller, pid, claims), False)
            )
        if msg.providerPid:
            raise BadRequest("an initial ContractRequestMessage must not carry providerPid")
        if not msg.callbackAddress:
            raise BadRequest("callbackAddress is required on an initial ContractRequestMessage")
        await check_callback(self.rt, caller, msg.callbackAddress)
        neg = Negotiation(
            **opened(Role.PROVIDER, caller, msg.callbackAddress, msg.consumerPid),
            state=CN.REQUESTED.value,
            dataset_id=msg.offer.target or "",
            offer=msg.offer.model_dump(by_alias=True, exclude_none=True),
            offer_by=Role.CONSUMER,
            initiator=Role.CONSUMER,
            purpose=_declared_purpose(msg),
            counterparty_credentials=claims or {},
        )

        def checked(store: Store) -> None:
            self._published_offer(store, neg.dataset_id, msg.offer.id)

        return await self._opened(neg, msg, provider_pid=None, check=checked)

    def _counter(
        self,
        msg: m.ContractRequestMessage,
        caller: str,
        pid: str,
        claims: dict[str, Any] | None,
    ) -> Negotiation:
        """(in a unit) The consumer's counter-request."""
        neg = self.owned(pid, caller)
        if neg.role != Role.PROVIDER:
            raise BadRequest("ContractRequestMessage goes to the provider's negotiation")
        self._check_pids(neg, msg.providerPid, msg.consumerPid)
        target = msg.offer.target or ""
        if target != neg.dataset_id:
            raise BadRequest(f"offer target {target} is not this negotiation's dataset")
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
        return neg

    async def _opened(
        self,
        neg: Negotiation,
        msg: m.Message,
        provider_pid: str | None,
        check: Callable[[Store], None],
    ) -> tuple[Negotiation, bool]:
        """A negotiation the peer opens, written in one unit with the checks that decide it
        (already there, the offer, the peer's cap); returns (record, created)."""
        match = {"role": neg.role.value, "counterparty_id": neg.counterparty_id}
        if neg.role == Role.PROVIDER:
            match["consumer_pid"] = neg.consumer_pid or ""
        else:
            match["provider_pid"] = provider_pid or ""

        def open_(store: Store) -> tuple[Negotiation, bool]:
            existing = store.find_negotiation(**match)
            if existing is not None:
                return existing, False
            check(store)
            self._within_cap(store, neg.counterparty_id, neg.role)
            store.insert_negotiation(neg)
            self._received(neg, msg)
            self.react(neg)
            return neg, True

        try:
            return await self.rt.db.write(open_)
        except Duplicate:
            # another replica created it from the same request a moment ago
            found = await self.rt.db.read(lambda s: s.find_negotiation(**match))
            if found is None:
                raise
            return found, False

    def _published_offer(self, store: Store, dataset_id: str, offer_id: str) -> dict[str, Any]:
        return _offer_of(store.get_dataset(dataset_id), dataset_id, offer_id)

    async def on_event(
        self, msg: m.ContractNegotiationEventMessage, caller: str, pid: str
    ) -> Negotiation:
        def receive(store: Store) -> Negotiation:
            neg = self.owned(pid, caller)
            self._check_pids(neg, msg.providerPid, msg.consumerPid)
            if (
                msg.eventType == CNEvent.ACCEPTED
                and neg.state == CN.OFFERED
                and neg.offer_by != Role.PROVIDER
            ):
                raise BadRequest("ACCEPTED is only valid for an offer the provider made")
            neg = self._move(neg, msg, neg.role.other)
            self._received(neg, msg)
            self.react(neg)
            return neg

        return await self.rt.db.write(receive)

    def _for(self, role: Role, msg: m.Message, caller: str, pid: str, store: Store) -> Negotiation:
        """The negotiation `msg` (from the other side) may move: ours with `caller`, in
        `role`, the pids matching, the move allowed."""
        neg = self.owned(pid, caller, store)
        if neg.role != role:
            raise BadRequest(f"{msg.type} goes to the {role}'s negotiation")
        self._check_pids(neg, getattr(msg, "providerPid", None), getattr(msg, "consumerPid", None))
        negotiation_next(neg.state, msg, role.other)
        return neg

    async def on_verification(
        self, msg: m.ContractAgreementVerificationMessage, caller: str, pid: str
    ) -> Negotiation:
        def found(store: Store) -> tuple[Negotiation, Agreement | None]:
            neg = self._for(Role.PROVIDER, msg, caller, pid, store)
            return neg, store.get_agreement(neg.agreement_id or "")

        neg, agreement = await self.rt.db.read(found)
        signature = (msg.model_extra or {}).get(m.CONSUMER_SIGNATURE)
        signed = agreement is not None and isinstance(signature, str)
        if agreement is not None and isinstance(signature, str):
            document = await self.rt.resolver.resolve(caller)
            try:
                signatures.verify(agreement.body, signature, caller, document)
            except BadRequest as exc:
                reasons = ["the consumer's countersignature is not valid", *exc.reasons]
                raise await self._refuse(neg, msg, reasons) from exc
        elif not self._unsigned_allowed():
            raise await self._refuse(
                neg,
                msg,
                [
                    "the agreement needs the consumer's countersignature"
                    f" ({m.CONSUMER_SIGNATURE}); this provider does not accept unsigned"
                    " agreements (accept_unsigned_agreements)"
                ],
            )

        def receive(store: Store) -> Negotiation:
            moved = self._for(Role.PROVIDER, msg, caller, pid, store)
            if signed and agreement is not None:
                store.put_agreement(agreement.model_copy(update={"consumer_signature": signature}))
            moved = self._move(moved, msg, Role.CONSUMER)
            detail = "countersigned" if signature else "not countersigned"
            self._received(moved, msg, detail=detail)
            self.react(moved)
            return moved

        return await self.rt.db.write(receive)

    async def on_termination(
        self, msg: m.ContractNegotiationTerminationMessage, caller: str, pid: str
    ) -> Negotiation:
        reason = [str(r) for r in (msg.reason or [])] or ["terminated by the counterparty"]

        def receive(store: Store) -> Negotiation:
            neg = self.owned(pid, caller)
            self._check_pids(neg, msg.providerPid, msg.consumerPid)
            neg = self._move(neg, msg, neg.role.other, reason=reason)
            self._received(neg, msg, detail="; ".join(reason))
            return neg

        return await self.rt.db.write(receive)

    # incoming: consumer side -----------------------------------------------------------------

    async def on_offer(
        self, msg: m.ContractOfferMessage, caller: str, pid: str | None
    ) -> tuple[Negotiation, bool]:
        offer = msg.offer.model_dump(by_alias=True, exclude_none=True)
        if pid is not None:

            def receive(store: Store) -> tuple[Negotiation, bool]:
                neg = self.owned(pid, caller)
                if neg.role != Role.CONSUMER:
                    raise BadRequest("ContractOfferMessage goes to the consumer's negotiation")
                self._check_pids(neg, msg.providerPid, msg.consumerPid)
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

            return await self.rt.db.write(receive)
        if msg.consumerPid:
            raise BadRequest("an initial ContractOfferMessage must not carry consumerPid")
        if not msg.callbackAddress:
            raise BadRequest("callbackAddress is required on an initial ContractOfferMessage")
        if not msg.offer.target:
            raise BadRequest("offer.target (the dataset id) is required")
        await check_callback(self.rt, caller, msg.callbackAddress)
        neg = Negotiation(
            **opened(Role.CONSUMER, caller, msg.callbackAddress, msg.providerPid),
            state=CN.OFFERED.value,
            dataset_id=msg.offer.target,
            offer=offer,
            offer_by=Role.PROVIDER,
            initiator=Role.PROVIDER,
        )
        return await self._opened(neg, msg, provider_pid=msg.providerPid, check=lambda _s: None)

    async def on_agreement(
        self,
        msg: m.ContractAgreementMessage,
        caller: str,
        pid: str,
        not_member: list[str] | None = None,
    ) -> Negotiation:
        """`not_member`: why the provider is not a verified member (require_membership);
        the agreement is then refused and the negotiation ends here with those reasons."""
        neg = await self.rt.db.read(lambda s: self._for(Role.CONSUMER, msg, caller, pid, s))
        if not_member:
            # the refusal (403) is this side's answer: no termination message follows
            await self._refuse(
                neg, msg, [f"the provider {caller} is not a verified member", *not_member]
            )
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
                raise await self._refuse(neg, msg, wrong)
        signature = (msg.model_extra or {}).get(m.PROVIDER_SIGNATURE)
        if isinstance(signature, str):
            document = await self.rt.resolver.resolve(neg.counterparty_id)
            try:
                signatures.verify(body, signature, neg.counterparty_id, document)
            except BadRequest as exc:
                reasons = [f"the provider signature is not valid for {neg.counterparty_id}"]
                raise await self._refuse(neg, msg, reasons + exc.reasons) from exc
        elif not self._unsigned_allowed():
            raise await self._refuse(
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

        def receive(store: Store) -> Negotiation:
            moved = self._for(Role.CONSUMER, msg, caller, pid, store)
            store.put_agreement(record)
            moved = self._move(
                moved,
                msg,
                Role.PROVIDER,
                agreement_id=record.id,
                provider_pid=moved.provider_pid or msg.providerPid,
            )
            self._received(moved, msg, detail="signed" if signature else "unsigned agreement")
            self.react(moved)
            return moved

        return await self.rt.db.write(receive)

    # refusals and limits ---------------------------------------------------------------------

    def _unsigned_allowed(self) -> bool:
        """Whether agreements may finalize without the peer's signature (TCK mode: the TCK
        knows nothing of our signature profile)."""
        s = self.rt.settings
        return s.accept_unsigned_agreements or s.tck_mode

    def _fixed_parties(self, caller: str) -> bool:
        """False only for TCK mode's fixed caller, which is no DID and names none."""
        return not (self.rt.settings.tck_mode and not caller.startswith("did:"))

    async def _refuse(self, neg: Negotiation, msg: m.Message, reasons: list[str]) -> BadRequest:
        """End `neg` here because of `msg` (the 400 answer is this side's word: no
        termination message follows) and return the error to raise."""
        await self.rt.db.write(lambda _s: self._ended_here(neg, msg, reasons))
        return BadRequest("; ".join(reasons), reasons=reasons)

    def _within_cap(self, store: Store, caller: str, role: Role) -> None:
        """Refuse (429) a new negotiation the peer opens while it already has
        max_open_processes_per_peer open ones it opened."""
        cap = self.rt.settings.max_open_processes_per_peer
        peer_role = role.other
        open_now = store.count_open_negotiations(
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

    # operator actions (each in a unit: `await service.act(service.accept, pid)`) ------------

    def request(
        self,
        address: str,
        counterparty_id: str,
        dataset_id: str,
        offer: dict[str, Any],
        purpose: str | None = None,
    ) -> Negotiation:
        """Consumer: start a negotiation for `offer` on the provider's dataset."""
        offer = {**offer, "@type": "Offer", "target": dataset_id}
        neg = Negotiation(
            **opened(Role.CONSUMER, counterparty_id, address.rstrip("/"), None),
            state=CN.REQUESTED.value,
            dataset_id=dataset_id,
            offer=offer,
            offer_by=Role.CONSUMER,
            initiator=Role.CONSUMER,
            purpose=purpose,
        )
        msg = m.ContractRequestMessage(
            consumerPid=neg.id, offer=offer, callbackAddress=self.rt.settings.dsp_url
        )
        body = msg.dump()
        if purpose:
            body[m.PURPOSE] = purpose
        self.rt.store.insert_negotiation(neg)
        self._send(neg, msg, "/negotiations/request", body=body)
        return neg

    def counter_request(self, pid: str, offer: dict[str, Any]) -> Negotiation:
        neg = self._mine(pid, Role.CONSUMER)
        offer = {**offer, "@type": "Offer", "target": neg.dataset_id}
        msg = m.ContractRequestMessage(
            consumerPid=neg.id, providerPid=neg.provider_pid, offer=offer
        )
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
        neg = self._move(neg, msg, Role.CONSUMER)
        self.rt.store.put_agreement(agreement.model_copy(update={"consumer_signature": signature}))
        self._send(neg, msg, "/negotiations/{peer}/agreement/verification", body=payload)
        return neg

    def counter_offer(self, pid: str, offer: dict[str, Any]) -> Negotiation:
        neg = self._mine(pid, Role.PROVIDER)
        offer = {**offer, "@type": "Offer", "target": neg.dataset_id}
        msg = m.ContractOfferMessage(providerPid=neg.id, consumerPid=neg.consumer_pid, offer=offer)
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
        self.rt.store.put_agreement(record)
        neg = self._move(neg, msg, Role.PROVIDER, agreement_id=record.id)
        self._send(neg, msg, "/negotiations/{peer}/agreement", body=payload)
        return neg

    def finalize(self, pid: str) -> Negotiation:
        neg = self._mine(pid, Role.PROVIDER)
        msg = m.ContractNegotiationEventMessage(
            providerPid=neg.id, consumerPid=neg.consumer_pid or "", eventType=CNEvent.FINALIZED
        )
        neg = self._move(neg, CNEvent.FINALIZED, Role.PROVIDER)
        self._send(neg, msg, "/negotiations/{peer}/events")
        return neg

    # sending ---------------------------------------------------------------------------------

    async def _delivered_earlier(self, record: Negotiation, payload: Send) -> str | None:
        """After a lost answer: did the peer already apply our message?"""
        assert isinstance(payload, NegotiationSend)
        url = f"{record.counterparty_address.rstrip('/')}/negotiations/{peer_pid(record)}"
        try:
            _, body = await self.client.call("GET", url, record.counterparty_id)
        except PeerError:
            return None
        if not isinstance(body, dict) or not isinstance(body.get("state"), str):
            return None
        state, expect = str(body["state"]), payload.expect
        # A peer found further on the way to an agreement has applied our message too.
        ahead = _PROGRESS.get(state, -1) > _PROGRESS.get(expect, len(_PROGRESS))
        return "delivered earlier (peer state)" if state == expect or ahead else None

    # reactions -------------------------------------------------------------------------------

    async def _reaction(self, record: Negotiation) -> None:
        if record.role == Role.PROVIDER:
            await self._provider_reaction(record)
        else:
            await self._unless_moved(record, self._consumer_reaction)

    async def _provider_reaction(self, neg: Negotiation) -> None:
        if neg.state == CN.ACCEPTED:
            await self._unless_moved(neg, lambda n: self.agree(n.id))
        elif neg.state == CN.VERIFIED:
            await self._unless_moved(neg, lambda n: self.finalize(n.id))
        elif neg.state == CN.REQUESTED:
            await self._decide(neg)

    async def _decide(self, neg: Negotiation) -> None:
        """Provider: the policy's answer to a request, then agree, counter-offer or refuse."""
        dataset = await self.rt.db.read(lambda s: s.get_dataset(neg.dataset_id))
        try:
            published = _offer_of(dataset, neg.dataset_id, str(neg.offer.get("@id")))
        except BadRequest as exc:
            reasons = exc.reasons
            await self._unless_moved(neg, lambda n: self.terminate(n.id, reasons))
            return
        decision = await self.rt.decisions.decide(
            DecisionInput(
                phase=Phase.NEGOTIATION,
                provider=Party(id=self.rt.did),
                consumer=Party(id=neg.counterparty_id, credentials=neg.counterparty_credentials),
                dataset=dataset_facts(dataset, neg.dataset_id, self.rt.did),
                policy=published,
                request={"purpose": neg.purpose, "process_id": neg.id},
            )
        )

        def answer(current: Negotiation) -> None:
            if not decision.allow:
                refused = decision.reasons or ["refused by policy"]
                self.terminate(current.id, refused, code="POLICY")
            elif _rules(published) == _rules(current.offer):
                self.agree(current.id)
            else:
                self.rt.log(
                    current.id,
                    Direction.NOTE,
                    "counter-offer",
                    detail="requested terms differ from the offer",
                )
                self.counter_offer(current.id, published)

        await self._unless_moved(neg, answer)

    def _consumer_reaction(self, neg: Negotiation) -> None:
        """(in a unit)"""
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
