"""The DSP 2025-1 state machines as tables: which message moves which state, sent by whom."""

from __future__ import annotations

from enum import StrEnum

from connector.errors import InvalidTransition
from connector.model import messages as m
from connector.model.enums import CNEvent, Role


class CN(StrEnum):
    REQUESTED = "REQUESTED"
    OFFERED = "OFFERED"
    ACCEPTED = "ACCEPTED"
    AGREED = "AGREED"
    VERIFIED = "VERIFIED"
    FINALIZED = "FINALIZED"
    TERMINATED = "TERMINATED"


class TP(StrEnum):
    REQUESTED = "REQUESTED"
    STARTED = "STARTED"
    SUSPENDED = "SUSPENDED"
    COMPLETED = "COMPLETED"
    TERMINATED = "TERMINATED"


CN_TERMINAL = {CN.FINALIZED, CN.TERMINATED}
TP_TERMINAL = {TP.COMPLETED, TP.TERMINATED}
ANY_ROLE = (Role.CONSUMER, Role.PROVIDER)

# What moves a negotiation: a message class, or an event type for the event message.
CNStep = type[m.Message] | CNEvent

# (message, sender) -> {from state -> to state}. Termination is allowed from any
# non-terminal state by either side: the spec's prose says so and the TCK relies on it.
_CN: dict[tuple[CNStep, Role], dict[str, CN]] = {
    (m.ContractRequestMessage, Role.CONSUMER): {CN.OFFERED: CN.REQUESTED},
    (m.ContractOfferMessage, Role.PROVIDER): {CN.REQUESTED: CN.OFFERED},
    (m.ContractAgreementMessage, Role.PROVIDER): {
        CN.REQUESTED: CN.AGREED,
        CN.ACCEPTED: CN.AGREED,
    },
    (CNEvent.ACCEPTED, Role.CONSUMER): {CN.OFFERED: CN.ACCEPTED},
    (m.ContractAgreementVerificationMessage, Role.CONSUMER): {CN.AGREED: CN.VERIFIED},
    (CNEvent.FINALIZED, Role.PROVIDER): {CN.VERIFIED: CN.FINALIZED},
}
_CN_TERMINATE: dict[CN, CN] = {s: CN.TERMINATED for s in CN if s not in CN_TERMINAL}

_TP: dict[type[m.Message], dict[str, TP]] = {
    m.TransferStartMessage: {TP.REQUESTED: TP.STARTED, TP.SUSPENDED: TP.STARTED},
    m.TransferCompletionMessage: {TP.STARTED: TP.COMPLETED},
    m.TransferSuspensionMessage: {TP.STARTED: TP.SUSPENDED},
    m.TransferTerminationMessage: {
        TP.REQUESTED: TP.TERMINATED,
        TP.STARTED: TP.TERMINATED,
        TP.SUSPENDED: TP.TERMINATED,
    },
}


def _step(message: m.Message | CNStep) -> CNStep:
    """The table key of a message (its class; its event type for an event message)."""
    if isinstance(message, m.ContractNegotiationEventMessage):
        return CNEvent(message.eventType)
    if isinstance(message, m.Message):
        return type(message)
    return message


def _name(step: CNStep) -> str:
    return step.value if isinstance(step, CNEvent) else step.TYPE


def negotiation_next(state: str, message: m.Message | CNStep, sender: Role) -> CN:
    """The state after `sender` sends `message` (a message, its class, or an event type) in
    `state`, or InvalidTransition."""
    step = _step(message)
    if step is m.ContractNegotiationTerminationMessage:
        nxt = _CN_TERMINATE.get(CN(state)) if state in CN.__members__ else None
    else:
        nxt = _CN.get((step, sender), {}).get(state)
    if nxt is None:
        raise InvalidTransition(
            f"{_name(step)} from the {sender} is not allowed in state {state}"
            + (" (the negotiation has ended)" if state in CN_TERMINAL else "")
        )
    return nxt


def transfer_next(state: str, message: m.Message | type[m.Message], sender: Role) -> TP:
    """The state after `sender` sends `message` (a message or its class) in `state`."""
    step = type(message) if isinstance(message, m.Message) else message
    nxt = _TP.get(step, {}).get(state)
    if step is m.TransferStartMessage and state == TP.REQUESTED and sender != Role.PROVIDER:
        nxt = None
    if nxt is None:
        raise InvalidTransition(
            f"{step.TYPE} from the {sender} is not allowed in state {state}"
            + (" (the transfer has ended)" if state in TP_TERMINAL else "")
        )
    return nxt
