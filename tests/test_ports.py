"""Every port moves (destructive: molecule only).

Changes every client port (Kafka, ClickHouse HTTP and native, PostgreSQL, the collector, the dashboard) with
extra variables, re-converges `playbooks/site.yml`, checks that every service listens on its new
port only, that the kit's firewall rules moved with them and that the old ports are closed by the
firewall (a listener on each old port inside the host is unreachable from the control node).

With FOOTPRINT_MOVED_PORTS=FILE (the molecule scenarios set it), the host stays on the new ports:
the variables are written to FILE, and the scenario's side effect runs the whole smoke suite on
them (FOOTPRINT_EXTRA_VARS=FILE), before and after a reboot. Without it, the listener, firewall,
delivery and dashboard checks run here against the new ports (a pytest run that resolves the
inventory with the same extra variables), then a second converge moves the ports back and the
kit's firewall rules are checked to follow. This test runs after every other check of its pytest
run (conftest), as they use the inventory's ports. Cost: one converge of site.yml (two converges
and two smoke runs without FOOTPRINT_MOVED_PORTS).

The same converge carries Kafka's "never reformat" proof and the -vvv secrets search (one
converge instead of two; the kafka role's input checks stay in test_kafka.py): before it, a
record is written, a topic of 1 partition made, the broker's persisted cluster.id file removed
and the broker restarted; the converge runs with -vvv and that topic declared with 3 partitions.
After it: none of the deploy's secrets in the -vvv output (every role of site.yml), the same
cluster id in meta.properties and in the file again, the record still there, the topic grown.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from conftest import ROOT, create_topic, kafka_client, setting

testinfra_hosts = ["ansible://app"]

PORT_VARS = ("kafka_port", "clickhouse_http_port", "clickhouse_tcp_port", "postgresql_port", "footprint_collector_port",
             "footprint_dashboard_port")
SHIFT = 17  # new port = old + SHIFT (clear of the defaults' neighbours: 9093, 8001)
BIN = Path(sys.executable).parent


def converge(inventory: str, *extra: Path, verbose: bool = False,
             playbook: str = "site.yml") -> tuple[subprocess.CompletedProcess[str], float]:
    """``playbook`` (site.yml) with the extra-variable files (``verbose``: -vvv, an output to search
    for secrets, never to print); the run and its seconds."""
    cmd = [str(BIN / "ansible-playbook"), *(["-vvv"] if verbose else []), "-i", inventory,
           str(ROOT / "playbooks" / playbook)]
    for path in extra:
        cmd += ["-e", f"@{path}"]
    env = dict(os.environ, ANSIBLE_ROLES_PATH=str(ROOT / "roles"), ANSIBLE_NOCOLOR="1")
    start = time.monotonic()
    res = subprocess.run(cmd, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=1500)
    return res, time.monotonic() - start


def smoke(inventory: str, extra: Path | None, *selection: str) -> subprocess.CompletedProcess[str]:
    """The smoke checks in a pytest run of their own, resolving the inventory with `extra`."""
    env = dict(os.environ, FOOTPRINT_EXTRA_VARS=str(extra) if extra else "")
    cmd = [str(BIN / "pytest"), "-c", str(ROOT / "tests" / "pytest.ini"), "--hosts=ansible://app",
           f"--ansible-inventory={inventory}", "-m", "not destructive", "-q", *selection]
    return subprocess.run(cmd, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900)


def listening(host: Any, port: int) -> bool:
    """Something listens on the TCP port, on any address (IPv4 or IPv6)."""
    return bool(host.check_output("ss -Hltn 'sport = :%s'", str(port)).strip())


def kit_ports(host: Any) -> set[int]:
    """Ports of the firewall rules the kit added (comment `footprint: ...`)."""
    status = host.check_output("ufw status")
    return {int(m[1]) for line in status.splitlines() if "# footprint:" in line and (m := re.match(r"^(\d+)", line))}


def blocked_from_here(host: Any, address: str, ports: list[int]) -> dict[int, bool]:
    """port -> unreachable from the control node although a listener runs on it inside the host."""
    pidfile = "/run/footprint-port-probe.pid"
    script = (
        f"import os,socket,time\nopen({pidfile!r},'w').write(str(os.getpid()))\n"
        f"ss=[socket.create_server(('0.0.0.0',p)) for p in {ports!r}]\ntime.sleep(60)\n"
    )
    host.run_test("rm -f %s && setsid -f timeout 65 python3 -c %s >/dev/null 2>&1", pidfile, script)
    inside = f"import socket; [socket.create_connection(('127.0.0.1',p),2).close() for p in {ports!r}]"
    try:
        for _ in range(40):
            if host.run("python3 -c %s", inside).rc == 0:
                break
            time.sleep(0.25)
        else:
            raise AssertionError(f"the probe listeners on {ports} did not start inside the host")
        def refused(port: int) -> bool:  # a dropped connection waits out the timeout: all ports at once
            with socket.socket() as s:
                s.settimeout(2)
                return s.connect_ex((address, port)) != 0

        with ThreadPoolExecutor(max_workers=len(ports)) as pool:
            return dict(zip(ports, pool.map(refused, ports), strict=True))
    finally:  # free the ports again before anything moves back onto them
        host.run("test -s %s && kill $(cat %s); sleep 0.5", pidfile, pidfile)
        for port in ports:
            assert not listening(host, port), f"the probe still holds port {port}"


class KafkaTrap:
    """The "never reformat" proof on the port change's converge (was test_kafka.py's own
    reconverge of the pki, kafka and postgresql roles): set() before the converge, check() after."""

    def __init__(self, host: Any, hostvars: dict[str, Any], address: str) -> None:
        from test_kafka import cluster_rf

        self.host, self.hostvars, self.address = host, hostvars, address
        self.rf = cluster_rf(hostvars)
        self.grow = f"footprint-grow-{uuid.uuid4().hex[:8]}"
        self.scratch = f"footprint-test-{uuid.uuid4().hex[:12]}"
        self.value = f"persist-{uuid.uuid4()}"
        self.made: list[str] = []

    def client(self, port: int) -> dict[str, Any]:
        return kafka_client(self.hostvars, f"{self.address}:{port}")

    def admin(self, port: int) -> Any:
        from confluent_kafka.admin import AdminClient  # type: ignore[attr-defined]

        return AdminClient(self.client(port) | {"socket.timeout.ms": 10000})

    def set(self, port: int, extra: Path) -> None:
        """A record written, a topic of 1 partition made, extra: the converge declares it with 3;
        then no persisted cluster.id file and a freshly restarted broker (a buggy role's hard case)."""
        from test_kafka import meta_cluster_id, produce_one

        admin = self.admin(port)
        for name in (self.scratch, self.grow):
            create_topic(admin, name, 1, self.rf)
            self.made.append(name)
        self.written = produce_one(self.client(port), self.scratch, self.value)
        # the declared topics as the deploy has them, plus the one to grow
        topics = [*setting(self.hostvars, "kafka_topics"),
                  {"name": self.grow, "partitions": 3, "retention_ms": 3600000, "retention_bytes": 16777216}]
        extra.write_text(yaml.safe_dump({"kafka_topics": topics}))
        self.before = meta_cluster_id(self.host, self.hostvars)
        self.host.run_test(f"rm -f {setting(self.hostvars, 'kafka_data_dir')}/cluster.id")
        self.host.run_test(f"systemctl restart {setting(self.hostvars, 'kafka_service_name')}")

    def check(self, port: int) -> None:
        """The same cluster id (meta.properties and the file written again), the record, the grown topic."""
        from test_kafka import consume_at, meta_cluster_id

        assert len(self.admin(port).list_topics(self.grow, timeout=15).topics[self.grow].partitions) == 3
        assert meta_cluster_id(self.host, self.hostvars) == self.before
        persisted = self.host.file(f"{setting(self.hostvars, 'kafka_data_dir')}/cluster.id").content_string.strip()
        assert persisted == self.before
        assert consume_at(self.client(port), self.scratch, *self.written) == self.value

    def clean(self, *ports: int) -> None:
        """Delete the topics made here, through whichever of the ports Kafka listens on."""
        for port in ports:
            if self.made and listening(self.host, port):
                admin = self.admin(port)
                for name, future in admin.delete_topics(self.made).items():
                    future.result(30)
                    self.made.remove(name)


@pytest.mark.destructive
def test_every_port_moves(
    request: pytest.FixtureRequest, host: Any, hostvars: dict[str, Any], address: str, tmp_path: Path,
    secrets_dir: Path,
) -> None:
    from test_kafka import failed_tasks
    from test_tls import deploy_secrets

    inventory = str(request.config.option.ansible_inventory)
    groups = set(setting(hostvars, "group_names"))
    assert {"app", "kafka", "clickhouse", "postgresql"} <= groups, "this test moves the ports of a one-host deployment"
    old = {name: int(setting(hostvars, name)) for name in PORT_VARS}
    new = {name: port + SHIFT for name, port in old.items()}
    for port in new.values():
        assert not listening(host, port), f"port {port} is already in use on the host"
    secrets = deploy_secrets(secrets_dir)
    assert secrets, "no secret of the deploy found"
    stay = os.environ.get("FOOTPRINT_MOVED_PORTS", "")
    extra = Path(stay) if stay else tmp_path / "ports.yml"
    extra.write_text(yaml.safe_dump(new))
    kafka = KafkaTrap(host, hostvars, address)

    moved = False
    try:
        kafka.set(old["kafka_port"], tmp_path / "topics.yml")
        res, moved_s = converge(inventory, extra, tmp_path / "topics.yml", verbose=True)
        leaked = sum(1 for secret in secrets if secret.found_in(res.stdout))
        assert leaked == 0, f"{leaked} secret(s) of the deploy appear in the -vvv output of site.yml"
        # the output is -vvv: on failure only the failed tasks' names, never their text (it may hold a secret)
        assert res.returncode == 0, (f"converge with the new ports failed in: {failed_tasks(res.stdout)} "
                                     "(-vvv output not shown)")
        kafka.check(new["kafka_port"])
        if not stay:  # else the side effect runs the whole smoke suite on them, before and after a reboot
            checks = smoke(inventory, extra, "tests/test_listeners.py", "tests/test_delivery.py", "tests/test_base.py",
                           "tests/test_dashboard.py")
            assert checks.returncode == 0, "smoke checks on the new ports failed:\n" + checks.stdout[-5000:]
        for name, port in new.items():
            assert listening(host, port), f"{name}: nothing listens on the new port {port}"
            assert not listening(host, old[name]), f"{name}: still listening on the old port {old[name]}"
        assert kit_ports(host) & set(old.values()) == set(), "firewall rules for the old ports are left"
        assert set(new.values()) <= kit_ports(host)
        blocked = blocked_from_here(host, address, sorted(old.values()))
        assert all(blocked.values()), f"old ports still reachable through the firewall: {blocked}"
        moved = True
    finally:
        if stay and not moved:  # a failure: the side effect must not take the host for moved
            extra.unlink(missing_ok=True)
        if not stay:  # back to the inventory's ports, also after a failure
            res, back_s = converge(inventory)
        kafka.clean(new["kafka_port"], old["kafka_port"])
    print(f"port change: converge {moved_s:.0f} s (-vvv)")
    if stay:
        print(f"the host stays on the moved ports ({extra}): the side effect's smoke runs use them")
        return
    assert res.returncode == 0, "converge back to the inventory's ports failed:\n" + res.stdout[-5000:]
    assert kit_ports(host) & set(new.values()) == set(), "firewall rules for the moved ports are left"
    assert set(old.values()) <= kit_ports(host)
    checks = smoke(inventory, None, "tests/test_listeners.py")
    assert checks.returncode == 0, "listeners after moving back failed:\n" + checks.stdout[-5000:]
    print(f"converge back {back_s:.0f} s")
