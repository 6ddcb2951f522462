"""Finding 18: a dataset's upstream HTTP source. A redirect (to the operator's network) is not
followed, and a source the egress policy refuses is refused when the dataset is published."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from connector.mgmt_client import ApiError
from tests.harness import ConnectorProcess, negotiate, received_size
from tests.security.conftest import Factory
from tests.security.internal import SECRET, InternalService
from tests.security.peer_host import Answer, PeerHost


@pytest.fixture
def upstream() -> Iterator[PeerHost]:
    host = PeerHost().start()
    yield host
    host.stop()


def publish(provider: ConnectorProcess, dataset_id: str, url: str) -> dict[str, Any]:
    body = {"id": dataset_id, "title": "Upstream", "source": {"type": "http", "url": url}}
    result: dict[str, Any] = provider.api.post("/api/v1/datasets", body)
    return result


def test_publication_refuses_a_source_the_egress_policy_refuses(
    guarded: Factory, upstream: PeerHost, internal: InternalService
) -> None:
    provider = guarded("provider")
    cases = [
        (internal.url + "/export.csv", "127.0.0.2"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        (f"http://user:pw@127.0.0.1:{upstream.port}/x", "credentials"),
        ("http://10.1.2.3/x", "10.1.2.3"),
    ]
    for n, (url, why) in enumerate(cases):
        with pytest.raises(ApiError) as refused:
            publish(provider, f"bad-{n}", url)
        assert refused.value.status == 400, (url, refused.value)
        assert why in str(refused.value) and "egress" in str(refused.value), refused.value
    assert provider.api.get("/api/v1/datasets") == []
    assert publish(provider, "fine", upstream.base + "/data.bin")["id"] == "fine"
    assert internal.requests == [] and upstream.total() == 0


@pytest.mark.parametrize("fmt", ["HttpData-PUSH", "HttpData-PULL"])
def test_an_upstream_redirect_is_not_followed(
    guarded: Factory, upstream: PeerHost, internal: InternalService, fmt: str
) -> None:
    """The upstream answers 302 to the internal service: the transfer ends with a reason,
    nothing of the internal service's reaches the consumer (or is even asked for)."""
    provider = guarded("provider")
    consumer = guarded("consumer")
    upstream.serve("/data.bin", Answer(302, headers={"Location": internal.url + "/export"}))
    publish(provider, "moved", upstream.base + "/data.bin")
    agreement = negotiate(consumer, provider, "moved")
    tp = consumer.api.post("/api/v1/transfers", {"agreementId": agreement, "format": fmt})
    done = consumer.api.wait_state("transfers", tp["id"], {"TERMINATED", "COMPLETED"}, timeout=30)
    assert done["state"] == "TERMINATED", done
    (ours,) = provider.api.get("/api/v1/transfers")
    reason = " ".join(ours["reason"])
    assert "redirect" in reason and "not followed" in reason, ours
    if fmt == "HttpData-PUSH":  # asked once: a redirect is not retried either
        assert upstream.hits["/data.bin"] == 1
    assert internal.requests == []
    assert SECRET not in str(done) and received_size(consumer, tp["id"]) == 0
