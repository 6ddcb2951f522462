"""Finding 21: suspension revokes the data-plane token. A pull token issued before a
suspension is refused after the transfer resumes (whoever resumes it); the consumer gets a
new token with the resume, and the data flows again with that one only."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import ConnectorProcess, state_of, wait_for
from tests.test_negotiation_flows import Trickle, flowing, transfer_with_trickle


@pytest.fixture
def trickle() -> Iterator[Trickle]:
    source = Trickle()
    yield source
    source.close()


def address_of(record: dict[str, Any]) -> tuple[str, str] | None:
    address = record["data_address"]
    if not address:
        return None
    props = {p["name"]: p["value"] for p in address["endpointProperties"]}
    return str(address["endpoint"]), str(props["authorization"])


def pull_status(url: str, token: str) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, b""  # a stream that never ends: the status is enough
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.parametrize("resumer", ["provider", "consumer"])
def test_a_pull_token_from_before_a_suspension_is_refused_after_the_resume(
    provider: ConnectorProcess,
    consumer: ConnectorProcess,
    payload: Path,
    trickle: Trickle,
    resumer: str,
) -> None:
    cid, pid = transfer_with_trickle(consumer, provider, payload, trickle, "HttpData-PULL")
    before = address_of(consumer.api.get(f"/api/v1/transfers/{cid}"))
    assert before is not None
    url, old_token = before

    provider.api.post(f"/api/v1/transfers/{pid}/suspend", {"reason": "maintenance"})
    state_of(consumer, "transfers", cid, "SUSPENDED")
    wait_for("the stream to be cut", lambda: trickle.active == 0)
    if resumer == "provider":
        provider.api.post(f"/api/v1/transfers/{pid}/resume")
    else:
        consumer.api.post(f"/api/v1/transfers/{cid}/resume")
    state_of(provider, "transfers", pid, "STARTED")

    def renewed() -> tuple[str, str] | None:
        now = address_of(consumer.api.get(f"/api/v1/transfers/{cid}"))
        return now if now is not None and now[1] != old_token else None

    new_url, _ = wait_for("the consumer to get a new pull token", renewed)
    assert new_url == url
    flowing(consumer, cid, trickle, 2)  # the consumer pulls again, with the new token
    assert consumer.api.get(f"/api/v1/transfers/{cid}")["state"] == "STARTED"

    status, body = pull_status(url, old_token)
    assert status == 401, body
    assert b"revoked" in body
