"""An erasure through the collector's read API removes a user's events from both stores.

`DELETE /v1/users/{userId}` with a private key starts a job in the collector that deletes as each
store's owner; here it erases a synthetic user whose events were just delivered. On a ClickHouse
cluster (the cluster scenario) the job reaches every shard's own tables (the app's
ch_shard_clients, with the clickhouse role's grants to read a host's shard macro and the
cluster's shards): a cluster erasure that missed a shard, or lacked those grants, fails here.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from test_delivery import bearer, ch_rows, endpoints, pg_rows, wait_for

__all__ = ["endpoints"]  # the fixture, shared with test_delivery

testinfra_hosts = ["ansible://app"]

N = 20


def test_an_erasure_removes_the_users_events_from_both_stores(endpoints: dict[str, Any]) -> None:
    ep = endpoints
    user = f"footprint-erase-{uuid.uuid4().hex[:12]}"
    batch = [{"type": "track", "event": "Probe Erased", "userId": user, "properties": {"footprint_probe": True, "n": n},
              "messageId": f"{user}-{n}"} for n in range(N)]
    with httpx.Client(base_url=ep["collector"], timeout=10, verify=ep["verify"]) as http:
        res = http.post("/v1/events", json={"batch": batch}, headers=bearer(ep["api_key"]))
        assert res.status_code == 202, res.text
        ids = res.json()["event_ids"]
        wait_for(f"the {N} events in PostgreSQL", lambda: len(pg_rows(ep, "event_id = ANY(%s)", (ids,))) == N)
        wait_for(f"the {N} events in ClickHouse",
                 lambda: len(ch_rows(ep, "event_id IN {ids:Array(UUID)}", {"ids": ids})) == N)

        res = http.delete(f"/v1/users/{user}", headers=bearer(ep["private_key"]))
        assert res.status_code == 202, res.text
        job = res.json()["jobId"]

        def finished() -> dict[str, Any] | None:
            state = http.get(f"/v1/erasures/{job}", headers=bearer(ep["private_key"]))
            assert state.status_code == 200, state.text
            body: dict[str, Any] = state.json()
            return body if body["status"] in ("done", "failed") else None

        # the job deletes twice: at once, and after the consumer's refresh interval plus a batch
        result = wait_for(f"erasure job {job}", finished, timeout=120)
    if result["status"] != "done":
        pytest.fail(f"the erasure failed: {result['error']}")
    assert (result["postgresDeleted"], result["clickhouseDeleted"]) == (N, N), result
    assert pg_rows(ep, "event_id = ANY(%s)", (ids,)) == []
    assert ch_rows(ep, "event_id IN {ids:Array(UUID)}", {"ids": ids}) == []
