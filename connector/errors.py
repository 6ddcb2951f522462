"""Error types shared by the layers; each maps to one HTTP answer at the edge."""

from __future__ import annotations


class ConnectorError(Exception):
    """Base of every error the connector raises on purpose."""

    status = 500

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


class TooManyProcesses(ConnectorError):
    """The peer already has as many open processes it started as one peer may have."""

    status = 429
