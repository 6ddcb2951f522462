"""The DSP 2025-1 state machines as tables: which message moves which state, sent by whom."""

from __future__ import annotations

from enum import StrEnum

from connector.errors import InvalidTransition


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
ANY_ROLE = ("consumer", "provider")

# (message, sender) -> {from state -> to state}. Termination is allowed from any
# non-terminal state by either side: the spec's prose says so and the TCK relies on it.
_CN: dict[tuple[str, str], dict[str, CN]] = {
    ("ContractRequestMessage", "consumer"): {CN.OFFERED: CN.REQUESTED},
    ("ContractOfferMessage", "provider"): {CN.REQUESTED: CN.OFFERED},
    ("ContractAgreementMessage", "provider"): {CN.REQUESTED: CN.AGREED, CN.ACCEPTED: CN.AGREED},
    ("ACCEPTED", "consumer"): {CN.OFFERED: CN.ACCEPTED},
    ("ContractAgreementVerificationMessage", "consumer"): {CN.AGREED: CN.VERIFIED},
    ("FINALIZED", "provider"): {CN.VERIFIED: CN.FINALIZED},
}
_CN_TERMINATE: dict[CN, CN] = {s: CN.TERMINATED for s in CN if s not in CN_TERMINAL}

_TP: dict[str, dict[str, TP]] = {
    "TransferStartMessage": {TP.REQUESTED: TP.STARTED, TP.SUSPENDED: TP.STARTED},
    "TransferCompletionMessage": {TP.STARTED: TP.COMPLETED},
    "TransferSuspensionMessage": {TP.STARTED: TP.SUSPENDED},
    "TransferTerminationMessage": {
        TP.REQUESTED: TP.TERMINATED,
        TP.STARTED: TP.TERMINATED,
        TP.SUSPENDED: TP.TERMINATED,
    },
}


def negotiation_next(state: str, message: str, sender: str) -> CN:
    """The state after `sender` sends `message` in `state`, or InvalidTransition."""
    if message == "ContractNegotiationTerminationMessage":
        nxt = _CN_TERMINATE.get(CN(state)) if state in CN.__members__ else None
    else:
        nxt = _CN.get((message, sender), {}).get(state)
    if nxt is None:
        raise InvalidTransition(
            f"{message} from the {sender} is not allowed in state {state}"
            + (" (the negotiation has ended)" if state in CN_TERMINAL else "")
        )
    return nxt


def transfer_next(state: str, message: str, sender: str) -> TP:
    nxt = _TP.get(message, {}).get(state)
    if message == "TransferStartMessage" and state == TP.REQUESTED and sender != "provider":
        nxt = None
    if nxt is None:
        raise InvalidTransition(
            f"{message} from the {sender} is not allowed in state {state}"
            + (" (the transfer has ended)" if state in TP_TERMINAL else "")
        )
    return nxt
