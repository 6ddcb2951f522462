"""Transfer process in both roles, and the data-plane jobs that move the bytes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from connector.catalog.render import FORMATS
from connector.dataplane import tokens
from connector.dsp.callbacks import check_callback
from connector.dsp.client import DspClient
from connector.dsp.negotiation import new_pid
from connector.egress import EgressRefused
from connector.errors import BadRequest, Conflict, NotFound, PeerError
from connector.model import messages as m
from connector.model.enums import Direction, Role, TransferFormat
from connector.model.jobs import Pull, Push, TransferReact, TransferSend
from connector.model.records import Agreement, Dataset, Job, Transfer
from connector.model.states import CN, TP, TP_TERMINAL, transfer_next
from connector.outbox import Outbox
from connector.policy.decision import Decision, DecisionInput, Party, Phase
from connector.policy.inputs import agreement_usage, dataset_facts
from connector.runtime import Runtime
from connector.store.base import Duplicate

HTTP_ENDPOINT = "https://w3id.org/idsa/v4.1/HTTP"
Reaction = Callable[[Transfer], Awaitable[bool]]


class UsageHooks(Protocol):
    """What usage control (connector/usage) needs to hear from the transfer process."""

    def guard_transfer(self, agreement: Agreement, caller: str) -> None: ...
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


def _address(endpoint: str, token: str) -> dict[str, Any]:
    return m.DataAddress(
        endpointType=HTTP_ENDPOINT,
        endpoint=endpoint,
        endpointProperties=[
            m.EndpointProperty(name="authorization", value=token),
            m.EndpointProperty(name="authType", value="bearer"),
        ],
    ).model_dump(by_alias=True, exclude_none=True)


class TransferService:
    def __init__(self, runtime: Runtime, outbox: Outbox, client: DspClient) -> None:
        self.rt = runtime
        self.outbox = outbox
        self.client = client
        self.script: Reaction | None = None
        self.usage: UsageHooks | None = None
        self._deciding = KeyedLocks()
        outbox.register(TransferSend.KIND, self._send_job, self._send_failed)
        outbox.register(TransferReact.KIND, self._react_job, self._react_failed)

    # lookups ---------------------------------------------------------------------------------

    def owned(self, pid: str, caller: str) -> Transfer:
        tp = self.rt.store.get_transfer(pid)
        if tp is None or tp.counterparty_id != caller:
            raise NotFound(f"no transfer process {pid}")
        return tp

    def get(self, pid: str) -> Transfer:
        tp = self.rt.store.get_transfer(pid)
        if tp is None:
            raise NotFound(f"no transfer process {pid}")
        return tp

    @staticmethod
    def ack(tp: Transfer) -> dict[str, Any]:
        return m.TransferProcess(
            providerPid=tp.provider_pid or "", consumerPid=tp.consumer_pid or "", state=tp.state
        ).dump()

    def _move(
        self, tp: Transfer, message: m.Message | type[m.Message], sender: Role, **fields: Any
    ) -> Transfer:
        # The state as it is now, locked: of two replicas handling messages for this
        # transfer at once, the second sees the first one's transition.
        current = self.rt.store.lock_transfer(tp.id) or tp
        nxt = transfer_next(current.state, message, sender)
        if _serves_pull(current) and nxt != TP.STARTED:
            fields = {**fields, "data_address": None}  # the pull token is revoked
        return self.rt.store.update_transfer(tp.id, state=nxt.value, **fields)

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
        return _address(endpoint, token), _address(endpoint, tokens.digest(token))

    def _received(self, tp: Transfer, msg: m.Message, **kw: Any) -> None:
        self.rt.log(tp.id, Direction.RECEIVED, msg.type, state=tp.state, body=msg.dump(), **kw)

    def react(self, tp: Transfer) -> None:
        self.outbox.enqueue(tp.id, TransferReact(state=tp.state))

    # incoming --------------------------------------------------------------------------------

    async def on_request(
        self, msg: m.TransferRequestMessage, caller: str, claims: dict[str, Any] | None = None
    ) -> tuple[Transfer, bool]:
        existing = self.rt.store.find_transfer(
            role=Role.PROVIDER, consumer_pid=msg.consumerPid, counterparty_id=caller
        )
        if existing is not None:
            return existing, False
        agreement = self.rt.store.get_agreement(msg.agreementId)
        if agreement is None or agreement.provider_id != self.rt.did:
            raise BadRequest(f"unknown agreement {msg.agreementId}")
        if agreement.consumer_id != caller:
            raise BadRequest(f"agreement {msg.agreementId} was not made with {caller}")
        await check_callback(self.rt, caller, msg.callbackAddress)
        neg = self.rt.store.get_negotiation(agreement.negotiation_id)
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
            refused = await self._endpoint_refusal(msg.dataAddress)
            if refused is not None:
                raise BadRequest(f"the push dataAddress is refused: {refused}")
        if self.usage is not None:
            self.usage.guard_transfer(agreement, caller)
        purpose = (msg.model_extra or {}).get(m.PURPOSE) or (neg.purpose if neg else None)
        dataset = self.rt.store.get_dataset(agreement.dataset_id)
        # Decide and reserve atomically per agreement (issue 13, finding 6): one request at a
        # time in this process; across processes (replicas), the usage the decision saw must
        # still hold under the agreement's row lock when the transfer and its reservation
        # are written, or the request is decided again on the new usage.
        async with self._deciding.hold(agreement.id):
            for _ in range(DECISION_ROUNDS):
                usage = self._usage(agreement)
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
                    with self.rt.store.transaction():
                        self.rt.store.lock_agreement(agreement.id)
                        now = self._usage(agreement)
                        if now != usage:
                            continue  # another replica accepted or ended one: decide again
                        again = self.rt.store.find_transfer(
                            role=Role.PROVIDER, consumer_pid=msg.consumerPid, counterparty_id=caller
                        )
                        if again is not None:
                            return again, False  # the same request, accepted while we waited
                        self.rt.store.insert_transfer(tp)
                        if self.usage is not None:
                            self.usage.transfer_decided(tp, decision)
                        self._received(tp, msg)
                        self.react(tp)
                except Duplicate:
                    # another replica created it from the same request a moment ago
                    found = self.rt.store.find_transfer(
                        role=Role.PROVIDER, consumer_pid=msg.consumerPid, counterparty_id=caller
                    )
                    if found is None:
                        raise
                    return found, False
                return tp, True
        raise Conflict(
            f"agreement {agreement.id}: other transfer requests kept changing its usage while"
            " this one was decided; send it again"
        )

    def _usage(self, agreement: Agreement) -> dict[str, Any]:
        """The agreement's usage as the transfer decision sees it, disputed windows included."""
        return agreement_usage(
            self.rt.store,
            agreement.id,
            agreement.body.get("timestamp"),
            receipt_seconds=self.rt.settings.metering_receipt_seconds,
            max_disputed=self.rt.settings.metering_max_disputed_windows,
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
        tp_id = new_pid()
        return Transfer(
            id=tp_id,
            role=Role.PROVIDER,
            state=TP.REQUESTED.value,
            provider_pid=tp_id,
            consumer_pid=msg.consumerPid,
            agreement_id=msg.agreementId,
            dataset_id=agreement.dataset_id,
            format=msg.format,
            counterparty_id=caller,
            counterparty_address=msg.callbackAddress,
            data_address=msg.dataAddress.model_dump(by_alias=True, exclude_none=True)
            if msg.dataAddress
            else None,
            purpose=purpose if isinstance(purpose, str) else None,
            limit_bytes=limit_bytes,
        )

    async def on_message(self, msg: m.Message, caller: str, pid: str) -> Transfer:
        """Start, completion, suspension or termination, in either role."""
        tp = self.owned(pid, caller)
        provider_pid = getattr(msg, "providerPid", None)
        consumer_pid = getattr(msg, "consumerPid", None)
        if tp.provider_pid and provider_pid != tp.provider_pid:
            raise BadRequest(f"providerPid {provider_pid} does not belong to this transfer")
        if tp.consumer_pid and consumer_pid != tp.consumer_pid:
            raise BadRequest(f"consumerPid {consumer_pid} does not belong to this transfer")
        sender = tp.role.other
        fields: dict[str, Any] = {}
        if tp.role == Role.CONSUMER and not tp.provider_pid and provider_pid:
            fields["provider_pid"] = provider_pid
        if isinstance(msg, m.TransferStartMessage) and msg.dataAddress is not None:
            if tp.role == Role.CONSUMER and tp.format.is_pull:
                await self._refuse_pull_address(tp, msg.dataAddress, provider_pid)
            fields["data_address"] = msg.dataAddress.model_dump(by_alias=True, exclude_none=True)
        reason = getattr(msg, "reason", None)
        if reason:
            fields["reason"] = [str(r) for r in reason]
        renewed = None
        if isinstance(msg, m.TransferStartMessage) and _serves_pull(tp):
            # the consumer resumes: its token was revoked at suspension, send it a new one
            renewed, fields["data_address"] = self._pull_address(tp)
        with self.rt.store.transaction():
            current = self.rt.store.lock_transfer(tp.id) or tp
            if _new_pull_address(current, msg):
                # the provider's answer to our resume: the same STARTED transfer, a new token
                tp = self.rt.store.update_transfer(tp.id, **fields)
            else:
                tp = self._move(tp, msg, sender, **fields)
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

    async def _endpoint_refusal(self, address: m.DataAddress) -> str | None:
        """Why a peer's DataAddress may not be used (None if it may): the endpoint must be an
        http(s) URL the egress guard would reach. Checked when the address arrives, so a
        request forgery is refused before a byte (or a bearer token) is sent to it."""
        endpoint = address.endpoint
        if not endpoint or not endpoint.lower().startswith(("https://", "http://")):
            return "the endpoint must be an http(s) URL"
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
        refused = await self._endpoint_refusal(address)
        if refused is None:
            return
        reason = f"the provider's pull dataAddress is refused: {refused}"
        with self.rt.store.transaction():
            if not tp.provider_pid and provider_pid:
                self.rt.store.update_transfer(tp.id, provider_pid=provider_pid)
            self.rt.log(tp.id, Direction.REFUSED, "TransferStartMessage", detail=reason)
        if tp.state not in TP_TERMINAL:
            self.terminate(tp.id, [reason], code="DATA_ADDRESS")
        raise BadRequest(reason)

    # operator actions ------------------------------------------------------------------------

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
            data_address = _address(f"{self.rt.settings.base_url}/data/push/{tp_id}", token)
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
        with self.rt.store.transaction():
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
        with self.rt.store.transaction():
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
        with self.rt.store.transaction():
            tp = self._move(tp, msg, tp.role)
            self._send(tp, msg, "/transfers/{peer}/completion")
        return tp

    def suspend(self, pid: str, reason: list[str]) -> Transfer:
        tp = self.get(pid)
        msg = m.TransferSuspensionMessage(
            providerPid=tp.provider_pid or "", consumerPid=tp.consumer_pid or "", reason=reason
        )
        with self.rt.store.transaction():
            tp = self._move(tp, msg, tp.role, reason=reason)
            self._send(tp, msg, "/transfers/{peer}/suspension")
        return tp

    def terminate(self, pid: str, reason: list[str], code: str | None = None) -> Transfer:
        tp = self.get(pid)
        msg = m.TransferTerminationMessage(
            providerPid=tp.provider_pid or "",
            consumerPid=tp.consumer_pid or "",
            code=code,
            reason=reason,
        )
        with self.rt.store.transaction():
            tp = self._move(tp, msg, tp.role, reason=reason)
            self._send(tp, msg, "/transfers/{peer}/termination")
        return tp

    # sending ---------------------------------------------------------------------------------

    def _send(self, tp: Transfer, msg: m.Message, path: str, *, renewal: bool = False) -> None:
        # renewal: a new pull token after a resume (see on_message)
        payload = TransferSend(
            type=msg.type, path=path, message=msg.dump(), renewal=renewal or None
        )
        self.outbox.enqueue(tp.id, payload)

    async def _send_job(self, job: Job) -> None:
        tp = self.get(job.process_id)
        payload = job.read(TransferSend)
        message = dict(payload.message)
        peer_pid = tp.provider_pid if tp.role == Role.CONSUMER else tp.consumer_pid
        path = payload.path
        if "{peer}" in path:
            if not peer_pid:
                raise PeerError("the counterparty's process id is not known yet", retry=False)
            path = path.replace("{peer}", peer_pid)
            message["providerPid" if tp.role == Role.CONSUMER else "consumerPid"] = peer_pid
        url = tp.counterparty_address.rstrip("/") + path
        try:
            status, body = await self.client.call("POST", url, tp.counterparty_id, message)
        except PeerError as exc:
            if exc.http_status == 400 and job.attempts > 0:
                self.rt.log(
                    tp.id,
                    Direction.NOTE,
                    payload.type,
                    detail="delivered earlier (retry refused)",
                )
                return
            if not exc.retry:
                self.rt.log(
                    tp.id,
                    Direction.REFUSED,
                    payload.type,
                    status=exc.http_status,
                    body=exc.body,
                    detail=str(exc),
                )
            raise
        with self.rt.store.transaction():
            initial = payload.type == m.TransferRequestMessage.TYPE and not tp.provider_pid
            if initial and isinstance(body, dict) and isinstance(body.get("providerPid"), str):
                self.rt.store.update_transfer(tp.id, provider_pid=body["providerPid"])
            self.rt.log(
                tp.id, Direction.SENT, payload.type, status=status, body=message, state=tp.state
            )

    async def _send_failed(self, job: Job, why: str) -> None:
        tp = self.get(job.process_id)
        sent = job.read(TransferSend)
        reason = f"{sent.type} was not delivered: {why}"
        if tp.state in TP_TERMINAL or sent.renewal:
            # a consumer that did not take a renewed pull token can resume again; the
            # transfer itself is not broken by it
            self.rt.log(tp.id, Direction.NOTE, sent.type, detail=reason)
            return
        with self.rt.store.transaction():
            tp = self.rt.store.update_transfer(tp.id, state=TP.TERMINATED.value, reason=[reason])
            self.rt.log(tp.id, Direction.NOTE, "TERMINATED", state=tp.state, detail=reason)
            peer_pid = tp.provider_pid if tp.role == Role.CONSUMER else tp.consumer_pid
            if peer_pid and sent.type != m.TransferTerminationMessage.TYPE:
                msg = m.TransferTerminationMessage(
                    providerPid=tp.provider_pid or "",
                    consumerPid=tp.consumer_pid or "",
                    reason=[reason],
                )
                self._send(tp, msg, "/transfers/{peer}/termination")

    # reactions -------------------------------------------------------------------------------

    async def _react_job(self, job: Job) -> None:
        tp = self.get(job.process_id)
        if tp.state != job.read(TransferReact).state:
            return
        if self.script is not None and await self.script(tp):
            return
        if tp.role == Role.PROVIDER and tp.state == TP.REQUESTED:
            self.start(tp.id)
        elif tp.role == Role.PROVIDER and tp.state == TP.STARTED and tp.format.is_push:
            self.outbox.enqueue(tp.id, Push())
        elif tp.role == Role.CONSUMER and tp.state == TP.STARTED and tp.format.is_pull:
            self.outbox.enqueue(tp.id, Pull())

    async def _react_failed(self, job: Job, why: str) -> None:
        tp = self.get(job.process_id)
        if tp.state not in TP_TERMINAL:
            self.terminate(tp.id, [f"internal error while reacting: {why}"])
