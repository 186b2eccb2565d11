"""Growing Kafka from one node to three keeps every event (molecule's cluster scenario: molecule/cluster/).

Two phases, selected by FOOTPRINT_GROW_PHASE (without it these tests are deselected, see conftest);
FOOTPRINT_GROW_STATE is the directory that carries what the second phase needs from the first:
- `before` (Kafka on one node, formatted --standalone; the app on every app host): events loaded
  through each app host's own collector and seen in both stores; the Kafka cluster id and a digest
  of every topic's data saved;
- `after` (the inventory grew to three Kafka nodes and site.yml ran again; the whole suite runs with
  these checks): every loaded event is in PostgreSQL and ClickHouse exactly once; the cluster id is
  unchanged and every record the single node held reads back the same from the grown cluster.
The quorum's voters and the topics' replication factor after the grow: tests/test_kafka_cluster.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import upgrade_traffic
from test_delivery import endpoints
from test_upgrade import cluster_id, load_and_snapshot, runs_of, stored_ids, topic_digests

__all__ = ["endpoints"]  # the fixture, shared with test_delivery

testinfra_hosts = ["ansible://app"]
pytestmark = pytest.mark.grow

N_LOAD = 5_000  # per app host


def state() -> Path:
    path = os.environ.get("FOOTPRINT_GROW_STATE")
    if not path:
        pytest.fail("set FOOTPRINT_GROW_STATE to the directory that carries the cluster scenario's state")
    Path(path).mkdir(parents=True, exist_ok=True)
    return Path(path)


def load_logs() -> list[Path]:
    return sorted(state().glob("load-*.jsonl"))


def test_before_grow_events_through_this_collector_reach_both_stores(endpoints: dict[str, Any], host: Any) -> None:
    # after the last app host's load, the snapshot it saves holds every loaded event
    load_and_snapshot(endpoints, state() / f"load-{host.backend.get_hostname()}.jsonl", N_LOAD, "grow")


def test_after_grow_every_loaded_event_is_stored_exactly_once(endpoints: dict[str, Any]) -> None:
    paths = load_logs()
    app_hosts = endpoints["app_hosts"]
    assert [p.name for p in paths] == sorted(f"load-{h}.jsonl" for h in app_hosts), "a load log is missing"
    accepted = [upgrade_traffic.event_id(m) for p in paths for m in upgrade_traffic.accepted_ids(p)]
    assert len(accepted) == N_LOAD * len(app_hosts) == len(set(accepted))
    runs = sorted({r for p in paths for r in runs_of(p)})
    pg, ch = stored_ids(endpoints, runs)
    for store, ids in (("PostgreSQL", pg), ("ClickHouse", ch)):
        assert len(ids) == len(set(ids)), f"{store} holds {len(ids) - len(set(ids))} events more than once"
        assert set(ids) == set(accepted), f"{store} lacks {len(set(accepted) - set(ids))} loaded events"
    print(f"\ngrow: {len(accepted)} events loaded through {len(app_hosts)} collectors before the grow,"
          " each found exactly once in PostgreSQL and ClickHouse")


def test_after_grow_kafka_cluster_id_and_topic_data_are_unchanged(endpoints: dict[str, Any]) -> None:
    before = json.loads((state() / "kafka-before.json").read_text())
    assert cluster_id(endpoints) == before["cluster_id"]
    ranges = {name: end for name, (end, _) in before["topics"].items()}
    assert sum(end for name, end in ranges.items() if name.startswith(f"{endpoints['topic']}[")) >= N_LOAD, ranges
    assert topic_digests(endpoints, ranges) == before["topics"]
