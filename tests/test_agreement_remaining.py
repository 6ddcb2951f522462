"""Issue 17: an agreement shows what is left ("2 transfers and 96.9 MB left; delete by ...")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.harness import ConnectorProcess, cli, negotiate, wait_for

OFFER = {
    "permission": [
        {
            "action": "use",
            "constraint": [
                {"leftOperand": "count", "operator": "lteq", "rightOperand": 3},
                {"leftOperand": "tdsc:volumeBytes", "operator": "lteq", "rightOperand": "100 MB"},
                {"leftOperand": "elapsedTime", "operator": "lteq", "rightOperand": "P30D"},
            ],
            "duty": [
                {
                    "action": "delete",
                    "constraint": [
                        {"leftOperand": "delayPeriod", "operator": "eq", "rightOperand": "P7D"}
                    ],
                }
            ],
        }
    ]
}


def test_an_agreement_shows_what_is_left_through_the_api_and_the_cli(
    provider: ConnectorProcess, consumer: ConnectorProcess, payload: Path
) -> None:
    provider.publish(payload, "ds-left", offers=[OFFER])
    agreement_id = negotiate(consumer, provider, "ds-left")
    fresh = consumer.api.get(f"/api/v1/agreements/{agreement_id}")
    assert fresh["remaining"]["transfers"] == 3
    assert fresh["remaining"]["bytes"] == 100_000_000
    assert fresh["remaining"]["delete_by"] is None
    expires = datetime.fromisoformat(fresh["remaining"]["expires"])
    in_30_days = datetime.now(UTC) + timedelta(days=30)
    assert abs((expires - in_30_days).total_seconds()) < 120
    assert fresh["summary"].startswith("3 transfers and 100 MB left; expires ")

    tp = consumer.api.post("/api/v1/transfers", {"agreementId": agreement_id})
    consumer.api.wait_state("transfers", tp["id"], {"COMPLETED"}, timeout=30)
    size = payload.stat().st_size
    delete_by = (datetime.now(UTC) + timedelta(days=7)).date().isoformat()

    for node in (consumer, provider):
        shown = wait_for(
            f"{node.name}'s deletion duty",
            lambda n=node: (
                (a := n.api.get(f"/api/v1/agreements/{agreement_id}"))["remaining"]["delete_by"]
                and a
            ),
        )
        left = shown["remaining"]
        assert left["transfers"] == 2 and left["bytes"] == 100_000_000 - size
        assert shown["summary"].startswith("2 transfers and 96.9 MB left; expires ")
        assert shown["summary"].endswith(f"; delete by {delete_by}")

    env = {"CONNECTOR_API_KEY": str(consumer.settings["api_key"])}
    api = f"http://127.0.0.1:{consumer.management_port}"
    out = cli("--api", api, "agreements", "show", agreement_id, env=env)
    assert out.returncode == 0, out.stderr
    assert "2 transfers and 96.9 MB left; expires " in out.stderr
    assert out.stderr.strip().endswith(f"delete by {delete_by}")
