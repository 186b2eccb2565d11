"""The base role: packages, time, kernel settings, limits, firewall."""

import re
import socket
from typing import Any

import pytest
from conftest import setting


def test_essential_packages(host: Any) -> None:
    for name in ("ca-certificates", "curl", "gnupg", "acl", "tzdata", "python3-apt"):
        assert host.package(name).is_installed, name


def test_timezone(host: Any, hostvars: dict[str, Any]) -> None:
    want = setting(hostvars, "base_timezone")
    assert host.file("/etc/localtime").linked_to == f"/usr/share/zoneinfo/{want}"


def test_time_sync_enabled(host: Any) -> None:
    assert host.service("systemd-timesyncd").is_enabled


def test_task_delayacct_persisted(host: Any, hostvars: dict[str, Any]) -> None:
    f = host.file(setting(hostvars, "base_sysctl_file"))
    assert f.exists and f.user == "root" and f.mode == 0o644
    assert "kernel.task_delayacct=1" in f.content_string.replace(" ", "")


def test_task_delayacct_live(host: Any) -> None:
    """Applied by the role on a VM, by the machine hosting the container otherwise."""
    assert host.file("/proc/sys/kernel/task_delayacct").content_string.strip() == "1"


def test_service_file_limit(host: Any, hostvars: dict[str, Any]) -> None:
    want = str(setting(hostvars, "base_nofile_limit"))
    assert host.run("systemctl show --property DefaultLimitNOFILE --value").stdout.strip() == want
    assert f"soft nofile {want}" in host.file("/etc/security/limits.d/60-footprint.conf").content_string


UFW_RULE = re.compile(r"^(?P<port>\d+)(?:/(?P<proto>\w+))?(?: \(v6\))?\s+ALLOW(?: IN)?\s+(?P<src>\S+)")


def wanted_rules(hostvars: dict[str, Any]) -> dict[tuple[str, str, str], str]:
    """(port, proto, source) -> purpose of every port the firewall should allow, resolved."""
    rules: dict[tuple[str, str, str], str] = {}
    for item in setting(hostvars, "base_firewall_allowed_ports") + setting(hostvars, "base_firewall_service_ports"):
        key = (str(int(item["port"])), item.get("proto") or "tcp", item.get("from") or "any")
        rules.setdefault(key, str(item.get("comment") or f"port {key[0]}/{key[1]}"))
    return rules


def kit_rules_in(status: str) -> set[tuple[str, str, str]]:
    """(port, proto, source) of the rules in `ufw status` that the kit added (comment `footprint: ...`)."""
    found = set()
    for line in status.splitlines():
        m = UFW_RULE.match(line.strip())
        if m and "# footprint:" in line:
            src = m["src"]
            found.add((m["port"], m["proto"] or "any", "any" if src == "Anywhere" else src))
    return found


def test_firewall(host: Any, hostvars: dict[str, Any]) -> None:
    if not setting(hostvars, "base_firewall_enabled"):
        assert not host.package("ufw").is_installed or "inactive" in host.run("ufw status").stdout
        return
    status = host.check_output("ufw status")
    assert "Status: active" in status
    wanted = wanted_rules(hostvars)
    # exactly the wanted ports carry the kit's comment: none missing, none left over from before
    assert kit_rules_in(status) == set(wanted), status
    for (port, proto, _), purpose in wanted.items():
        assert f"# footprint: {purpose}" in status, (port, proto, purpose)


def test_firewall_opens_the_ports_of_the_components_on_the_host(hostvars: dict[str, Any]) -> None:
    """One source: the service rules are the components' own (resolved) port variables."""
    if not setting(hostvars, "base_firewall_enabled"):
        pytest.skip("base_firewall_enabled is false in this inventory (test_firewall checks ufw is off)")
    groups = set(setting(hostvars, "group_names"))
    expected = set()
    if "app" in groups:
        expected.add(int(setting(hostvars, "footprint_collector_port")))
        if setting(hostvars, "footprint_dashboard_enabled"):
            expected.add(int(setting(hostvars, "footprint_dashboard_port")))
        if setting(hostvars, "footprint_tls_enabled") and int(setting(hostvars, "footprint_proxy_http_port")):
            expected.add(int(setting(hostvars, "footprint_proxy_http_port")))  # nginx's redirect to HTTPS
    inventory, me = setting(hostvars, "groups"), hostvars["inventory_hostname"]
    if "kafka" in groups:
        expected.add(int(setting(hostvars, "kafka_port")))
        if len(inventory["kafka"]) > 1 and me in inventory.get(setting(hostvars, "kafka_controller_group"), []):
            expected.add(int(setting(hostvars, "kafka_controller_port")))  # to the other Kafka hosts only
    if "clickhouse" in groups:
        expected |= {int(setting(hostvars, "clickhouse_http_port")), int(setting(hostvars, "clickhouse_tcp_port"))}
        if len(inventory["clickhouse"]) > 1 and setting(hostvars, "clickhouse_cluster_replicated"):
            expected.add(int(setting(hostvars, "clickhouse_interserver_port")))  # to the other ClickHouse hosts only
            if me in inventory.get(setting(hostvars, "clickhouse_keeper_group"), []):
                expected |= {int(setting(hostvars, "clickhouse_keeper_port")),
                             int(setting(hostvars, "clickhouse_keeper_raft_port"))}
    if "postgresql" in groups:
        expected.add(int(setting(hostvars, "postgresql_port")))
    if setting(hostvars, "footprint_prometheus_url"):  # monitoring on: the exporters, to the monitoring hosts only
        expected.add(int(setting(hostvars, "monitoring_node_exporter_port")))
        if "postgresql" in groups:
            expected.add(int(setting(hostvars, "monitoring_postgres_exporter_port")))
        if "kafka" in groups and setting(hostvars, "kafka_metrics_enabled"):
            expected.add(int(setting(hostvars, "kafka_metrics_port")))
        if me in (inventory.get("monitoring") or inventory["footprint"][:1]):
            expected |= {int(setting(hostvars, "monitoring_prometheus_port")),
                         int(setting(hostvars, "monitoring_alertmanager_port"))}
    assert {int(p["port"]) for p in setting(hostvars, "base_firewall_service_ports")} == expected
    assert int(setting(hostvars, "footprint_consumer_http_port")) not in {int(p) for p, _, _ in wanted_rules(hostvars)}


def test_firewall_denies_unlisted_ports(host: Any, hostvars: dict[str, Any], address: str) -> None:
    """A port that is not in the allowed list is unreachable from the control node."""
    if not setting(hostvars, "base_firewall_enabled"):
        pytest.skip("base_firewall_enabled is false in this inventory (test_firewall checks ufw is off)")
    allowed = {int(port) for port, _, _ in wanted_rules(hostvars)}
    port = next(p for p in range(18081, 18200) if p not in allowed)
    host.run_test("setsid -f timeout 20 python3 -m http.server %s --bind 0.0.0.0 >/dev/null 2>&1", str(port))
    probe = f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/', timeout=3)"
    for _ in range(20):  # it listens: reachable from inside the host
        if host.run("python3 -c %s", probe).rc == 0:
            break
    else:
        raise AssertionError("the probe server did not start")
    with socket.socket() as s:
        s.settimeout(1)  # an open port on the test bed's bridge answers in microseconds
        assert s.connect_ex((address, port)) != 0, f"port {port} is reachable through the firewall"


def test_disk_check_runs_daily_and_wrote_its_figures(host: Any, hostvars: dict[str, Any]) -> None:
    """The timer is on, and a run of its job (as the timer starts it) writes a series per existing path
    (the role's own first run came before the stores' directories existed)."""
    if not setting(hostvars, "base_disk_check_enabled"):
        assert not host.file("/etc/systemd/system/footprint-disk-check.timer").exists
        return
    timer = host.service("footprint-disk-check.timer")
    assert timer.is_enabled and timer.is_running
    run = host.run("systemctl start footprint-disk-check.service")
    assert run.rc == 0, run.stderr
    prom = host.file(setting(hostvars, "base_disk_check_textfile_dir").rstrip("/") + "/footprint_disk.prom")
    assert prom.exists and prom.mode == 0o644
    text = prom.content_string
    for path in setting(hostvars, "base_disk_check_paths"):
        if host.file(path).is_directory:
            assert f'footprint_disk_free_bytes{{path="{path}",' in text, path
            assert f'footprint_disk_days_left{{path="{path}",' in text, path
    assert host.run("/usr/local/sbin/footprint-disk-check --help").rc == 0
