"""A replica restarted after a kill takes its own interrupted jobs back at once.

On PostgreSQL (shared by replicas) a job held by a replica that stopped renewing its lease
is taken over only once the lease expires (`job_lease_seconds`), as the owner may be alive
elsewhere. A restarted process on the same host, whose predecessor no longer runs, need not
wait: its push goes on at once instead of a lease later.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

import pytest

from tests.faults.pair import MIB, Pair, sigkill
from tests.harness import GatedSource, wait_for

LEASE = "300"  # far longer than the test may wait


@pytest.mark.parametrize("store_kind", ["postgres"], indirect=True)
def test_a_provider_killed_mid_push_resumes_at_its_restart_not_a_lease_later(
    make_pair: Callable[..., Pair],
) -> None:
    pair = make_pair(job_lease_seconds=LEASE)
    data = os.urandom(3 * MIB)
    source = GatedSource(data, MIB)
    try:
        agreement_id = pair.offer(source.url)
        cid = pair.transfer(agreement_id, push=True)["id"]
        wait_for("the first MiB of the push", lambda: pair.held(cid) >= MIB)
        sigkill(pair.provider)  # its push job stays 'running' under a 300 s lease
        source.release.set()
        pair.provider.start()
        done = pair.terminal(cid, timeout=60)  # well before the lease would expire
        assert done["state"] == "COMPLETED", done.get("reason")
        assert done["sha256"] == hashlib.sha256(data).hexdigest()
        found = pair.violations(done["sha256"], settle_seconds=5)
        assert found == [], "\n".join(found)
    finally:
        source.close()
