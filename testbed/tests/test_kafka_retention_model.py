"""The kafka role's check of the topics' retention against the broker's disk, without a host.

The role's own tasks (tasks/retention.yml) run locally on made-up inventories whose log dirs
are below this test's temporary directory (absent ones: measured at their nearest existing
parent), so the disk is this machine's: the role's numbers must be df's, and what fits or not is
made from that size. All cases in one run, each its own cluster (local_play.run_cases).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import pytest
from local_play import assert_failed_with, run_cases

CHECK = """
- name: Check the declared topics' retention against this machine's disk (nothing changes)
  hosts: kafka
  gather_facts: false  # run_play gives every host this machine's facts first
  become: false
  roles:
    - {role: kafka, tags: [never]}
  tasks:
    - name: Check the retention (the role's own tasks)
      ansible.builtin.include_role:
        name: kafka
        tasks_from: retention.yml
    - name: Hand the numbers to the test
      ansible.builtin.set_fact:
        rendered:
          json: >-
            {{ {'topics': __kafka_retention, 'bytes': __kafka_retention_bytes | int,
                'size': __kafka_log_fs_size | int, 'budget': __kafka_retention_budget | int} | to_json }}
"""

GIB, MIB = 1 << 30, 1 << 20
# the role's default topics: 1 x (1 GiB + 128 MiB) + 1 x (256 MiB + 64 MiB) per broker
DEFAULT_NEED = GIB + 128 * MIB + 256 * MIB + 64 * MIB


def inventory(hosts: list[str], log_dirs: list[str], **vars_: Any) -> dict[str, Any]:
    return {"all": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                 "kafka_log_dirs": log_dirs, **vars_},
        "children": {"kafka": {"hosts": {h: {"kafka_node_id": i + 1} for i, h in enumerate(hosts)}}},
    }}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("retention")
    size = os.statvfs(tmp).f_blocks * os.statvfs(tmp).f_frsize  # df's size of the filesystem
    absent = str(tmp / "absent" / "kafka" / "data")
    room = size * 8 // 10 // 3  # a third of the budget: fits once, not three times
    cases = {
        # the defaults, a log dir that does not exist yet and one that does (same filesystem: once)
        "defaults": inventory(["h1"], [absent, str(tmp)]),
        # three brokers, 4 partitions at the default RF 3: ceil(4 x 3 / 3) = 4 replicas each
        "three": inventory(["b1", "b2", "b3"], [absent], kafka_topics=[
            {"name": "t", "partitions": 4, "retention_bytes": 10 * MIB, "config": {"segment.bytes": 2 * MIB}}]),
        "fits": inventory(["h1"], [absent], kafka_topics=[
            {"name": "t", "retention_bytes": room, "config": {"segment.bytes": MIB}}]),
        "too-big": inventory(["h1"], [absent], kafka_topics=[
            {"name": "t", "partitions": 3, "retention_bytes": room, "config": {"segment.bytes": MIB}}]),
        # no retention_bytes: the broker's default, -1
        "unbounded": inventory(["h1"], [absent], kafka_topics=[
            {"name": "bounded", "retention_bytes": MIB}, {"name": "by-time-only", "retention_ms": 3600000}]),
        "unbounded-allowed": inventory(["h1"], [absent], kafka_retention_allow_unbounded=True, kafka_topics=[
            {"name": "bounded", "retention_bytes": MIB}, {"name": "compacted", "cleanup_policy": "compact",
                                                           "retention_bytes": MIB}]),
    }
    failed = run_cases(tmp, CHECK, cases, {"kafka_cluster_group": "kafka"}, facts=["min", "network"])
    numbers = {}
    for case, inv in cases.items():
        first = next(iter(inv["all"]["children"]["kafka"]["hosts"]))
        out = tmp / "out" / f"{case}.{first}.json"
        numbers[case] = json.loads(out.read_text()) if out.exists() else None
    return {"failed": failed, "numbers": numbers, "size": size, "room": room}


def test_the_defaults_fit_and_an_absent_log_dir_is_measured_at_its_parent(run: dict[str, Any]) -> None:
    assert run["failed"]["defaults"] == ""
    got = run["numbers"]["defaults"]
    assert got["bytes"] == DEFAULT_NEED
    assert got["size"] == run["size"]  # the two log dirs are on one filesystem: counted once
    assert got["budget"] == int(run["size"] * 0.8)
    assert [(t["name"], t["replicas"], t["retention_bytes"], t["segment_bytes"]) for t in got["topics"]] == [
        ("web-logs-topic", 1, GIB, 128 * MIB), ("web-logs-topic.dlq", 1, 256 * MIB, 64 * MIB)]


def test_a_broker_counts_its_share_of_the_replicas(run: dict[str, Any]) -> None:
    assert run["failed"]["three"] == ""
    assert run["numbers"]["three"]["topics"][0]["replicas"] == 4
    assert run["numbers"]["three"]["bytes"] == 4 * (10 * MIB + 2 * MIB)


def test_what_fits_passes_and_three_times_it_is_refused_with_the_numbers(run: dict[str, Any]) -> None:
    assert run["failed"]["fits"] == ""
    room = run["room"]
    assert_failed_with(run["failed"], "too-big", "kafka_retention_disk_fraction (0.8)", f"{run['size']} bytes",
                       f"t 3 x ({room} + {MIB}) = {3 * (room + MIB)}", "Nothing was changed")


def test_a_topic_without_a_size_bound_is_refused_unless_allowed(run: dict[str, Any]) -> None:
    assert_failed_with(run["failed"], "unbounded", "kafka_topics: by-time-only keep data without a size bound",
                       "kafka_retention_allow_unbounded")
    assert "bounded," not in run["failed"]["unbounded"]
    assert run["failed"]["unbounded-allowed"] == ""
    got = run["numbers"]["unbounded-allowed"]
    assert [t["unbounded"] for t in got["topics"]] == [False, True]  # compacted: retention.bytes does not apply
    assert got["bytes"] == MIB + 1024 * MIB  # the broker's default segment: 1 GiB
