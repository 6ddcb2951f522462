"""The sending side of a refusal for clock skew: a 401 that a retry may get past.

A peer that refuses our fresh self-issued token for its time alone (issued in its future,
or expired by its clock) answers 401 with the code CLOCK_SKEW (connector.errors.ClockSkew).
Peers without that code are recognised by their `Date` header lying further from our clock
than the token leeway. Either way the refusal is retried with the outbox's backoff instead of
ending the process, and the error names both clocks: ours, and the peer's as its `Date`
header gives it. Nothing of the peer's own text is repeated, only the parsed time.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from connector.errors import CLOCK_SKEW_CODE, PeerError

# Seconds of disagreement tolerated between two clocks: in token `iat`/`exp` checks
# (connector/identity/tokens.py, connector/dataplane/tokens.py) and in telling skew apart.
CLOCK_SKEW = 30


class ClockSkewRefused(PeerError):
    """The peer refused our token for its time: retried, as a later attempt may pass."""


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def peer_clock(headers: Mapping[str, str]) -> float | None:
    """The peer's time from its answer's `Date` header (RFC 9110), None if absent or bad."""
    raw = headers.get("Date")
    if not raw:
        return None
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def skew_refusal(
    what: str, status: int, headers: Mapping[str, str], body: Any, peer: str
) -> ClockSkewRefused | None:
    """A retryable error if `status` is a 401 caused by the clocks, None otherwise.

    `what` says which call was refused (e.g. "POST https://…"); `peer` names the peer."""
    if status != 401:
        return None
    coded = isinstance(body, dict) and body.get("code") == CLOCK_SKEW_CODE
    now = time.time()
    theirs = peer_clock(headers)
    apart = theirs is not None and abs(theirs - now) > CLOCK_SKEW
    if not (coded or apart):
        return None
    if coded and theirs is not None and not apart:
        # the clocks agree: the token itself is out of date (a pull token past its lifetime),
        # and sending it again cannot help
        return ClockSkewRefused(
            f"{what}: {peer} refused the token for its time while our clocks agree (ours"
            f" {iso(now)}, {peer}'s {iso(theirs)}): the token has expired",
            http_status=401,
            body=body,
            retry=False,
        )
    why = (
        "refused our token for its time (401 CLOCK_SKEW)"
        if coded
        else f"refused our token (401) while its clock is more than {CLOCK_SKEW} s from ours"
    )
    if theirs is None:
        clocks = f"our clock {iso(now)}, {peer}'s clock not given (no valid Date header)"
    else:
        clocks = (
            f"our clock {iso(now)}, {peer}'s clock {iso(theirs)} (its Date header),"
            f" {theirs - now:+.0f} s apart"
        )
    return ClockSkewRefused(
        f"{what}: clock skew: {peer} {why}; {clocks}; retrying, as a fresh token passes once"
        " the clocks agree",
        http_status=401,
        body=body,
        retry=True,
    )
