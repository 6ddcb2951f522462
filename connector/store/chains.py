"""Hash chains, one per agreement: the provider's signed metering records (with the heads
both parties signed) and the consumer's signed records of uses of received data."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from connector.model.metering import MeteringEntry, MeteringHead
from connector.model.usage import UseEntry, UseSummary
from connector.store.core import Statements
from connector.store.dialect import marks
from connector.store.rows import to_row

C = TypeVar("C", bound=BaseModel)

# First key of the two-key lock a chain append holds (PostgreSQL: an advisory lock).
LOCK_CHAIN = 7302


class MeteringRepository(Protocol):
    # append builds the next link from (seq, previous hash) atomically
    def append_metering(
        self, agreement_id: str, make: Callable[[int, str | None], MeteringEntry]
    ) -> MeteringEntry: ...
    def put_metering(self, entries: list[MeteringEntry]) -> None: ...
    def metering_chain(
        self, agreement_id: str | None = None, transfer_id: str | None = None
    ) -> list[MeteringEntry]: ...
    # a stored receipt is final: the update leaves a receipted record as it is
    def set_metering_receipt(
        self, agreement_id: str, seq: int, *, receipt: str | None, refusal: str | None
    ) -> None: ...
    # the newest chain head both parties signed; a shorter one never replaces it
    def put_metering_head(self, head: MeteringHead) -> bool: ...
    def metering_head(self, agreement_id: str) -> MeteringHead | None: ...


class UseRepository(Protocol):
    # append builds the next signed record from (seq, previous hash)
    def append_use(
        self, agreement_id: str, make: Callable[[int, str | None], UseEntry]
    ) -> UseEntry: ...
    def put_uses(self, entries: list[UseEntry]) -> None: ...
    def list_uses(self, agreement_id: str, seqs: Iterable[int] | None = None) -> list[UseEntry]: ...
    def use_summary(self, agreement_id: str, transfer_id: str) -> UseSummary: ...
    def mark_uses_reported(self, agreement_id: str, seqs: Iterable[int], at: str) -> None: ...


class Chains(Statements):
    def _append_chain(
        self, table: str, agreement_id: str, make: Callable[[int, str | None], C]
    ) -> C:
        """The next link, built from the head while no other writer appends to this chain."""
        with self.transaction():
            lock = self.dialect.serialize(LOCK_CHAIN, f"{table}:{agreement_id}")
            if lock is not None:
                self._run(*lock)
            rows = self._rows(
                f"select seq, hash from {table} where agreement_id = ? order by seq desc limit 1",
                [agreement_id],
            )
            head = rows[0] if rows else None
            entry = make(head["seq"] + 1 if head else 0, head["hash"] if head else None)
            self._insert_rows(table, [to_row(entry)])
        return entry

    def _put_all(self, table: str, entries: Sequence[BaseModel]) -> None:
        self._insert_rows(table, [to_row(e) for e in entries], ("agreement_id", "seq"))

    # metering -----------------------------------------------------------------------------------

    def append_metering(
        self, agreement_id: str, make: Callable[[int, str | None], MeteringEntry]
    ) -> MeteringEntry:
        return self._append_chain("metering", agreement_id, make)

    def put_metering(self, entries: list[MeteringEntry]) -> None:
        self._put_all("metering", entries)

    def metering_chain(
        self, agreement_id: str | None = None, transfer_id: str | None = None
    ) -> list[MeteringEntry]:
        where, args = self._where({"agreement_id": agreement_id, "transfer_id": transfer_id})
        sql = f"select * from metering{where} order by agreement_id, seq"
        return self._models(MeteringEntry, sql, args)

    def set_metering_receipt(
        self, agreement_id: str, seq: int, *, receipt: str | None, refusal: str | None
    ) -> None:
        self._run(
            "update metering set receipt = ?, refusal = ? where agreement_id = ? and seq = ?"
            " and receipt is null",
            [receipt, refusal, agreement_id, seq],
        )

    def put_metering_head(self, head: MeteringHead) -> bool:
        """Keep `head` if it is longer than the one kept (call inside a transaction); a shorter
        or equal one never replaces it. True if kept."""
        current = self._get("metering_heads", MeteringHead, head.id, lock=True)
        if current is not None and current.count >= head.count:
            return False
        self._insert("metering_heads", head, replace=True)
        return True

    def metering_head(self, agreement_id: str) -> MeteringHead | None:
        return self._get("metering_heads", MeteringHead, agreement_id)

    # uses ---------------------------------------------------------------------------------------

    def append_use(
        self, agreement_id: str, make: Callable[[int, str | None], UseEntry]
    ) -> UseEntry:
        return self._append_chain("uses", agreement_id, make)

    def put_uses(self, entries: list[UseEntry]) -> None:
        self._put_all("uses", entries)

    def list_uses(self, agreement_id: str, seqs: Iterable[int] | None = None) -> list[UseEntry]:
        sql = "select * from uses where agreement_id = ?"
        args: list[Any] = [agreement_id]
        if seqs is not None:
            wanted = sorted(set(seqs))
            if not wanted:
                return []
            sql += f" and seq in ({marks(wanted)})"
            args += wanted
        return self._models(UseEntry, sql + " order by seq", args)

    def use_summary(self, agreement_id: str, transfer_id: str) -> UseSummary:
        at, transfer = (self.dialect.json_text("record", k) for k in ("at", "transfer"))
        row = self._rows(
            "select count(*) as n,"
            f" (select {at} from uses where agreement_id = ? order by seq limit 1) as first_at,"
            f" exists(select 1 from uses where agreement_id = ? and {transfer} = ?)"
            " as of_transfer from uses where agreement_id = ?",
            [agreement_id, agreement_id, transfer_id, agreement_id],
        )[0]
        return UseSummary(int(row["n"]), row["first_at"], bool(row["of_transfer"]))

    def mark_uses_reported(self, agreement_id: str, seqs: Iterable[int], at: str) -> None:
        wanted = sorted(set(seqs))
        if wanted:
            self._run(
                "update uses set reported_at = ?"
                f" where agreement_id = ? and seq in ({marks(wanted)})",
                [at, agreement_id, *wanted],
            )
