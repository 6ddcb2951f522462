"""Datasets: what the catalogue offers."""

from __future__ import annotations

from typing import Protocol

from connector.model.records import Dataset
from connector.store.core import Statements


class DatasetRepository(Protocol):
    def put_dataset(self, dataset: Dataset) -> None: ...
    def get_dataset(self, dataset_id: str) -> Dataset | None: ...
    def list_datasets(self) -> list[Dataset]: ...
    def page_datasets(self, after: str | None, limit: int) -> list[Dataset]: ...
    def delete_dataset(self, dataset_id: str) -> bool: ...


class Datasets(Statements):
    def put_dataset(self, dataset: Dataset) -> None:
        self._insert("datasets", dataset, replace=True)

    def get_dataset(self, dataset_id: str) -> Dataset | None:
        return self._get("datasets", Dataset, dataset_id)

    def list_datasets(self) -> list[Dataset]:
        return self._models(Dataset, "select * from datasets order by id")

    def page_datasets(self, after: str | None, limit: int) -> list[Dataset]:
        """Up to `limit` datasets in id order after the id `after`: keyset paging, so a page
        of a large catalog costs its own rows only."""
        if after is None:
            return self._models(Dataset, "select * from datasets order by id limit ?", [limit])
        sql = "select * from datasets where id > ? order by id limit ?"
        return self._models(Dataset, sql, [after, limit])

    def delete_dataset(self, dataset_id: str) -> bool:
        return self._run("delete from datasets where id = ?", [dataset_id]) > 0
