"""The kafka role's inventory model for several nodes, without a host.

- The role's quorum and topic filters on the outputs of the Kafka 4.0 tools (taken from the
  three-node test cluster).
- The role's own tasks (tasks/cluster.yml) and templates, run locally on made-up inventories:
  a single host renders byte for byte what the role rendered before clusters existed
  (data/kafka-single-host*: server.properties with and without TLS, the unit, the firewall's
  ports and the app's bootstrap, rendered by main's role at commit 5695c9e, before clusters, from
  the same inventory); three
  controllers and a broker-only node render a dynamic quorum with replicated internal topics,
  the firewall opens the controller port to the other Kafka hosts only, and the app gets every
  broker; bad input fails before anything changes, naming the variable (the bad inventories in
  one run, each its own cluster there: local_play.run_cases).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from local_play import assert_failed_with, refused_fixture, run_play

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"


def _load(name: str, path: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, ROOT / path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


quorum: Any = _load("kafka_quorum", "roles/kafka/filter_plugins/kafka_quorum.py")
topics: Any = _load("kafka_topics", "roles/kafka/filter_plugins/kafka_topics.py")

STATUS = """ClusterId:              kTnRJ7vTQXuJJ9fWO2Ybnw
LeaderId:               2
LeaderEpoch:            5
HighWatermark:          1873
MaxFollowerLag:         0
MaxFollowerLagTimeMs:   0
CurrentVoters:          [{"id": 1, "directoryId": "Yz9fk0Xb1sJYv2-Gp2eRhg", "endpoints": ["CONTROLLER://10.77.0.61:9093"]}, \
{"id": 2, "directoryId": "Mid0pNcBCLrAt9DJ1VHRjQ", "endpoints": ["CONTROLLER://10.77.0.62:9093"]}, \
{"id": 3, "directoryId": "c2FEdgjQTS6yo6ODJx9tJA", "endpoints": ["CONTROLLER://10.77.0.63:9093"]}]
CurrentObservers:       []
"""

REPLICATION = """NodeId\tDirectoryId           \tLogEndOffset\tLag\tLastFetchTimestamp\tLastCaughtUpTimestamp\tStatus
2     \tMid0pNcBCLrAt9DJ1VHRjQ\t1873        \t0  \t1764640000000     \t1764640000000        \tLeader
1     \tYz9fk0Xb1sJYv2-Gp2eRhg\t1873        \t0  \t1764639999800     \t1764639999800        \tFollower
3     \tc2FEdgjQTS6yo6ODJx9tJA\t1872        \t1  \t1764639999900     \t1764639999500        \tFollower
4     \tAAAAAAAAAAAAAAAAAAAAAA\t1873        \t0  \t1764639999900     \t1764639999900        \tObserver
"""


def test_voters_and_leader() -> None:
    assert quorum.kafka_quorum_voters(STATUS) == [1, 2, 3]
    assert quorum.kafka_quorum_leader(STATUS) == 2
    assert quorum.kafka_quorum_voters("CurrentVoters: [1,2,3]\n") == [1, 2, 3]
    assert quorum.kafka_quorum_voters("") == []


def test_a_whole_quorum_has_no_problems() -> None:
    rows = quorum.kafka_quorum_replication(REPLICATION)
    assert [(r["id"], r["lag"], r["status"]) for r in rows] == [
        (2, 0, "Leader"), (1, 0, "Follower"), (3, 1, "Follower"), (4, 0, "Observer"),
    ]
    assert quorum.kafka_quorum_problems(REPLICATION, [1, 2, 3, 4], 20) == []


def test_a_stopped_voter_or_a_missing_node_is_a_problem() -> None:
    stale = REPLICATION.replace("1872        \t1  ", "1100        \t773")
    assert quorum.kafka_quorum_problems(stale, [1, 2, 3], 20) == ["voter 3 lags 773 records"]
    assert quorum.kafka_quorum_problems(REPLICATION, [1, 2, 3, 5], 20) == ["node 5 does not fetch the metadata log"]
    assert quorum.kafka_quorum_problems("", [1], 20) == ["no replication state (is the quorum reachable?)"]
    leaderless = REPLICATION.replace("Leader\n", "Follower\n")
    assert "no leader" in quorum.kafka_quorum_problems(leaderless, [1], 20)


DESCRIBE = """Topic: web-logs-topic\tTopicId: 3VbW2zFQRbGEgRkD4LPv3A\tPartitionCount: 2\tReplicationFactor: 1\tConfigs: \
min.insync.replicas=1,cleanup.policy=delete,retention.ms=604800000
\tTopic: web-logs-topic\tPartition: 0\tLeader: 1\tReplicas: 1\tIsr: 1\tElr: \tLastKnownElr:
\tTopic: web-logs-topic\tPartition: 1\tLeader: 1\tReplicas: 1\tIsr: 1\tElr: \tLastKnownElr:
Topic: __consumer_offsets\tTopicId: Q0d0yZ3sR1u2uXQ2Wn3hJg\tPartitionCount: 2\tReplicationFactor: 3\tConfigs: \
compression.type=producer,cleanup.policy=compact,segment.bytes=104857600
\tTopic: __consumer_offsets\tPartition: 0\tLeader: 1\tReplicas: 1,2,3\tIsr: 1,2,3\tElr: \tLastKnownElr:
\tTopic: __consumer_offsets\tPartition: 1\tLeader: 2\tReplicas: 2,3,1\tIsr: 2,3,1\tElr: \tLastKnownElr:
"""


def test_reassignment_raises_only_what_is_lower() -> None:
    existing = topics.kafka_topics_describe(DESCRIBE)
    assert existing["web-logs-topic"]["assignment"] == {0: [1], 1: [1]}
    plan = topics.kafka_reassignment(existing, {"web-logs-topic": 3, "__consumer_offsets": 3, "absent": 3}, [1, 2, 3])
    assert plan["version"] == 1
    assert [p["topic"] for p in plan["partitions"]] == ["web-logs-topic", "web-logs-topic"]
    for p in plan["partitions"]:
        assert p["replicas"][0] == 1 and sorted(p["replicas"]) == [1, 2, 3]
    # new replicas are spread: the two partitions do not list the added brokers in the same order
    assert plan["partitions"][0]["replicas"] != plan["partitions"][1]["replicas"]
    assert topics.kafka_reassignment(existing, {"web-logs-topic": 1}, [1, 2, 3])["partitions"] == []


# --- the role's tasks and templates on made-up inventories -------------------------------------

RENDER = """
- name: Render the kafka role's configuration for these hosts (nothing on any host changes)
  hosts: kafka
  gather_facts: false  # run_play gives every host this machine's facts first
  become: false
  roles:
    - {role: base, tags: [never]}
    - {role: kafka, tags: [never]}
    - {role: footprint, tags: [never]}
  tasks:
    - name: Load the role's internals
      ansible.builtin.include_vars: "{{ roles_dir }}/kafka/vars/main.yml"
    - name: Check the inventory's cluster (the role's own tasks)
      ansible.builtin.include_role:
        name: kafka
        tasks_from: cluster.yml
    - name: Render the configuration files and the wiring (on the control node)
      ansible.builtin.set_fact:
        rendered:
          server.properties: "{{ lookup('ansible.builtin.template', roles_dir ~ '/kafka/templates/server.properties.j2') }}"
          kafka.service: "{{ lookup('ansible.builtin.template', roles_dir ~ '/kafka/templates/kafka.service.j2') }}"
          json: "{{ {'fw': base_firewall_service_ports, 'bootstrap': footprint_kafka_bootstrap} | to_json }}"
      vars:
        __kafka_java_home: /usr/lib/jvm/java-21
        ansible_managed: managed
"""


FACTS = ["min", "network"]  # the firewall's peers are the other Kafka hosts' addresses
# The groups the role reads its cluster from (local_play.batch gives each case its own).
CLUSTER_GROUPS = {"kafka_cluster_group": "kafka", "kafka_controller_group": "kafka_controller"}


def inventory(hosts: dict[str, dict[str, Any]], kafka: list[str], controllers: list[str] | None) -> dict[str, Any]:
    kafka_group: dict[str, Any] = {"hosts": {h: {} for h in kafka}}
    if controllers is not None:
        kafka_group["children"] = {"kafka_controller": {"hosts": {h: {} for h in controllers}}}
    first = next(iter(hosts))
    return {"all": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                 "base_firewall_enabled": True, "footprint_firewall_store_from": "10.77.0.0/24",
                 # fixed, so that a render can be compared byte for byte
                 "kafka_broker_password": "broker-password-for-the-render",
                 "kafka_keystore_password": "keystore-password-for-the-render"},
        "children": {"footprint": {"hosts": hosts, "children": {
            "kafka": kafka_group,
            "clickhouse": {"hosts": {first: {}}}, "postgresql": {"hosts": {first: {}}}, "app": {"hosts": {first: {}}},
        }}},
    }}


def render(tmp_path: Path, inv: dict[str, Any], roles: Path = ROOT / "roles",
           group_vars: Path = ROOT / "playbooks" / "group_vars") -> subprocess.CompletedProcess[str]:
    return run_play(tmp_path, RENDER, inv, roles, group_vars, facts=FACTS)


def host(n: int, node_id: int | None = None) -> dict[str, Any]:
    vars_: dict[str, Any] = {"ansible_host": f"10.77.0.{60 + n}", "kafka_advertised_host": f"10.77.0.{60 + n}"}
    if node_id is not None:
        vars_["kafka_node_id"] = node_id
    return vars_


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "plaintext"])
def test_a_single_host_renders_as_before(tmp_path: Path, tls: bool) -> None:
    inv = inventory({"h1": host(0)}, ["h1"], None)
    inv["all"]["vars"]["kafka_tls_enabled"] = tls
    res = render(tmp_path, inv)
    assert res.returncode == 0, res.stdout[-3000:]
    expected = {"server.properties": "kafka-single-host" if tls else "kafka-single-host-plaintext",
                "kafka.service": "kafka-single-host"}  # the unit does not depend on TLS
    for name, data in expected.items():
        assert (tmp_path / "out" / f"h1.{name}").read_text() == (DATA / f"{data}.{name}").read_text(), name
    wiring = json.loads((tmp_path / "out" / "h1.json").read_text())
    assert wiring == json.loads((DATA / "kafka-single-host.wiring.json").read_text())
    assert wiring["bootstrap"] == "127.0.0.1:9092"


def test_three_controllers_and_a_broker(tmp_path: Path) -> None:
    hosts = {"c1": host(1, 1), "c2": host(2, 2), "c3": host(3, 3), "c4": host(4, 14)}
    res = render(tmp_path, inventory(hosts, ["c1", "c2", "c3", "c4"], ["c1", "c2", "c3"]))
    assert res.returncode == 0, res.stdout[-3000:]
    props = {h: dict(line.split("=", 1) for line in (tmp_path / "out" / f"{h}.server.properties").read_text().splitlines()
                     if "=" in line and not line.startswith("#")) for h in hosts}
    for h, p in props.items():
        assert p["controller.quorum.bootstrap.servers"] == "10.77.0.61:9093,10.77.0.62:9093,10.77.0.63:9093"
        assert "controller.quorum.voters" not in p
        assert p["default.replication.factor"] == p["offsets.topic.replication.factor"] == "3"
        assert p["min.insync.replicas"] == p["transaction.state.log.min.isr"] == "2"
        assert p["node.id"] == str(hosts[h]["kafka_node_id"])
    assert props["c2"]["process.roles"] == "broker,controller"
    assert props["c2"]["listeners"] == "CLIENT://0.0.0.0:9092,CONTROLLER://10.77.0.62:9093"
    assert props["c2"]["advertised.listeners"] == "CLIENT://10.77.0.62:9092,CONTROLLER://10.77.0.62:9093"
    assert props["c4"]["process.roles"] == "broker"
    assert props["c4"]["listeners"] == "CLIENT://0.0.0.0:9092"
    for p in props.values():  # TLS (the default): the brokers SASL_SSL, the controllers mutual TLS
        assert p["listener.security.protocol.map"] == "CONTROLLER:SSL,CLIENT:SASL_SSL"
        assert p["inter.broker.listener.name"] == "CLIENT"
        # every node's certificate (CN = inventory name) is a super user on the controller listener
        assert set(p["super.users"].split(";")) >= {"User:c1", "User:c2", "User:c3", "User:c4"}
    wiring = {h: json.loads((tmp_path / "out" / f"{h}.json").read_text()) for h in hosts}
    assert wiring["c1"]["bootstrap"] == "10.77.0.61:9092,10.77.0.62:9092,10.77.0.63:9092,10.77.0.64:9092"
    controller_rules = {h: [r for r in w["fw"] if r["port"] == 9093] for h, w in wiring.items()}
    assert controller_rules["c4"] == []  # a broker-only node has no controller listener
    for h in ("c1", "c2", "c3"):
        assert controller_rules[h] and all(r["comment"] == "kafka controller" and r["from"] not in ("any", "10.77.0.0/24")
                                           for r in controller_rules[h])


BAD = [
    ("duplicate-ids", {"c1": host(1, 1), "c2": host(2, 1), "c3": host(3, 3)}, ["c1", "c2", "c3"], ["c1", "c2", "c3"],
     "kafka_node_id must be set per host and unique"),
    ("ids-left-out", {"c1": host(1), "c2": host(2), "c3": host(3)}, ["c1", "c2", "c3"], ["c1", "c2", "c3"],
     "kafka_node_id must be set per host and unique"),
    ("two-controllers", {"c1": host(1, 1), "c2": host(2, 2), "c3": host(3, 3)}, ["c1", "c2", "c3"], ["c1", "c2"],
     "(kafka_controller_group) must hold 1, 3 or 5 hosts"),
    ("no-controller-group", {"c1": host(1, 1), "c2": host(2, 2), "c3": host(3, 3)}, ["c1", "c2", "c3"], None,
     "(kafka_controller_group) must hold 1, 3 or 5 hosts"),
]


def outsider() -> dict[str, Any]:
    """A controller (c5) outside the kafka group."""
    hosts = {"c1": host(1, 1), "c2": host(2, 2), "c3": host(3, 3), "c5": host(5, 5)}
    inv = inventory(hosts, ["c1", "c2", "c3"], None)
    inv["all"]["children"]["footprint"]["children"]["kafka_controller"] = {"hosts": {"c1": {}, "c2": {}, "c5": {}}}
    return inv


def loopback() -> dict[str, Any]:
    """Three nodes, c2's controller listener on loopback."""
    hosts = {"c1": host(1, 1), "c2": host(2, 2), "c3": host(3, 3)}
    hosts["c2"]["kafka_controller_listen_address"] = "127.0.0.1"
    return inventory(hosts, ["c1", "c2", "c3"], ["c1", "c2", "c3"])


def refused_cases() -> dict[str, dict[str, Any]]:
    """Every inventory this module expects the role to refuse, by case."""
    cases = {case: inventory(hosts, kafka, controllers) for case, hosts, kafka, controllers, _ in BAD}
    return cases | {"outsider": outsider(), "loopback": loopback()}


refused = refused_fixture(RENDER, refused_cases, CLUSTER_GROUPS, FACTS)  # each case its own cluster, in one run


@pytest.mark.parametrize(("case", "message"), [(b[0], b[4]) for b in BAD], ids=[b[0] for b in BAD])
def test_bad_cluster_input_fails_naming_the_variable(refused: dict[str, str], case: str, message: str) -> None:
    assert_failed_with(refused, case, message)


def test_a_controller_outside_the_kafka_group_is_refused(refused: dict[str, str]) -> None:
    assert_failed_with(refused, "outsider", "not in kafka_outsider: outsider.c5")  # case c's kafka group is kafka_c


def test_a_loopback_controller_listener_is_refused_with_several_nodes(refused: dict[str, str]) -> None:
    assert_failed_with(refused, "loopback", "kafka_controller_listen_address is 127.0.0.1 on loopback.c2")
