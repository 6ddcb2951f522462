"""What every repository is written over: a few statement primitives (run by the concrete
store, connector/store/sql.py) and the record helpers built on them once for both databases.

Statements use `?` placeholders; the dialect turns them into the driver's.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from pydantic import BaseModel

from connector.errors import NotFound
from connector.model.records import utcnow
from connector.store.dialect import Dialect, member
from connector.store.rows import encode, from_row, to_row

M = TypeVar("M", bound=BaseModel)
Row = dict[str, Any]


class Statements:
    """The primitives (abstract here) and the record helpers shared by the repositories."""

    dialect: Dialect

    # primitives, run by the concrete store ------------------------------------------------------

    def transaction(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        """The rows a statement returns."""
        raise NotImplementedError

    def _run(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run a statement; how many rows it changed."""
        raise NotImplementedError

    def _insert_rows(
        self, table: str, rows: list[Row], conflict_key: tuple[str, ...] | None = None
    ) -> None:
        """Insert; with `conflict_key`, replace the row that has the same key. Duplicate when
        a key or unique index is taken (and no `conflict_key` says to replace)."""
        raise NotImplementedError

    # record helpers -----------------------------------------------------------------------------

    def _models(self, model: type[M], sql: str, args: Sequence[Any] = ()) -> list[M]:
        return [from_row(model, r) for r in self._rows(sql, args)]

    def _one(self, model: type[M], sql: str, args: Sequence[Any] = ()) -> M | None:
        rows = self._rows(sql, args)
        return from_row(model, rows[0]) if rows else None

    def _insert(self, table: str, record: BaseModel, *, replace: bool = False) -> None:
        self._insert_rows(table, [to_row(record)], ("id",) if replace else None)

    def _get(self, table: str, model: type[M], key: str, *, lock: bool = False) -> M | None:
        """With `lock`, inside a transaction: kept from other writers until commit."""
        suffix = self.dialect.for_update if lock else ""
        return self._one(model, f"select * from {table} where id = ?{suffix}", [key])

    def _find(self, table: str, model: type[M], match: dict[str, str]) -> M | None:
        where = " and ".join(f"{k} = ?" for k in match)
        return self._one(model, f"select * from {table} where {where} limit 1", [*match.values()])

    def _list(self, table: str, model: type[M], limit: int, offset: int) -> list[M]:
        sql = f"select * from {table} order by created_at desc limit ? offset ?"
        return self._models(model, sql, [limit, offset])

    def _count(self, table: str, match: dict[str, str], states_not_in: list[str]) -> int:
        """Rows matching every `match` column whose state is none of `states_not_in`."""
        where = [f"{k} = ?" for k in match] + [member("state", states_not_in, negate=True)]
        sql = f"select count(*) as n from {table} where {' and '.join(where)}"
        return int(self._rows(sql, [*match.values(), *states_not_in])[0]["n"])

    def _untouched(
        self, table: str, model: type[M], states_not_in: list[str], before: str, limit: int
    ) -> list[M]:
        """Rows in none of `states_not_in` whose updated_at is older than `before`, oldest
        first."""
        sql = (
            f"select * from {table} where {member('state', states_not_in, negate=True)}"
            " and updated_at < ? order by updated_at limit ?"
        )
        return self._models(model, sql, [*states_not_in, before, limit])

    def _update(self, table: str, model: type[M], key: str, fields: dict[str, Any]) -> M:
        if "updated_at" in model.model_fields:
            fields = {**fields, "updated_at": utcnow()}
        values = encode(fields)
        if not values:
            found = self._get(table, model, key)
            if found is None:
                raise NotFound(f"no {table[:-1]} {key}")
            return found
        sets = ", ".join(f"{k} = ?" for k in values)
        found = self._one(
            model, f"update {table} set {sets} where id = ? returning *", [*values.values(), key]
        )
        if found is None:
            raise NotFound(f"no {table[:-1]} {key}")
        return found

    def _where(self, match: dict[str, Any]) -> tuple[str, list[Any]]:
        """` where a = ? and b = ?` for the values that are not None (empty: no filter)."""
        given = {k: v for k, v in match.items() if v is not None}
        if not given:
            return "", []
        return " where " + " and ".join(f"{k} = ?" for k in given), list(given.values())
