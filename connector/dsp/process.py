"""What a negotiation and a transfer process share: lookups, moves, the outbox jobs that
send their messages and run their reactions, termination.

Two kinds of methods, by where they run:
- synchronous ones (`get`, `owned`, `_move`, `react`, `terminate`, the operator steps of
  the services) use the runtime's writer store: they run inside a `db.write` unit, so one
  incoming message or operator action is one transaction (state, timeline, queued jobs);
- `async` ones run on the event loop and reach the store only through `rt.db`.
`act(step, ...)` runs a synchronous step as one unit from the event loop.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Generic, ParamSpec, Protocol, TypeVar

from connector.errors import BadRequest, NotFound, PeerError
from connector.model import messages as m
from connector.model.enums import Direction, Role
from connector.model.jobs import NegotiationReact, NegotiationSend, TransferReact, TransferSend
from connector.model.records import Job, Negotiation, Transfer
from connector.model.states import CN_TERMINAL, TP_TERMINAL, negotiation_next, transfer_next
from connector.outbox import Outbox
from connector.peer.client import DspClient
from connector.runtime import Runtime
from connector.store.base import Store


class Record(Protocol):
    """A process record as the core sees it (Negotiation, Transfer)."""

    @property
    def id(self) -> str: ...
    @property
    def role(self) -> Role: ...
    @property
    def state(self) -> str: ...
    @property
    def provider_pid(self) -> str | None: ...
    @property
    def consumer_pid(self) -> str | None: ...
    @property
    def counterparty_id(self) -> str: ...
    @property
    def counterparty_address(self) -> str: ...


R = TypeVar("R", bound=Record)
P = ParamSpec("P")
T = TypeVar("T")
Send = NegotiationSend | TransferSend
Termination = m.ContractNegotiationTerminationMessage | m.TransferTerminationMessage


def new_pid() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def opened(role: Role, caller: str, address: str, peer: str | None) -> dict[str, Any]:
    """The fields every new process has: its id (our pid), the counterparty's pid if known
    (`peer`), who the counterparty is and where it is called back."""
    pid = new_pid()
    provider, consumer = (pid, peer) if role == Role.PROVIDER else (peer, pid)
    return {
        "id": pid,
        "role": role,
        "provider_pid": provider,
        "consumer_pid": consumer,
        "counterparty_id": caller,
        "counterparty_address": address,
    }


def peer_pid(record: Record) -> str | None:
    """The counterparty's id for the process (ours is `record.id`)."""
    return record.provider_pid if record.role == Role.CONSUMER else record.consumer_pid


@dataclass(frozen=True)
class Kind(Generic[R]):
    """One kind of process: its words, messages, jobs, state machine and repository."""

    noun: str  # in messages: "negotiation", "transfer process"
    path: str  # its DSP path: "/negotiations", "/transfers"
    terminal: frozenset[str]
    transition: Callable[[str, Any, Role], StrEnum]  # (state, message, sender) -> state
    send: type[NegotiationSend] | type[TransferSend]
    react: type[NegotiationReact] | type[TransferReact]
    ack: type[m.ContractNegotiation] | type[m.TransferProcess]
    termination: type[Termination]
    request: type[m.Message]  # the message whose answer names the provider's pid
    load: Callable[[Store, str], R | None]
    lock: Callable[[Store, str], R | None]
    update: Callable[..., R]  # (store, pid, **fields)


NEGOTIATION: Kind[Negotiation] = Kind(
    noun="negotiation",
    path="/negotiations",
    terminal=frozenset(CN_TERMINAL),
    transition=negotiation_next,
    send=NegotiationSend,
    react=NegotiationReact,
    ack=m.ContractNegotiation,
    termination=m.ContractNegotiationTerminationMessage,
    request=m.ContractRequestMessage,
    load=lambda store, pid: store.get_negotiation(pid),
    lock=lambda store, pid: store.lock_negotiation(pid),
    update=lambda store, pid, **fields: store.update_negotiation(pid, **fields),
)
TRANSFER: Kind[Transfer] = Kind(
    noun="transfer process",
    path="/transfers",
    terminal=frozenset(TP_TERMINAL),
    transition=transfer_next,
    send=TransferSend,
    react=TransferReact,
    ack=m.TransferProcess,
    termination=m.TransferTerminationMessage,
    request=m.TransferRequestMessage,
    load=lambda store, pid: store.get_transfer(pid),
    lock=lambda store, pid: store.lock_transfer(pid),
    update=lambda store, pid, **fields: store.update_transfer(pid, **fields),
)


class ProcessService(ABC, Generic[R]):
    """The DSP process core; a service adds its handlers, operator steps and reactions."""

    KIND: ClassVar[Kind[Any]]

    def __init__(self, runtime: Runtime, outbox: Outbox, client: DspClient) -> None:
        self.rt = runtime
        self.outbox = outbox
        self.client = client
        self.kind: Kind[R] = self.KIND
        # A scripted reaction (TCK mode) may take over; it returns True when it handled one.
        self.script: Callable[[R], Awaitable[bool]] | None = None
        outbox.register(self.kind.send.KIND, self._send_job, self._send_failed)
        outbox.register(self.kind.react.KIND, self._react_job, self._react_failed)

    def _moved(self, current: R, nxt: StrEnum, fields: dict[str, Any]) -> dict[str, Any]:
        """The fields a move to `nxt` writes besides the state (a service may add some)."""
        return fields

    # lookups ---------------------------------------------------------------------------------

    def get(self, pid: str, store: Store | None = None) -> R:
        record = self.kind.load(self.rt.store if store is None else store, pid)
        if record is None:
            raise NotFound(f"no {self.kind.noun} {pid}")
        return record

    def owned(self, pid: str, caller: str, store: Store | None = None) -> R:
        """The process `pid` if it is ours with `caller`; 404 hides foreign ones."""
        record = self.kind.load(self.rt.store if store is None else store, pid)
        if record is None or record.counterparty_id != caller:
            raise NotFound(f"no {self.kind.noun} {pid}")
        return record

    async def fetch(self, pid: str) -> R:
        """`get` from the event loop (a reader connection)."""
        return await self.rt.db.read(lambda s: self.get(pid, s))

    async def view(self, pid: str, caller: str) -> dict[str, Any]:
        """The DSP answer to a peer's GET of its process."""
        return self.ack(await self.rt.db.read(lambda s: self.owned(pid, caller, s)))

    async def role_of(self, pid: str | None) -> Role | None:
        """The role of process `pid` here, None if unknown (for the error's message type)."""
        if not pid:
            return None
        record = await self.rt.db.read(lambda s: self.kind.load(s, pid))
        return record.role if record else None

    def ack(self, record: R) -> dict[str, Any]:
        return self.kind.ack(
            providerPid=record.provider_pid or "",
            consumerPid=record.consumer_pid or "",
            state=record.state,
        ).dump()

    def _check_pids(self, record: R, provider_pid: str | None, consumer_pid: str | None) -> None:
        if record.provider_pid and provider_pid and provider_pid != record.provider_pid:
            raise BadRequest(f"providerPid {provider_pid} does not belong to this {self.kind.noun}")
        if record.consumer_pid and consumer_pid and consumer_pid != record.consumer_pid:
            raise BadRequest(f"consumerPid {consumer_pid} does not belong to this {self.kind.noun}")

    def _mine(self, pid: str, role: Role) -> R:
        record = self.get(pid)
        if record.role != role:
            raise BadRequest(
                f"this action is for the {role}; this {self.kind.noun}'s role is {record.role}"
            )
        return record

    # units -----------------------------------------------------------------------------------

    async def act(self, step: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a synchronous step (an operator action) as one store unit."""
        return await self.rt.db.write(lambda _store: step(*args, **kwargs))

    async def _unless_moved(self, record: R, step: Callable[[R], object]) -> None:
        """Run `step` on the current record as one unit, unless it left `record`'s state
        meanwhile (a reaction that awaited something is then out of date)."""

        def unit(store: Store) -> None:
            current = self.get(record.id)
            if current.state == record.state:
                step(current)

        await self.rt.db.write(unit)

    # moves -----------------------------------------------------------------------------------

    def _move(self, record: R, message: Any, sender: Role, **fields: Any) -> R:
        # The state as it is now, locked: of two replicas handling messages for this
        # process at once, the second sees the first one's transition.
        current = self.kind.lock(self.rt.store, record.id) or record
        nxt = self.kind.transition(current.state, message, sender)
        fields = self._moved(current, nxt, fields)
        return self.kind.update(self.rt.store, record.id, state=nxt.value, **fields)

    def _received(self, record: R, msg: m.Message, **kw: Any) -> None:
        self.rt.log(
            record.id, Direction.RECEIVED, msg.type, state=record.state, body=msg.dump(), **kw
        )

    def _ended_here(self, record: R, msg: m.Message, reasons: list[str]) -> R:
        """End `record` because of `msg`, which this side refuses: the refusal is its answer,
        no termination message follows."""
        self._received(record, msg, detail="refused: " + "; ".join(reasons))
        ended = self._move(record, self.kind.termination, record.role, reason=reasons)
        self.rt.log(ended.id, Direction.NOTE, "TERMINATED", state=ended.state, detail=reasons[0])
        return ended

    def react(self, record: R) -> None:
        self.outbox.enqueue(record.id, self.kind.react(state=record.state))

    def terminate(self, pid: str, reason: list[str], code: str | None = None) -> R:
        """(in a unit) End the process and tell the counterparty."""
        record = self.get(pid)
        msg = self.kind.termination(
            providerPid=record.provider_pid or "",
            consumerPid=record.consumer_pid or "",
            code=code,
            reason=reason,
        )
        record = self._move(record, msg, record.role, reason=reason)
        self._send(record, msg, self.kind.path + "/{peer}/termination")
        return record

    # sending ---------------------------------------------------------------------------------

    def _send(
        self,
        record: R,
        msg: m.Message,
        path: str,
        body: dict[str, Any] | None = None,
        **extra: Any,
    ) -> None:
        """(in a unit) Queue `msg` for the counterparty; `{peer}` in `path` is its pid."""
        fields = {"type": msg.type, "path": path, "message": body or msg.dump(), **extra}
        self.outbox.enqueue(record.id, self.kind.send(**self._sending(record, fields)))

    def _sending(self, record: R, fields: dict[str, Any]) -> dict[str, Any]:
        """The send job's fields (a service may add its own)."""
        return fields

    async def _delivered_earlier(self, record: R, payload: Send) -> str | None:
        """After our retry was refused (400): why it counts as delivered, or None."""
        return None

    async def _send_job(self, job: Job) -> None:
        record = await self.fetch(job.process_id)
        payload = job.read(self.kind.send)
        message = dict(payload.message)
        peer = peer_pid(record)
        path = payload.path
        if "{peer}" in path:
            if not peer:
                raise PeerError("the counterparty's process id is not known yet", retry=False)
            path = path.replace("{peer}", peer)
            message["providerPid" if record.role == Role.CONSUMER else "consumerPid"] = peer
        url = record.counterparty_address.rstrip("/") + path
        try:
            status, body = await self.client.call("POST", url, record.counterparty_id, message)
        except PeerError as exc:
            earlier = None
            if exc.http_status == 400 and job.attempts > 0:
                earlier = await self._delivered_earlier(record, payload)
            if earlier is not None:
                await self.rt.note(record.id, Direction.NOTE, payload.type, detail=earlier)
                return
            if not exc.retry:
                await self.rt.note(
                    record.id,
                    Direction.REFUSED,
                    payload.type,
                    status=exc.http_status,
                    body=exc.body,
                    detail=str(exc),
                )
            raise
        initial = payload.type == self.kind.request.TYPE and not record.provider_pid
        named = body.get("providerPid") if initial and isinstance(body, dict) else None

        def sent(store: Store) -> None:
            if isinstance(named, str):
                self.kind.update(store, record.id, provider_pid=named)
            self.rt.log(
                record.id,
                Direction.SENT,
                payload.type,
                status=status,
                body=message,
                state=record.state,
            )

        await self.rt.db.write(sent)

    def _failure_ends(self, payload: Send) -> bool:
        """Whether a message that could not be delivered ends the process."""
        return True

    async def _send_failed(self, job: Job, why: str) -> None:
        sent = job.read(self.kind.send)
        reason = f"{sent.type} was not delivered: {why}"

        def give_up(store: Store) -> None:
            record = self.get(job.process_id)
            if record.state in self.kind.terminal or not self._failure_ends(sent):
                self.rt.log(record.id, Direction.NOTE, sent.type, detail=reason)
                return
            record = self.kind.update(store, record.id, state="TERMINATED", reason=[reason])
            self.rt.log(record.id, Direction.NOTE, "TERMINATED", state=record.state, detail=reason)
            if peer_pid(record) and sent.type != self.kind.termination.TYPE:
                msg = self.kind.termination(
                    providerPid=record.provider_pid or "",
                    consumerPid=record.consumer_pid or "",
                    reason=[reason],
                )
                self._send(record, msg, self.kind.path + "/{peer}/termination")

        await self.rt.db.write(give_up)

    # reactions -------------------------------------------------------------------------------

    @abstractmethod
    async def _reaction(self, record: R) -> None:
        """Act on the state `record` reached (the service's own logic)."""

    async def _react_job(self, job: Job) -> None:
        record = await self.fetch(job.process_id)
        if record.state != job.read(self.kind.react).state:
            return
        if self.script is not None and await self.script(record):
            return
        await self._reaction(record)

    async def _react_failed(self, job: Job, why: str) -> None:
        def give_up(store: Store) -> None:
            if self.get(job.process_id).state not in self.kind.terminal:
                self.terminate(job.process_id, [f"internal error while reacting: {why}"])

        await self.rt.db.write(give_up)
