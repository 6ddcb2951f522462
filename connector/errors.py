"""Error types shared by the layers; each maps to one HTTP answer at the edge."""

from __future__ import annotations

from datetime import UTC, datetime


class ConnectorError(Exception):
    """Base of every error the connector raises on purpose."""

    status = 500
    # the `code` of the error body at the edge; None: the HTTP status
    code: str | None = None

    def __init__(self, detail: str, *, reasons: list[str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.reasons = reasons or [detail]


class ConfigError(ConnectorError):
    """The configuration cannot be used; raised at start-up, before anything listens."""


class BadRequest(ConnectorError):
    """The message is malformed or not allowed in the process's current state."""

    status = 400


class InvalidTransition(BadRequest):
    """A DSP message that the state machine does not allow from the current state."""


class RequestTimeout(BadRequest):
    """The client stopped sending the request body it announced."""

    status = 408


class Unauthorized(ConnectorError):
    """The caller's identity token is missing, invalid, expired, replayed or misaddressed."""

    status = 401


# The `code` of a 401 answer (DSP error body, data-plane problem document) that refused a
# token for its time alone: the sender's clock and ours are too far apart, or the token's
# lifetime passed. Senders retry such a refusal (connector/clock.py; docs/security.md,
# "Clocks and idle processes").
CLOCK_SKEW_CODE = "CLOCK_SKEW"


class ClockSkew(Unauthorized):
    """A token refused only for its time: issued (iat/nbf) in our future beyond the leeway,
    or expired by our clock. The answer names both times so that either operator sees whose
    clock is off; the sender can retry, as a fresh token may pass once the clocks agree."""

    code = CLOCK_SKEW_CODE

    def __init__(self, what: str, *, token_time: int, own_time: int, leeway: int) -> None:
        self.token_time = token_time
        self.own_time = own_time
        gap = token_time - own_time
        super().__init__(
            f"clock skew: {what} {_iso(token_time)} but this connector's clock reads"
            f" {_iso(own_time)} ({gap:+d} s, leeway {leeway} s)"
        )


def _iso(seconds: int) -> str:
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):
        return f"{seconds} (epoch seconds, beyond any date)"


class Forbidden(ConnectorError):
    """The caller is authenticated but lacks a verified credential this connector requires."""

    status = 403


class NotFound(ConnectorError):
    """Unknown id, or a process that belongs to another participant."""

    status = 404


class PayloadTooLarge(ConnectorError):
    """More data than may be received: the agreed volume, or the disk space kept free (413)."""

    status = 413


class DiskFull(ConnectorError):
    """Received data cannot be written: no space is left on the disk holding it (or less than
    the space kept free). Space may come back, so the move is retried (what arrived is kept
    for the resume) until `retry` is False: the attempts are used up. `detail` names the
    directory, for the operator; `reasons` say the same without it, for the peer."""

    status = 507

    def __init__(
        self, detail: str, *, retry: bool = True, reasons: list[str] | None = None
    ) -> None:
        super().__init__(detail, reasons=reasons)
        self.retry = retry


class Conflict(ConnectorError):
    """The request contradicts something already final (a stored metering receipt), or kept
    racing others that changed what its answer depends on (sending it again may succeed)."""

    status = 409


class PeerError(ConnectorError):
    """The counterparty answered with an error or could not be reached."""

    status = 502

    def __init__(
        self, detail: str, *, http_status: int | None = None, body: object = None, retry: bool
    ) -> None:
        super().__init__(detail)
        self.http_status = http_status
        self.body = body
        self.retry = retry


class UnsupportedMediaType(ConnectorError):
    """A DSP message whose Content-Type is not JSON."""

    status = 415


class Unavailable(ConnectorError):
    """Something this answer needs is down for now (the store cannot write); ask again later."""

    status = 503


class TooManyProcesses(ConnectorError):
    """The peer already has as many open processes it started as one peer may have."""

    status = 429
