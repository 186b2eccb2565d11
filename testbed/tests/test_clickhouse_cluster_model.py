"""The clickhouse role's inventory model for several hosts, without a host.

The role's own tasks (tasks/cluster.yml) and templates, run locally on made-up inventories:
- a single host renders byte for byte what the role rendered before clusters existed
  (data/clickhouse-single-host*: every config.d file and users.d, with and without TLS, rendered
  by this branch's role at commit 293c915, before the ClickHouse cluster, from the same inventory;
  users.d with one change since: the reader's own profile, test_clickhouse_reader_profile.py;
  and two since for issue 29: three more system log tables with the TTL, and footprint-storage.xml,
  the data path and the reserved free space; and two for issue 30: the backups' allowed path in
  footprint-storage.xml, the owner's READ, WRITE ON FILE grant), and no cluster or Keeper file;
- two shards of two replicas with three Keeper hosts render remote_servers (shards from
  clickhouse_shard, replicas within, internal_replication, the shared secret), the macros of each
  host, the zookeeper section pointing at the Keeper hosts, the interserver settings, and
  keeper_server on the Keeper hosts only; an existing ZooKeeper replaces Keeper;
- bad input fails before anything changes, naming the variable (the bad inventories in one run,
  each its own cluster there: local_play.run_cases).
The rendered files are also read as the engine reads them in
testbed/clickhouse-standin/tests/test_cluster.py (two stand-in shards).
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from local_play import assert_failed_with, refused_fixture, run_play

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
SINGLE_FILES = ["footprint-network.xml", "footprint-logger.xml", "footprint-memory.xml",
                "footprint-system-logs.xml", "footprint-access.xml", "footprint-storage.xml"]

RENDER = """
- name: Render the clickhouse role's configuration for these hosts (nothing on any host changes)
  hosts: clickhouse
  gather_facts: false  # run_play gives every host this machine's facts first
  become: false
  roles:
    - {role: clickhouse, tags: [never]}
  tasks:
    - name: Load the role's internals
      ansible.builtin.include_vars: "{{ roles_dir }}/clickhouse/vars/{{ item }}"
      loop: [main.yml, Debian.yml]
    - name: Check the inventory's cluster (the role's own tasks)
      ansible.builtin.include_role:
        name: clickhouse
        tasks_from: cluster.yml
      when: __clickhouse_clustered | bool
    - name: Render the config.d files the role chooses for this host, and users.d (on the control node)
      ansible.builtin.set_fact:
        rendered: "{{ dict(names | zip(query('ansible.builtin.template', *templates))) }}"
      vars:
        ansible_managed: managed
        names: "{{ __clickhouse_config_files + ['footprint-users.xml'] }}"
        templates: "{{ __clickhouse_config_files | map('regex_replace', '^', source ~ '/config.d/')
                       | map('regex_replace', '$', '.j2') | list + [source ~ '/users.d/footprint-users.xml.j2'] }}"
        source: "{{ roles_dir }}/clickhouse/templates"
"""

FIXED = {  # fixed, so that a render can be compared byte for byte
    "clickhouse_owner_password": "owner-password-for-the-render",
    "clickhouse_writer_password": "writer-password-for-the-render",
    "clickhouse_reader_password": "reader-password-for-the-render",
    "clickhouse_cluster_secret": "cluster-secret-for-the-render",
    "clickhouse_interserver_password": "interserver-password-for-the-render",
}


FACTS = ["min"]
# The groups the role reads its cluster from (local_play.batch gives each case its own).
CLUSTER_GROUPS = {"clickhouse_cluster_group": "clickhouse", "clickhouse_keeper_group": "clickhouse_keeper"}


def inventory(hosts: dict[str, dict[str, Any]], keepers: list[str] | None, **extra: Any) -> dict[str, Any]:
    ch: dict[str, Any] = {"hosts": {h: {} for h in hosts}}
    if keepers is not None:
        ch["children"] = {"clickhouse_keeper": {"hosts": {h: {} for h in keepers}}}
    first = next(iter(hosts))
    return {"all": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, **FIXED, **extra},
        "children": {"footprint": {"hosts": hosts, "children": {
            "clickhouse": ch,
            "kafka": {"hosts": {first: {}}}, "postgresql": {"hosts": {first: {}}}, "app": {"hosts": {first: {}}},
        }}},
    }}


def render(tmp_path: Path, inv: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return run_play(tmp_path, RENDER, inv, facts=FACTS)


def node(n: int, shard: int | None = None, replica: str | None = None, keeper_id: int | None = None) -> dict[str, Any]:
    vars_: dict[str, Any] = {"ansible_host": f"10.77.0.{70 + n}"}
    if shard is not None:
        vars_["clickhouse_shard"] = shard
    if replica is not None:
        vars_["clickhouse_replica"] = replica
    if keeper_id is not None:
        vars_["clickhouse_keeper_server_id"] = keeper_id
    return vars_


def out(tmp_path: Path, host: str, name: str) -> ET.Element:
    return ET.parse(tmp_path / "out" / f"{host}.{name}").getroot()


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "plaintext"])
def test_a_single_host_renders_as_before(tmp_path: Path, tls: bool) -> None:
    res = render(tmp_path, inventory({"h1": {"ansible_host": "10.77.0.60"}}, None, clickhouse_tls_enabled=tls))
    assert res.returncode == 0, res.stdout[-3000:]
    rendered = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert rendered == sorted(f"h1.{n}" for n in [*SINGLE_FILES, "footprint-users.xml"])  # no cluster, no Keeper
    for name in [*SINGLE_FILES, "footprint-users.xml"]:
        golden = DATA / f"clickhouse-single-host.{name}"
        if not tls and name == "footprint-network.xml":
            golden = DATA / "clickhouse-single-host-plaintext.footprint-network.xml"
        assert (tmp_path / "out" / f"h1.{name}").read_text() == golden.read_text(), name


FOUR = {"c1": node(1, 1, "r1", 1), "c2": node(2, 1, "r2", 2), "c3": node(3, 2, "r1", 3), "c4": node(4, 2, "r2")}


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "plaintext"])
def test_two_shards_of_two_replicas_with_three_keepers(tmp_path: Path, tls: bool) -> None:
    res = render(tmp_path, inventory(FOUR, ["c1", "c2", "c3"], clickhouse_tls_enabled=tls))
    assert res.returncode == 0, res.stdout[-3000:]
    assert "cluster-secret-for-the-render" not in res.stdout  # no_log
    for h, hv in FOUR.items():
        cfg = out(tmp_path, h, "footprint-cluster.xml")
        cluster = cfg.find("remote_servers/footprint")
        assert cluster is not None
        assert cluster.findtext("secret") == "cluster-secret-for-the-render"
        shards = cluster.findall("shard")
        assert [[r.findtext("host") for r in s.findall("replica")] for s in shards] == [
            ["10.77.0.71", "10.77.0.72"], ["10.77.0.73", "10.77.0.74"]]
        assert all(s.findtext("internal_replication") == "true" for s in shards)
        assert {r.findtext("port") for s in shards for r in s.findall("replica")} == {"9232"}
        assert {r.findtext("secure") for s in shards for r in s.findall("replica")} == {"1" if tls else None}
        assert cfg.findtext("macros/shard") == str(hv["clickhouse_shard"])
        assert cfg.findtext("macros/replica") == hv["clickhouse_replica"]
        assert cfg.findtext("macros/cluster") == "footprint"
        assert [(n.findtext("host"), n.findtext("port"), n.findtext("secure")) for n in cfg.findall("zookeeper/node")] == [
            (f"10.77.0.7{i}", "9181", "1" if tls else None) for i in (1, 2, 3)]
        assert cfg.findtext("interserver_http_host") == hv["ansible_host"]
        assert cfg.findtext("interserver_https_port" if tls else "interserver_http_port") == "9009"
        assert cfg.find("interserver_http_port" if tls else "interserver_https_port") is None
        assert cfg.findtext("interserver_http_credentials/password") == "interserver-password-for-the-render"
        # the single-host files are unchanged by the cluster (only the owner's engines grow)
        for name in SINGLE_FILES[1:]:
            assert (tmp_path / "out" / f"{h}.{name}").read_text() == (DATA / f"clickhouse-single-host.{name}").read_text()
        users = out(tmp_path, h, "footprint-users.xml")
        owner_grants = [q.text for q in users.findall("users/footprint_owner/grants/query")]
        for engine in ("ReplicatedReplacingMergeTree", "ReplicatedAggregatingMergeTree", "Distributed"):
            assert f"GRANT TABLE ENGINE ON {engine}" in owner_grants
        # the erasure reaches every shard: it reads a host's shard macro and the cluster's shards
        assert {"GRANT SELECT ON system.macros", "GRANT SELECT ON system.clusters"} <= set(owner_grants)
    for h in ("c1", "c2", "c3"):
        keeper = out(tmp_path, h, "footprint-keeper.xml").find("keeper_server")
        assert keeper is not None
        assert keeper.findtext("server_id") == str(FOUR[h]["clickhouse_keeper_server_id"])
        assert keeper.findtext("tcp_port_secure" if tls else "tcp_port") == "9181"
        servers = keeper.findall("raft_configuration/server")
        assert [(s.findtext("id"), s.findtext("hostname"), s.findtext("port")) for s in servers] == [
            ("1", "10.77.0.71", "9234"), ("2", "10.77.0.72", "9234"), ("3", "10.77.0.73", "9234")]
        assert keeper.findtext("raft_configuration/secure") == ("true" if tls else None)
    assert not (tmp_path / "out" / "c4.footprint-keeper.xml").exists()


def test_an_existing_zookeeper_replaces_keeper(tmp_path: Path) -> None:
    hosts = {"c1": node(1, 1, "a"), "c2": node(2, 2, "a")}
    res = render(tmp_path, inventory(hosts, None, clickhouse_tls_enabled=False,
                                     clickhouse_zookeeper_hosts=["zk1.example:2181", "[fd00::5]:2181"]))
    assert res.returncode == 0, res.stdout[-3000:]
    cfg = out(tmp_path, "c1", "footprint-cluster.xml")
    assert [(n.findtext("host"), n.findtext("port")) for n in cfg.findall("zookeeper/node")] == [
        ("zk1.example", "2181"), ("fd00::5", "2181")]
    assert [len(s.findall("replica")) for s in cfg.findall("remote_servers/footprint/shard")] == [1, 1]
    assert not list((tmp_path / "out").glob("*.footprint-keeper.xml"))


def test_shards_without_replicas_need_no_coordination_service(tmp_path: Path) -> None:
    hosts = {"c1": node(1, 1, "a"), "c2": node(2, 2, "a")}
    res = render(tmp_path, inventory(hosts, None, clickhouse_tls_enabled=False, clickhouse_cluster_replicated=False))
    assert res.returncode == 0, res.stdout[-3000:]
    for h, hv in hosts.items():
        cfg = out(tmp_path, h, "footprint-cluster.xml")
        shards = cfg.findall("remote_servers/footprint/shard")
        assert [[r.findtext("host") for r in sh.findall("replica")] for sh in shards] == [["10.77.0.71"], ["10.77.0.72"]]
        assert cfg.findtext("macros/shard") == str(hv["clickhouse_shard"])
        for replication in ("zookeeper", "interserver_http_host", "interserver_http_port", "interserver_http_credentials"):
            assert cfg.find(replication) is None, replication
    assert not list((tmp_path / "out").glob("*.footprint-keeper.xml"))


BAD = [
    ("pair-used-twice", {"c1": node(1, 1, "a", 1), "c2": node(2, 1, "a", 2), "c3": node(3, 2, "a", 3)},
     ["c1", "c2", "c3"], "The pair (clickhouse_shard, clickhouse_replica) must be set per host and unique"),
    ("pairs-left-out", {"c1": node(1), "c2": node(2)}, ["c1"],
     "The pair (clickhouse_shard, clickhouse_replica) must be set per host and unique"),
    ("two-keepers", {"c1": node(1, 1, "a", 1), "c2": node(2, 2, "a", 2)}, ["c1", "c2"],
     "(clickhouse_keeper_group) must hold 1 or 3 hosts"),
    ("no-keeper-group", {"c1": node(1, 1, "a"), "c2": node(2, 2, "a")}, None,
     "(clickhouse_keeper_group) must hold 1 or 3 hosts"),
    ("shard-gap", {"c1": node(1, 1, "a"), "c2": node(2, 3, "a")}, ["c1"],
     "clickhouse_shard must number the shards 1, 2, ... without a gap"),
    ("uneven-replicas", {"c1": node(1, 1, "a"), "c2": node(2, 1, "b"), "c3": node(3, 2, "a")}, ["c1"],
     "each shard with the same number of replicas"),
    ("keeper-ids-twice", {"c1": node(1, 1, "a", 1), "c2": node(2, 1, "b", 1), "c3": node(3, 2, "a", 3),
                          "c4": node(4, 2, "b")}, ["c1", "c2", "c3"],
     "clickhouse_keeper_server_id must be set per Keeper host and unique"),
]


def outsider() -> dict[str, Any]:
    """A Keeper host (k9) outside the clickhouse group."""
    hosts = {"c1": node(1, 1, "a", 1), "c2": node(2, 2, "a", 2), "k9": node(9, keeper_id=9)}
    inv = inventory({"c1": hosts["c1"], "c2": hosts["c2"]}, None)
    inv["all"]["children"]["footprint"]["hosts"]["k9"] = hosts["k9"]
    inv["all"]["children"]["footprint"]["children"]["clickhouse_keeper"] = {"hosts": {"c1": {}, "c2": {}, "k9": {}}}
    return inv


def loopback() -> dict[str, Any]:
    """Two shards, c2's interserver host on loopback."""
    hosts = {"c1": node(1, 1, "a"), "c2": node(2, 2, "a")}
    hosts["c2"]["clickhouse_interserver_host"] = "127.0.0.1"
    return inventory(hosts, ["c1"])


def refused_cases() -> dict[str, dict[str, Any]]:
    """Every inventory this module expects the role to refuse, by case."""
    cases = {case: inventory(hosts, keepers) for case, hosts, keepers, _ in BAD}
    bad_zookeeper = inventory({"c1": node(1, 1, "a"), "c2": node(2, 2, "a")}, None, clickhouse_zookeeper_hosts=["zk1.example"])
    replicas_unreplicated = inventory({"c1": node(1, 1, "a"), "c2": node(2, 1, "b")}, None, clickhouse_cluster_replicated=False)
    disagree = inventory({"c1": {**node(1, 1, "a"), "clickhouse_cluster_replicated": False}, "c2": node(2, 2, "a")}, ["c1"])
    return cases | {"outsider": outsider(), "loopback": loopback(), "bad-zookeeper": bad_zookeeper,
                    "replicas-unreplicated": replicas_unreplicated, "disagree": disagree}


refused = refused_fixture(RENDER, refused_cases, CLUSTER_GROUPS, FACTS)  # each case its own cluster, in one run


@pytest.mark.parametrize(("case", "message"), [(b[0], b[3]) for b in BAD], ids=[b[0] for b in BAD])
def test_bad_cluster_input_fails_naming_the_variable(refused: dict[str, str], case: str, message: str) -> None:
    assert_failed_with(refused, case, message)


def test_a_keeper_outside_the_clickhouse_group_is_refused(refused: dict[str, str]) -> None:
    assert_failed_with(refused, "outsider", "not in clickhouse_outsider: outsider.k9")  # case c's group is clickhouse_c


def test_replicas_without_replication_and_a_split_setting_are_refused(refused: dict[str, str]) -> None:
    assert_failed_with(refused, "replicas-unreplicated",
                       "clickhouse_cluster_replicated is false (shards without replicas), but a shard has several hosts")
    assert_failed_with(refused, "disagree", "clickhouse_cluster_name and clickhouse_cluster_replicated must be the same")


def test_loopback_interserver_host_and_bad_zookeeper_hosts_are_refused(refused: dict[str, str]) -> None:
    assert_failed_with(refused, "loopback", "On loopback.c2: clickhouse_cluster_name must be an identifier", "got '127.0.0.1'")
    assert_failed_with(refused, "bad-zookeeper", "clickhouse_zookeeper_hosts must list an existing ZooKeeper ensemble")
