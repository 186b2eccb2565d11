"""testinfra checks of a Kafka cluster: the inventory group `kafka` has more than one host.

    .venv/bin/pytest tests/test_kafka_cluster.py --hosts=ansible://kafka --ansible-inventory=INVENTORY

Skipped when the group has one host (tests/test_kafka.py covers the single node). Node ids,
controllers, ports and topics come from the resolved inventory (conftest). The quorum is read
with the role's own filters (roles/kafka/filter_plugins/kafka_quorum.py) from
`kafka-metadata-quorum.sh` on each host; the topics with confluent-kafka from the control node.

- every controller of the inventory is a voter, and every node fetches the metadata log caught up
- the declared topics and __consumer_offsets have min(3, brokers) replicas, all in sync, and
  min.insync.replicas one less
- `destructive`: an idempotent acks=all producer writes a numbered stream while the broker that
  leads its partition is killed with SIGKILL (systemd starts it again): every number is read back
  exactly once, and the partition is back to all replicas in sync. Meanwhile events go through
  every app host's collector (when the inventory has app hosts): each accepted one is found
  exactly once in PostgreSQL and ClickHouse.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import upgrade_traffic
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, ConfigResource  # type: ignore[attr-defined]
from conftest import ROOT, address_of, create_topic, kafka_client, resolved, setting
from test_delivery import endpoints_of, wait_for
from test_upgrade import runs_of, stored_ids

testinfra_hosts = ["ansible://kafka"]

_spec = importlib.util.spec_from_file_location("kafka_quorum", ROOT / "roles/kafka/filter_plugins/kafka_quorum.py")
assert _spec and _spec.loader
quorum: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(quorum)


@pytest.fixture(scope="module")
def cluster(hostvars: dict[str, Any], request: pytest.FixtureRequest) -> dict[str, Any]:
    """The cluster as the inventory describes it: node ids, controller ids, brokers' bootstrap."""
    groups = hostvars["groups"]
    kafka = list(groups.get(setting(hostvars, "kafka_cluster_group"), []))
    if len(kafka) < 2:
        pytest.skip("the kafka group has one host (tests/test_kafka.py covers it)")
    nodes = {h: resolved(request.config, h) for h in kafka}
    controllers = groups.get(setting(hostvars, "kafka_controller_group"), [])
    return {
        "ids": {h: int(v["kafka_node_id"]) for h, v in nodes.items()},
        "voters": sorted(int(nodes[h]["kafka_node_id"]) for h in controllers),
        "bootstrap": ",".join(f"{address_of(v)}:{int(v['kafka_port'])}" for v in nodes.values()),
        "hosts": kafka,
        "rf": min(3, len(kafka)),
        "vars": nodes[kafka[0]],
    }


def metadata_quorum(host: Any, hostvars: dict[str, Any], *args: str) -> Any:
    """kafka-metadata-quorum.sh on `host` through its own client port, as the admin (the role's
    tools' client configuration, TLS or not); the command's result."""
    home = f"{setting(hostvars, 'kafka_install_root')}/current"
    env = (f"KAFKA_HEAP_OPTS=-Xmx128m KAFKA_LOG4J_OPTS=-Dlog4j2.configurationFile="
           f"{setting(hostvars, 'kafka_config_dir')}/tools-log4j2.properties")
    return host.run(f"env {env} {home}/bin/kafka-metadata-quorum.sh --bootstrap-server {address_of(hostvars)}:"
                    f"{int(setting(hostvars, 'kafka_port'))} --command-config "
                    f"{setting(hostvars, 'kafka_config_dir')}/admin.properties " + " ".join(args))


def quorum_tool(host: Any, hostvars: dict[str, Any], *args: str) -> str:
    """`describe` with `args` (--status, --replication); its output."""
    out = metadata_quorum(host, hostvars, "describe", *args)
    assert out.rc == 0, out.stderr[-2000:]
    return str(out.stdout)


def test_every_controller_is_a_voter(host: Any, hostvars: dict[str, Any], cluster: dict[str, Any]) -> None:
    status = quorum_tool(host, hostvars, "--status")
    assert quorum.kafka_quorum_voters(status) == cluster["voters"]
    assert quorum.kafka_quorum_leader(status) in cluster["voters"]


def test_every_node_follows_the_quorum(host: Any, hostvars: dict[str, Any], cluster: dict[str, Any]) -> None:
    replication = quorum_tool(host, hostvars, "--replication")
    assert quorum.kafka_quorum_problems(replication, list(cluster["ids"].values()), 20) == []


def _extra(options: dict[str, Any]) -> dict[str, Any]:
    """librdkafka options with dots in their names, for kafka_client's keyword arguments."""
    return options


@pytest.fixture(scope="module")
def admin(cluster: dict[str, Any]) -> AdminClient:
    return AdminClient(kafka_client(cluster["vars"], cluster["bootstrap"], **_extra({"socket.timeout.ms": 10000})))


def test_topics_are_replicated_and_in_sync(hostvars: dict[str, Any], cluster: dict[str, Any], admin: AdminClient) -> None:
    declared = setting(hostvars, "kafka_topics")
    meta = admin.list_topics(timeout=20)
    names = [t["name"] for t in declared] + (["__consumer_offsets"] if "__consumer_offsets" in meta.topics else [])
    for name in names:
        wanted = next((int(t.get("replication_factor", cluster["rf"])) for t in declared if t["name"] == name), cluster["rf"])
        assert name in meta.topics, f"{name} does not exist"
        for p in meta.topics[name].partitions.values():
            assert len(p.replicas) == wanted, f"{name}/{p.id}: replicas {p.replicas}"
            assert sorted(p.isrs) == sorted(p.replicas), f"{name}/{p.id}: ISR {p.isrs} of {p.replicas}"
    resource = ConfigResource("topic", declared[0]["name"])
    configs = admin.describe_configs([resource])[resource].result(20)
    assert int(configs["min.insync.replicas"].value) == max(1, cluster["rf"] - 1)


def wait_in_sync(admin: AdminClient, topic: str, replicas: int, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        p = admin.list_topics(topic, timeout=10).topics[topic].partitions.get(0)  # none yet right after creation
        if p is not None and len(p.isrs) == replicas and p.leader >= 0:
            return time.monotonic() - start
        time.sleep(1)
    pytest.fail(f"{topic}/0 not back to {replicas} in-sync replicas within {timeout} s")


class CollectorTraffic:
    """Batches of events through every app host's collector, each batch sent until accepted, in
    threads, from start() to stop_and_check(); every request logged (tests/upgrade_traffic.py)."""

    def __init__(self, endpoints: list[dict[str, Any]], logs: Path) -> None:
        self.endpoints = endpoints
        self.logs = [logs / f"traffic-{i}.jsonl" for i in range(len(endpoints))]
        self.done = threading.Event()
        self.errors: list[str] = []  # a collector that refused one batch too often (upgrade_traffic.Refused)
        self.threads = [threading.Thread(target=self._send, args=(ep, log), daemon=True)
                        for ep, log in zip(endpoints, self.logs, strict=True)]

    def _send(self, ep: dict[str, Any], log: Path) -> None:
        with log.open("a") as out:
            sender = upgrade_traffic.Sender(ep["collector"], ep["api_key"].reveal(), out,
                                            "kill" + uuid.uuid4().hex[:8], ep["verify"])
            until_accepted = upgrade_traffic.Stop()
            try:
                while not self.done.is_set():
                    sender.send_until_accepted(sender.batch(20, "kill"), 0.5, until_accepted)
                    time.sleep(0.2)
            except upgrade_traffic.Refused as exc:
                self.errors.append(str(exc))

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def stop_and_check(self, final: bool = True) -> str:
        """Every accepted event exactly once in both stores (ClickHouse's rows as stored when ``final``
        is false); the report line."""
        self.done.set()
        for t in self.threads:
            t.join(180)
            assert not t.is_alive(), "a collector did not accept a batch within 180 s"
        assert not self.errors, f"the traffic stopped: {self.errors}"
        accepted = {upgrade_traffic.event_id(m) for log in self.logs for m in upgrade_traffic.accepted_ids(log)}
        runs = sorted({r for log in self.logs for r in runs_of(log)})
        ep = self.endpoints[0]

        def caught_up() -> tuple[list[str], list[str]] | None:
            pg, ch = stored_ids(ep, runs, final)
            return (pg, ch) if accepted <= set(pg) and accepted <= set(ch) else None

        found = wait_for(f"all {len(accepted)} accepted events in both stores", caught_up, timeout=180)
        for store, ids in zip(("PostgreSQL", "ClickHouse"), found, strict=True):
            assert len(ids) == len(set(ids)), f"{store} holds {len(ids) - len(set(ids))} events more than once"
        return (f"{len(accepted)} events accepted by {len(self.threads)} collectors meanwhile, "
                "each found exactly once in PostgreSQL and ClickHouse")


def partition_leader(admin: AdminClient, topic: str, timeout: float) -> int:
    """The leader of `topic`/0. Asked again while the broker that answers does not know the
    partition yet: a new topic reaches each broker's metadata at its own moment (a KeyError in a
    CI run, right after another broker had shown it in sync)."""
    end = time.monotonic() + timeout
    while True:
        p = admin.list_topics(topic, timeout=10).topics[topic].partitions.get(0)
        if p is not None and p.leader >= 0:
            return int(p.leader)
        if time.monotonic() > end:
            pytest.fail(f"{topic}/0 has no leader that the brokers agree on within {timeout} s")
        time.sleep(0.5)


@pytest.mark.destructive
def test_kill_9_of_the_leader_under_a_producer_loses_and_duplicates_nothing(
    host: Any, hostvars: dict[str, Any], cluster: dict[str, Any], admin: AdminClient, request: pytest.FixtureRequest,
    component: Callable[[str], tuple[str, dict[str, Any]]], tmp_path: Path,
) -> None:
    if host.backend.get_hostname() != cluster["hosts"][0]:
        pytest.skip("runs once for the cluster (from the first Kafka host's parameter)")
    apps = hostvars["groups"].get("app", [])
    traffic = CollectorTraffic([endpoints_of(component, resolved(request.config, h)) for h in apps], tmp_path)
    topic = f"footprint-kill-{uuid.uuid4().hex[:8]}"
    create_topic(admin, topic, 1, cluster["rf"])
    try:
        wait_in_sync(admin, topic, cluster["rf"], 60)
        leader_id = partition_leader(admin, topic, 30)
        victim = next(h for h, i in cluster["ids"].items() if i == leader_id)
        import testinfra  # the victim's own connection, from the same inventory

        victim_host = testinfra.get_host(f"ansible://{victim}?ansible_inventory={request.config.option.ansible_inventory}")
        producer = Producer(kafka_client(cluster["vars"], cluster["bootstrap"], **_extra({
            "enable.idempotence": True, "acks": "all",
            "linger.ms": 5, "delivery.timeout.ms": 120000, "message.timeout.ms": 120000,
        })))
        delivered: list[int] = []
        failed: list[str] = []

        def report(err: Any, msg: Any) -> None:
            if err is None:
                delivered.append(int(msg.value()))
            else:
                failed.append(str(err))

        sent = 0
        stop = threading.Event()
        traffic.start()
        started = time.monotonic()
        killed_at = None
        while time.monotonic() - started < 40 and not stop.is_set():
            producer.produce(topic, key=str(sent).encode(), value=str(sent).encode(), on_delivery=report)
            sent += 1
            producer.poll(0)
            if killed_at is None and time.monotonic() - started > 8:
                pid = victim_host.run("systemctl show --property=MainPID --value %s", setting(hostvars, "kafka_service_name"))
                assert int(pid.stdout) > 0
                assert victim_host.run("kill -9 %s", pid.stdout.strip()).rc == 0
                killed_at = time.monotonic() - started
            time.sleep(0.005)
        assert producer.flush(150) == 0, "messages still in flight after 150 s"
        consumer = Consumer(kafka_client(cluster["vars"], cluster["bootstrap"], **_extra({
            "group.id": f"kill-check-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest", "enable.auto.commit": False, "isolation.level": "read_committed",
        })))
        consumer.subscribe([topic])
        seen: list[int] = []
        idle = time.monotonic()
        while time.monotonic() - idle < 15 and len(seen) < sent:
            msg = consumer.poll(1)
            if msg is None or msg.error():
                continue
            seen.append(int(msg.value() or b"-1"))
            idle = time.monotonic()
        consumer.close()
        back = wait_in_sync(admin, topic, cluster["rf"], 180)
        through_the_app = traffic.stop_and_check() if apps else "no app host in the inventory"
        print(f"\nkill -9 of node {leader_id} ({victim}) at {killed_at:.1f} s: sent {sent}, delivered {len(delivered)}, "
              f"failed {len(failed)}, read {len(seen)}, distinct {len(set(seen))}; ISR {cluster['rf']} again {back:.0f} s later;"
              f" {through_the_app}")
        assert failed == []
        assert len(delivered) == sent
        assert sorted(seen) == list(range(sent)), "lost or duplicated"
    finally:
        traffic.done.set()
        admin.delete_topics([topic])[topic].result(30)


def directory_ids(host: Any, hostvars: dict[str, Any]) -> dict[int, str]:
    """node id -> its metadata directory id, as the quorum knows them."""
    return {r["id"]: r["directory_id"] for r in quorum.kafka_quorum_replication(quorum_tool(host, hostvars, "--replication"))}


@pytest.mark.destructive
@pytest.mark.lost_host  # ~6 min (kafka.yml on the three hosts): FOOTPRINT_LOST_HOST=1 make molecule-cluster
def test_a_lost_voter_is_replaced_under_traffic(
    host: Any, hostvars: dict[str, Any], cluster: dict[str, Any], admin: AdminClient, request: pytest.FixtureRequest,
    component: Callable[[str], tuple[str, dict[str, Any]]], tmp_path: Path,
) -> None:
    """README, "Losing a host", a Kafka voter lost for good, as written there: the node's disk is gone
    (its data and log directories deleted, the broker stopped), the lost voter dropped with
    `remove-controller`, then the kafka playbook formats the node as a new controller and adds it
    (as when growing). Meanwhile events go through every collector: each accepted one is stored
    exactly once in both stores; afterwards the quorum has every controller again, the node with a
    new metadata directory id, and every declared topic's partitions are back to all replicas in sync."""
    if host.backend.get_hostname() != cluster["hosts"][0]:
        pytest.skip("runs once for the cluster (from the first Kafka host's parameter)")
    controllers = [h for h in cluster["hosts"][1:] if cluster["ids"][h] in cluster["voters"]]
    if len(cluster["voters"]) < 3 or not controllers:
        pytest.skip("needs three voters, one of them not the first Kafka host")
    victim = controllers[-1]
    victim_id = cluster["ids"][victim]
    import testinfra

    inventory = str(request.config.option.ansible_inventory)
    victim_host = testinfra.get_host(f"ansible://{victim}?ansible_inventory={inventory}")
    victim_vars = resolved(request.config, victim)
    before = directory_ids(host, hostvars)
    apps = hostvars["groups"].get("app", [])
    traffic = CollectorTraffic([endpoints_of(component, resolved(request.config, h)) for h in apps], tmp_path)
    traffic.start()
    try:
        time.sleep(5)
        lost = [str(setting(victim_vars, "kafka_data_dir")), *map(str, setting(victim_vars, "kafka_log_dirs"))]
        victim_host.run_test("systemctl stop %s", setting(victim_vars, "kafka_service_name"))
        victim_host.run_test("rm -rf " + " ".join(f"'{d}'" for d in lost))
        wait_for("a quorum leader among the two voters left", lambda: quorum.kafka_quorum_leader(
            quorum_tool(host, hostvars, "--status")) in set(cluster["voters"]) - {victim_id}, timeout=60)
        removed = metadata_quorum(host, hostvars, "remove-controller", "--controller-id", str(victim_id),
                                  "--controller-directory-id", before[victim_id])
        assert removed.rc == 0, removed.stdout[-1000:] + removed.stderr[-2000:]
        assert quorum.kafka_quorum_voters(quorum_tool(host, hostvars, "--status")) == sorted(set(cluster["voters"]) - {victim_id})
        env = dict(os.environ, ANSIBLE_ROLES_PATH=str(ROOT / "roles"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
        started = time.monotonic()
        res = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", inventory,
                              str(ROOT / "playbooks" / "kafka.yml")], cwd=ROOT, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=1500)
        took = time.monotonic() - started
        assert res.returncode == 0, res.stdout[-4000:]
        assert quorum.kafka_quorum_voters(quorum_tool(host, hostvars, "--status")) == cluster["voters"]
        after = directory_ids(host, hostvars)
        assert after[victim_id] not in ("", before[victim_id]), (before, after)
        wait_for("every node following the quorum", lambda: not quorum.kafka_quorum_problems(
            quorum_tool(host, hostvars, "--replication"), list(cluster["ids"].values()), 20), timeout=120)

        def all_in_sync() -> bool:
            meta = admin.list_topics(timeout=20)
            return all(len(p.replicas) == cluster["rf"] and sorted(p.isrs) == sorted(p.replicas)
                       for t in setting(hostvars, "kafka_topics") for p in meta.topics[t["name"]].partitions.values())

        wait_for("every declared topic's partitions back to all replicas in sync", all_in_sync, timeout=300)
        through_the_app = traffic.stop_and_check() if apps else "no app host in the inventory"
        print(f"\nlost voter {victim_id} ({victim}) replaced: kafka.yml {took:.0f} s, directory id "
              f"{before[victim_id]} -> {after[victim_id]}; {through_the_app}")
    finally:
        traffic.done.set()
