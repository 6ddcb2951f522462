"""The transfer process as the data plane sees it (connector/dataplane/control.py)."""

from __future__ import annotations

from typing import Protocol

from connector.dataplane.control import Copy
from connector.model.records import Transfer
from connector.runtime import Runtime


class Ending(Protocol):
    """The transfer service's transitions the data plane may ask for (inside a unit)."""

    def complete(self, pid: str) -> Transfer: ...
    def terminate(self, pid: str, reason: list[str], code: str | None = None) -> Transfer: ...


class TransferControl:
    """`ControlPlane` over the transfer service: every method runs inside a store unit."""

    def __init__(self, rt: Runtime, transfers: Ending) -> None:
        self._rt = rt
        self._transfers = transfers

    def transfer(self, pid: str) -> Transfer | None:
        return self._rt.store.get_transfer(pid)

    def record_copy(self, pid: str, copy: Copy) -> Transfer:
        return self._rt.store.update_transfer(pid, **copy)

    def count_sent(self, pid: str, sent: int) -> None:
        # a transfer that ends without completing is charged against the agreed volume for
        # the bytes that went out, not for nothing (issue 13, finding 6)
        tp = self._rt.store.lock_transfer(pid)
        if tp is not None and sent > tp.bytes:
            self._rt.store.update_transfer(pid, bytes=sent)

    def touch(self, pid: str) -> None:
        self._rt.store.update_transfer(pid)  # updated_at only

    def complete(self, pid: str) -> Transfer:
        return self._transfers.complete(pid)

    def terminate(self, pid: str, reason: list[str], code: str | None = None) -> Transfer:
        return self._transfers.terminate(pid, reason, code=code)
