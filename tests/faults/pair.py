"""A provider and a consumer, real `connector serve` processes on loopback, on SQLite or each
on its own PostgreSQL database: what the fault tests and the kill-storm benchmark drive."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from tests.faults.invariants import Outcome, Source, check
from tests.harness import ConnectorProcess, negotiate, received_size

MIB = 1024 * 1024
STORES = ("sqlite", "postgres")
TERMINAL = {"COMPLETED", "TERMINATED"}
# quick retries (a killed peer is back within seconds), 1 MiB windows (several per transfer)
SETTINGS = {
    "retry_base_seconds": "0.2",
    "retry_max_seconds": "1",
    "metering_window_bytes": str(MIB),
    "metering_receipt_seconds": "10",
}
# an offer with a price per GB, so the invoices have something to bill
PER_GB: dict[str, Any] = {
    "permission": [
        {
            "action": "use",
            "duty": [
                {
                    "action": "compensate",
                    "constraint": [
                        {"leftOperand": "payAmount", "operator": "eq", "rightOperand": 10},
                        {
                            "leftOperand": "unit",
                            "operator": "eq",
                            "rightOperand": "https://w3id.org/tdsc/v1/perGB",
                        },
                        {
                            "leftOperand": "https://w3id.org/tdsc/v1/currency",
                            "operator": "eq",
                            "rightOperand": "EUR",
                        },
                    ],
                }
            ],
        }
    ]
}


def sigkill(node: ConnectorProcess) -> None:
    """A real SIGKILL (os.kill): the process gets no chance to clean up or close a window."""
    assert node.proc is not None
    os.kill(node.proc.pid, signal.SIGKILL)
    node.proc.wait(10)


class Pair:
    """`provider` and `consumer` under `root`; `database_urls` (provider's, consumer's) puts
    each on PostgreSQL, otherwise each has its SQLite file. `settings` are CONNECTOR_*
    overrides for both (on top of SETTINGS)."""

    def __init__(
        self,
        root: Path,
        database_urls: tuple[str, str] | None = None,
        **settings: str,
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.store = "postgres" if database_urls else "sqlite"
        self.database_urls = database_urls
        self.provider = ConnectorProcess(root, "provider")
        self.consumer = ConnectorProcess(root, "consumer")
        for i, node in enumerate((self.provider, self.consumer)):
            node.set(**{**SETTINGS, **settings})
            if database_urls:
                node.set(database_url=database_urls[i])

    def start(self) -> Pair:
        self.provider.start()
        self.consumer.start()
        return self

    def stop(self) -> None:
        self.consumer.stop()
        self.provider.stop()

    def offer(self, source: Path | str, dataset_id: str = "ds-1", *, priced: bool = True) -> str:
        """Publish `source` (a file, or the URL of an upstream HTTP source) as `dataset_id`
        (with a per-GB price unless not `priced`) and negotiate it; the agreement id."""
        where = (
            {"type": "http", "url": source}
            if isinstance(source, str)
            else {"type": "file", "path": str(source)}
        )
        body = {"id": dataset_id, "title": dataset_id, "source": where}
        self.provider.api.post("/api/v1/datasets", body | ({"offers": [PER_GB]} if priced else {}))
        return negotiate(self.consumer, self.provider, dataset_id)

    def transfer(self, agreement_id: str, *, push: bool = False) -> dict[str, Any]:
        """Start a pull (or a push) from the consumer; its transfer record."""
        body = {"agreementId": agreement_id, "format": "HttpData-PUSH" if push else "HttpData-PULL"}
        tp: dict[str, Any] = self.consumer.api.post("/api/v1/transfers", body)
        return tp

    def terminal(self, consumer_pid: str, timeout: float = 60.0) -> dict[str, Any]:
        """The consumer's transfer once it is COMPLETED or TERMINATED (an error when it
        is still running after `timeout`: mgmt_client.ApiError)."""
        done: dict[str, Any] = self.consumer.api.wait_state(
            "transfers", consumer_pid, TERMINAL, timeout=timeout
        )
        return done

    def held(self, consumer_pid: str) -> int:
        """Bytes of the transfer the consumer holds now (its copy, or a push being received)."""
        return received_size(self.consumer, consumer_pid)

    def check(self, source: Source | dict[str, Source], **kwargs: Any) -> Outcome:
        """tests.faults.invariants.check on this pair."""
        return check(self.provider, self.consumer, source, workdir=self.root, **kwargs)

    def violations(self, source: Source | dict[str, Source], **kwargs: Any) -> list[str]:
        return self.check(source, **kwargs).violations
