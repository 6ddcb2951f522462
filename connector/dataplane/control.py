"""The one way the data plane reaches the control plane (the transfer process).

The data plane moves and meters bytes; what a transfer *is* (its state, its messages to the
counterparty, its record) belongs to the control plane (connector/dsp). The data plane asks
for the few things it needs through this interface, which the transfer service implements
(connector/dsp/control.py): it never writes transfer records itself.

Every method runs inside a store unit (`rt.db.write`) on the writer thread, so that what the
data plane decides together with it (a metering record's kind, a timeline line) commits as
one.
"""

from __future__ import annotations

from typing import Protocol, TypedDict

from connector.model.records import Transfer


class Copy(TypedDict, total=False):
    """What the data plane reports about the bytes of a transfer: how many went out or
    arrived, their digest (None: not known for the whole), and where the copy lies."""

    bytes: int
    sha256: str | None
    path: str


class ControlPlane(Protocol):
    """What the data plane needs of the transfer process (inside a store unit)."""

    def transfer(self, pid: str) -> Transfer | None:
        """The transfer as it is now (in the unit's transaction)."""
        ...

    def record_copy(self, pid: str, copy: Copy) -> Transfer:
        """Keep what moved (bytes, digest, path) on the transfer."""
        ...

    def count_sent(self, pid: str, sent: int) -> None:
        """A provider stream broke off after `sent` bytes: they count against the agreed
        volume (kept if more than what is recorded)."""
        ...

    def touch(self, pid: str) -> None:
        """The transfer's data is flowing: activity for the idle watchdog."""
        ...

    def complete(self, pid: str) -> Transfer:
        """The data moved and was settled: COMPLETED, and the peer is told."""
        ...

    def terminate(self, pid: str, reason: list[str], code: str | None = None) -> Transfer:
        """The transfer ends for `reason`: TERMINATED, and the peer is told."""
        ...
