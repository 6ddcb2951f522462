"""Transfer process in both roles, and the data-plane jobs that move the bytes."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from enum import StrEnum
from typing import Any, Protocol

from connector.catalog.render import FORMATS
from connector.dataplane import sources, tokens
from connector.dataplane.addresses import Unservable, pull_address, push_destination, resolve
from connector.dsp.process import TRANSFER, ProcessService, Send, new_pid, opened
from connector.egress import EgressRefused
from connector.errors import BadRequest, Conflict, NotFound
from connector.model import messages as m
from connector.model.enums import Direction, Role, TransferFormat
from connector.model.jobs import Pull, Push, TransferSend
from connector.model.records import Agreement, Dataset, Transfer
from connector.model.states import CN, TP, TP_TERMINAL
from connector.outbox import Outbox
from connector.peer.callbacks import check_callback
from connector.peer.client import DspClient
from connector.policy.decision import Decision, DecisionInput, Party, Phase
from connector.policy.inputs import agreement_usage, dataset_facts
from connector.runtime import Runtime
from connector.store.base import Duplicate, Store

Reaction = Callable[[Transfer], Awaitable[bool]]


class UsageHooks(Protocol):
    """What usage control (connector/usage) needs to hear from the transfer process."""

    async def guard_transfer(self, agreement: Agreement, caller: str) -> None: ...
    def transfer_decided(self, tp: Transfer, decision: Decision) -> None: ...
    async def delivered(self, tp: Transfer) -> None: ...


# How often one transfer request is decided again because other replicas kept accepting or
# ending transfers under the same agreement between its decision and its reservation.
DECISION_ROUNDS = 10


class KeyedLocks:
    """One asyncio lock per key (an agreement), dropped when no one holds or awaits it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


def _reservation(decision: Decision, dataset: Dataset | None, usage: dict[str, Any]) -> int | None:
    """The bytes an accepted transfer reserves and may send at most: the volume the policy
    leaves (`bytes_remaining`), or the dataset's size if that is smaller; None without a
    volume limit. A transfer that could send nothing of a non-empty dataset is refused."""
    limit = decision.limits.get("bytes_remaining")
    if isinstance(limit, bool) or not isinstance(limit, int | float):
        return None
    reserved = max(0, int(limit))
    size = dataset.size if dataset is not None else None
    if size is not None:
        reserved = min(reserved, size)
    if reserved == 0 and size != 0:
        raise BadRequest(
            "transfer refused: no bytes are left of the agreed volume"
            f" ({usage.get('bytes', 0)} bytes delivered or reserved by transfers under way)"
        )
    return reserved


def _serves_pull(tp: Transfer) -> bool:
    return tp.role == Role.PROVIDER and tp.format.is_pull


def _new_pull_address(tp: Transfer, msg: m.Message) -> bool:
    """Consumer: a provider's TransferStartMessage to a STARTED pull we resumed renews its
    DataAddress (the token from before the suspension no longer works)."""
    return (
        isinstance(msg, m.TransferStartMessage)
        and msg.dataAddress is not None
        and tp.role == Role.CONSUMER
        and tp.format.is_pull
        and tp.state == TP.STARTED
        and tp.data_address is None  # cleared when we resumed: only that answer is taken
    )


class TransferService(ProcessService[Transfer]):
    KIND = TRANSFER

    def __init__(self, runtime: Runtime, outbox: Outbox, client: DspClient) -> None:
        super().__init__(runtime, outbox, client)
        self.usage: UsageHooks | None = None
        self._deciding = KeyedLocks()

    def _moved(self, current: Transfer, nxt: StrEnum, fields: dict[str, Any]) -> dict[str, Any]:
        if _serves_pull(current) and nxt != TP.STARTED:
            return {**fields, "data_address": None}  # the pull token is revoked
        return fields

    def _pull_address(self, tp: Transfer) -> tuple[dict[str, Any], dict[str, Any]]:
        """Provider: a fresh pull DataAddress for the consumer, and what we keep of it (the
        token's digest: serve_pull honours only the token issued last, while STARTED)."""
        token = tokens.issue(
            self.rt.keys,
            self.rt.did,
            tp.id,
            tp.counterparty_id,
            self.rt.settings.transfer_token_ttl_seconds,
        )
        endpoint = f"{self.rt.settings.base_url}/data/pull/{tp.id}"
        return pull_address(endpoint, token), pull_address(endpoint, tokens.digest(token))

    # incoming --------------------------------------------------------------------------------

    async def on_request(
        self, msg: m.TransferRequestMessage, caller: str, claims: dict[str, Any] | None = None
    ) -> tuple[Transfer, bool]:
        match = {
            "role": Role.PROVIDER.value,
            "consumer_pid": msg.consumerPid,
            "counterparty_id": caller,
        }

        def found(store: Store) -> tuple[Transfer | None, Agreement | None, Any, Any]:
            existing = store.find_transfer(**match)
            agreement = store.get_agreement(msg.agreementId)
            if existing is not None or agreement is None:
                return existing, agreement, None, None
            neg = store.get_negotiation(agreement.negotiation_id)
            return None, agreement, neg, store.get_dataset(agreement.dataset_id)

        existing, agreement, neg, dataset = await self.rt.db.read(found)
        if existing is not None:
            return existing, False
        if agreement is None or agreement.provider_id != self.rt.did:
            raise BadRequest(f"unknown agreement {msg.agreementId}")
        if agreement.consumer_id != caller:
            raise BadRequest(f"agreement {msg.agreementId} was not made with {caller}")
        await check_callback(self.rt, caller, msg.callbackAddress)
        if neg is not None and neg.state != CN.FINALIZED:
            raise BadRequest(
                f"agreement {msg.agreementId} is not finalized (negotiation {neg.state})"
            )
        if msg.format not in FORMATS:
            raise BadRequest(f"unsupported format {msg.format}; supported: {', '.join(FORMATS)}")
        fmt = TransferFormat(msg.format)
        if fmt.is_push and msg.dataAddress is None:
            raise BadRequest("a push transfer needs the consumer's dataAddress")
        if fmt.is_push and msg.dataAddress is not None:
            refused = await self._endpoint_refusal(msg.dataAddress, push=True)
            if refused is not None:
                raise BadRequest(f"the push dataAddress is refused: {refused}")
        if dataset is not None:
            # refused before anything is accepted: no pull would ever find the data
            try:
                sources.require(dataset.source, f"transfer request for {dataset.id}")
            except sources.SourceMissing as exc:
                raise BadRequest(f"transfer refused: {exc.detail}", reasons=[exc.detail]) from exc
        if self.usage is not None:
            await self.usage.guard_transfer(agreement, caller)
        purpose = (msg.model_extra or {}).get(m.PURPOSE) or (neg.purpose if neg else None)
        # Decide and reserve atomically per agreement (issue 13, finding 6): one request at a
        # time in this process; across processes (replicas), the usage the decision saw must
        # still hold under the agreement's row lock when the transfer and its reservation
        # are written, or the request is decided again on the new usage.
        async with self._deciding.hold(agreement.id):
            for _ in range(DECISION_ROUNDS):
                usage = await self.rt.db.read(lambda s: self._usage(s, agreement))
                decision = await self.rt.decisions.decide(
                    DecisionInput(
                        phase=Phase.TRANSFER,
                        provider=Party(id=self.rt.did),
                        consumer=Party(id=caller, credentials=claims or {}),
                        dataset=dataset_facts(dataset, agreement.dataset_id, self.rt.did),
                        policy=agreement.body,
                        request={
                            "format": msg.format,
                            "purpose": purpose,
                            "bytes": 0,
                            "records": 0,
                            "agreement": agreement.id,
                            # a transfer that cannot fit the volume left is refused up front
                            "dataset_bytes": dataset.size if dataset is not None else None,
                        },
                        usage=usage,
                    )
                )
                if not decision.allow:
                    raise BadRequest(
                        "transfer refused by policy: " + "; ".join(decision.reasons),
                        reasons=decision.reasons,
                    )
                tp = self._accepted(
                    msg, caller, agreement, purpose, _reservation(decision, dataset, usage)
                )
                try:
                    reserve = functools.partial(
                        self._reserve,
                        msg=msg,
                        tp=tp,
                        agreement=agreement,
                        usage=usage,
                        decision=decision,
                        match=match,
                    )
                    written = await self.rt.db.write(reserve)
                except Duplicate:
                    # another replica created it from the same request a moment ago
                    again = await self.rt.db.read(lambda s: s.find_transfer(**match))
                    if again is None:
                        raise
                    return again, False
                if written is not None:
                    return written
                # another replica accepted or ended one: decide again
        raise Conflict(
            f"agreement {agreement.id}: other transfer requests kept changing its usage while"
            " this one was decided; send it again"
        )

    def _reserve(
        self,
        store: Store,
        msg: m.TransferRequestMessage,
        tp: Transfer,
        agreement: Agreement,
        usage: dict[str, Any],
        decision: Decision,
        match: dict[str, str],
    ) -> tuple[Transfer, bool] | None:
        """(a unit) Write the accepted transfer and its reservation if the agreement's usage
        is still what the decision saw; None if it changed (decide again)."""
        store.lock_agreement(agreement.id)
        if self._usage(store, agreement) != usage:
            return None
        again = store.find_transfer(**match)
        if again is not None:
            return again, False  # the same request, accepted while we waited
        store.insert_transfer(tp)
        if self.usage is not None:
            self.usage.transfer_decided(tp, decision)
        self._received(tp, msg)
        self.react(tp)
        return tp, True

    def _usage(self, store: Store, agreement: Agreement) -> dict[str, Any]:
        """The agreement's usage as the transfer decision sees it, disputed windows and the
        consumer's overdue deletions included."""
        return agreement_usage(
            store,
            agreement.id,
            agreement.body.get("timestamp"),
            receipt_seconds=self.rt.settings.metering_receipt_seconds,
            max_disputed=self.rt.settings.metering_max_disputed_windows,
            # what an overdue deletion blocks, the policy decides (deletion.rego)
            overdue_of=agreement.consumer_id
            if self.rt.settings.deletion_overdue_blocks_transfers
            else None,
        )

    def _accepted(
        self,
        msg: m.TransferRequestMessage,
        caller: str,
        agreement: Agreement,
        purpose: Any,
        limit_bytes: int | None,
    ) -> Transfer:
        """The provider's record of a transfer request the policy allowed."""
        return Transfer(
            **opened(Role.PROVIDER, caller, msg.callbackAddress, msg.consumerPid),
            state=TP.REQUESTED.value,
            agreement_id=msg.agreementId,
            dataset_id=agreement.dataset_id,
            format=msg.format,
            data_address=msg.dataAddress.model_dump(by_alias=True, exclude_none=True)
            if msg.dataAddress
            else None,
            purpose=purpose if isinstance(purpose, str) else None,
            limit_bytes=limit_bytes,
        )

    async def on_message(self, msg: m.Message, caller: str, pid: str) -> Transfer:
        """Start, completion, suspension or termination, in either role."""
        if isinstance(msg, m.TransferStartMessage) and msg.dataAddress is not None:
            tp = await self.rt.db.read(lambda s: self._addressed(s, msg, caller, pid))
            if tp.role == Role.CONSUMER and tp.format.is_pull:
                await self._refuse_pull_address(tp, msg.dataAddress, msg.providerPid)
        return await self.rt.db.write(lambda _s: self._receive(msg, caller, pid))

    def _addressed(self, store: Store, msg: m.Message, caller: str, pid: str) -> Transfer:
        """The transfer `msg` is for: ours with `caller`, the pids matching."""
        tp = self.owned(pid, caller, store)
        self._check_pids(tp, getattr(msg, "providerPid", None), getattr(msg, "consumerPid", None))
        return tp

    def _receive(self, msg: m.Message, caller: str, pid: str) -> Transfer:
        """(a unit) Apply the peer's message."""
        tp = self._addressed(self.rt.store, msg, caller, pid)
        provider_pid = getattr(msg, "providerPid", None)
        fields: dict[str, Any] = {}
        if tp.role == Role.CONSUMER and not tp.provider_pid and provider_pid:
            fields["provider_pid"] = provider_pid
        if isinstance(msg, m.TransferStartMessage) and msg.dataAddress is not None:
            fields["data_address"] = msg.dataAddress.model_dump(by_alias=True, exclude_none=True)
        reason = getattr(msg, "reason", None)
        if reason:
            fields["reason"] = [str(r) for r in reason]
        renewed = None
        if isinstance(msg, m.TransferStartMessage) and _serves_pull(tp):
            # the consumer resumes: its token was revoked at suspension, send it a new one
            renewed, fields["data_address"] = self._pull_address(tp)
        current = self.rt.store.lock_transfer(tp.id) or tp
        if _new_pull_address(current, msg):
            # the provider's answer to our resume: the same STARTED transfer, a new token
            tp = self.rt.store.update_transfer(tp.id, **fields)
        else:
            tp = self._move(tp, msg, tp.role.other, **fields)
        self._received(tp, msg, detail="; ".join(fields.get("reason", [])))
        self.react(tp)
        if renewed is not None:
            start = m.TransferStartMessage(
                providerPid=tp.provider_pid or "",
                consumerPid=tp.consumer_pid or "",
                dataAddress=renewed,
            )
            self._send(tp, start, "/transfers/{peer}/start", renewal=True)
        return tp

    async def _endpoint_refusal(self, address: m.DataAddress, *, push: bool) -> str | None:
        """Why a peer's DataAddress may not be used (None if it may): it must name, in our
        form or EDC's, an http(s) URL the egress guard would reach, with auth we can send.
        Checked when the address arrives, so a request forgery (or a destination we could
        never serve) is refused before the transfer is accepted or a byte (or a bearer
        token) is sent to it."""
        try:
            endpoint = resolve(address.model_dump(by_alias=True, exclude_none=True), push=push).url
        except Unservable as exc:
            return exc.detail
        try:
            await self.rt.egress.policy.check_destination(endpoint)
        except EgressRefused as exc:
            return exc.detail
        return None

    async def _refuse_pull_address(
        self, tp: Transfer, address: m.DataAddress, provider_pid: str | None
    ) -> None:
        """Consumer: a provider naming a pull endpoint we may not reach ends the transfer; the
        reason is our own words, never text from that endpoint."""
        refused = await self._endpoint_refusal(address, push=False)
        if refused is None:
            return
        reason = f"the provider's pull dataAddress is refused: {refused}"

        def refuse(store: Store) -> None:
            if not tp.provider_pid and provider_pid:
                store.update_transfer(tp.id, provider_pid=provider_pid)
            self.rt.log(tp.id, Direction.REFUSED, "TransferStartMessage", detail=reason)
            if self.get(tp.id).state not in TP_TERMINAL:
                self.terminate(tp.id, [reason], code="DATA_ADDRESS")

        await self.rt.db.write(refuse)
        raise BadRequest(reason)

    # operator actions (each in a unit: `await service.act(service.start, pid)`) --------------

    def request(self, agreement_id: str, fmt: str, purpose: str | None = None) -> Transfer:
        """Consumer: ask the provider to transfer the data of a finalized agreement."""
        agreement = self.rt.store.get_agreement(agreement_id)
        if agreement is None or agreement.consumer_id != self.rt.did:
            raise NotFound(f"no agreement {agreement_id} with this connector as consumer")
        neg = self.rt.store.get_negotiation(agreement.negotiation_id)
        if neg is None or neg.state != CN.FINALIZED:
            raise BadRequest(f"agreement {agreement_id} is not finalized")
        if fmt not in FORMATS:
            raise BadRequest(f"format must be one of {', '.join(FORMATS)}")
        tp_id = new_pid()
        data_address = None
        if TransferFormat(fmt).is_push:
            token = tokens.issue(
                self.rt.keys,
                self.rt.did,
                tp_id,
                agreement.provider_id,
                self.rt.settings.transfer_token_ttl_seconds,
            )
            data_address = push_destination(f"{self.rt.settings.base_url}/data/push/{tp_id}", token)
        tp = Transfer(
            id=tp_id,
            role=Role.CONSUMER,
            state=TP.REQUESTED.value,
            consumer_pid=tp_id,
            agreement_id=agreement_id,
            dataset_id=agreement.dataset_id,
            format=fmt,
            counterparty_id=agreement.provider_id,
            counterparty_address=neg.counterparty_address,
            data_address=data_address,
            purpose=purpose or neg.purpose,
        )
        declared = {m.PURPOSE: tp.purpose} if tp.purpose else {}
        msg = m.TransferRequestMessage(
            consumerPid=tp_id,
            agreementId=agreement_id,
            format=fmt,
            callbackAddress=self.rt.settings.dsp_url,
            dataAddress=data_address,
            **declared,
        )
        self.rt.store.insert_transfer(tp)
        self._send(tp, msg, "/transfers/request")
        return tp

    def start(self, pid: str) -> Transfer:
        """Provider: start (or resume) the transfer; pull gets a fresh token."""
        tp = self.get(pid)
        data_address = None
        fields: dict[str, Any] = {}
        if _serves_pull(tp):
            data_address, fields["data_address"] = self._pull_address(tp)
        elif tp.role == Role.CONSUMER and tp.format.is_pull:
            # resuming: the provider revoked the old token at suspension; the pull goes on
            # when its TransferStartMessage brings a new DataAddress (see on_message)
            fields["data_address"] = None
        msg = m.TransferStartMessage(
            providerPid=tp.provider_pid or "",
            consumerPid=tp.consumer_pid or "",
            dataAddress=data_address,
        )
        tp = self._move(tp, msg, tp.role, **fields)
        self._send(tp, msg, "/transfers/{peer}/start")
        if tp.role == Role.PROVIDER and tp.format.is_push:
            self.outbox.enqueue(tp.id, Push())
        return tp

    def complete(self, pid: str) -> Transfer:
        tp = self.get(pid)
        msg = m.TransferCompletionMessage(
            providerPid=tp.provider_pid or "", consumerPid=tp.consumer_pid or ""
        )
        tp = self._move(tp, msg, tp.role)
        self._send(tp, msg, "/transfers/{peer}/completion")
        return tp

    def suspend(self, pid: str, reason: list[str]) -> Transfer:
        tp = self.get(pid)
        msg = m.TransferSuspensionMessage(
            providerPid=tp.provider_pid or "", consumerPid=tp.consumer_pid or "", reason=reason
        )
        tp = self._move(tp, msg, tp.role, reason=reason)
        self._send(tp, msg, "/transfers/{peer}/suspension")
        return tp

    # reactions -------------------------------------------------------------------------------

    async def _reaction(self, record: Transfer) -> None:
        await self._unless_moved(record, self._react_now)

    def _react_now(self, tp: Transfer) -> None:
        """(in a unit)"""
        if tp.role == Role.PROVIDER and tp.state == TP.REQUESTED:
            self.start(tp.id)
        elif tp.role == Role.PROVIDER and tp.state == TP.STARTED and tp.format.is_push:
            self.outbox.enqueue(tp.id, Push())
        elif tp.role == Role.CONSUMER and tp.state == TP.STARTED and tp.format.is_pull:
            self.outbox.enqueue(tp.id, Pull())

    # sending ---------------------------------------------------------------------------------

    def _sending(self, record: Transfer, fields: dict[str, Any]) -> dict[str, Any]:
        # renewal: a new pull token after a resume (see on_message)
        return {**fields, "renewal": fields.get("renewal") or None}

    async def _delivered_earlier(self, record: Transfer, payload: Send) -> str | None:
        return "delivered earlier (retry refused)"

    def _failure_ends(self, payload: Send) -> bool:
        # a consumer that did not take a renewed pull token can resume again; the
        # transfer itself is not broken by it
        return not (isinstance(payload, TransferSend) and payload.renewal)
