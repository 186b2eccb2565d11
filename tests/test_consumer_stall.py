"""The consumer never stays stalled, and a wedged one is restarted (issue 26): testinfra, `destructive`.

    .venv/bin/pytest tests/test_consumer_stall.py --hosts=ansible://app --ansible-inventory=INVENTORY

- With two app hosts or more (the cluster scenario), under traffic through every collector, the
  second app host's ClickHouse server and consumer are stopped with SIGSTOP for longer than the
  consumer's session timeout, then continued: the group rebalances twice while a store write
  hangs. Every accepted event must then be stored exactly once in both stores (ClickHouse's rows
  counted as stored, without FINAL) within a bound, and no consumer may have been restarted.
- On the first app host: the consumer is wedged with SIGSTOP for longer than its watchdog; systemd
  restarts it (the process changes without anyone asking) and the restart is counted in
  `footprint_consumer_watchdog_restarts`.
- On the first app host: a consumer whose group Kafka's ACLs refuse (the app's principal, a group
  it has no ACL for) exits with status 2 naming the group and the ACL to add, instead of idling.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import clickhouse_connect
import exactly_once
import pytest
from conftest import enabled, resolved, setting
from test_delivery import endpoints_of, revealed, wait_for
from test_kafka_cluster import CollectorTraffic

testinfra_hosts = ["ansible://app"]

CONSUMER = "footprint-consumer"
CATCH_UP_BOUND_S = 120  # every accepted event stored within this long after the pause ends


def _main_pid(host: Any, unit: str) -> int:
    return int(host.run("systemctl show --property=MainPID --value %s", unit).stdout.strip() or 0)


def _restarts_metric(host: Any, hostvars: dict[str, Any]) -> float | None:
    port = setting(hostvars, "footprint_consumer_http_port")
    out = host.run("python3 -c 'import urllib.request,sys; sys.stdout.write(urllib.request.urlopen("
                   "\"http://127.0.0.1:%s/metrics\", timeout=5).read().decode())'", str(port))
    if out.rc != 0:
        return None
    found = re.search(r"^footprint_consumer_watchdog_restarts (\S+)$", out.stdout, re.M)
    return float(found.group(1)) if found else None


def _other_host(request: pytest.FixtureRequest, name: str) -> Any:
    import testinfra

    return testinfra.get_host(f"ansible://{name}?ansible_inventory={request.config.option.ansible_inventory}")


@pytest.mark.destructive
def test_a_store_and_consumer_paused_past_the_session_timeout_stall_nothing(
    host: Any, hostvars: dict[str, Any], request: pytest.FixtureRequest, component: Any, tmp_path: Path,
) -> None:
    apps = list(hostvars["groups"].get("app", []))
    if len(apps) < 2:
        pytest.skip("a consumer group of one: the rebalance needs two app hosts (the cluster scenario runs it)")
    if host.backend.get_hostname() != apps[0]:
        pytest.skip("runs once for the group (from the first app host's parameter)")
    victim_name = apps[1]
    victim = _other_host(request, victim_name)
    units = [CONSUMER] + (["clickhouse-server"] if victim_name in hostvars["groups"].get("clickhouse", []) else [])
    session_s = int(setting(hostvars, "footprint_consumer_session_timeout_ms")) / 1000
    pids = {name: _main_pid(h, CONSUMER) for name, h in ((apps[0], host), (victim_name, victim))}
    traffic = CollectorTraffic([endpoints_of(component, resolved(request.config, h)) for h in apps], tmp_path)
    traffic.start()
    try:
        time.sleep(5)
        signal_units = "systemctl kill -s {} " + " ".join(["%s"] * len(units))
        assert victim.run(signal_units.format("SIGSTOP"), *units).rc == 0
        try:
            time.sleep(session_s * 2)  # the victim's consumer leaves the group; the other's writes hang
        finally:
            assert victim.run(signal_units.format("SIGCONT"), *units).rc == 0
        resumed = time.monotonic()
        time.sleep(5)  # traffic goes on while the group rebalances again
        report = traffic.stop_and_check(final=False)
        caught_up = time.monotonic() - resumed
    finally:
        traffic.done.set()
    client = clickhouse_connect.get_client(**revealed(endpoints_of(component, hostvars)["ch"]))
    try:
        assert exactly_once.problems(client) == []  # every shard, and the rollup against the events
    finally:
        client.close()
    print(f"\n{' and '.join(units)} on {victim_name} stopped {session_s * 2:.0f} s (session timeout {session_s:.0f} s): "
          f"{report}; all stored {caught_up:.0f} s after the pause ended")
    assert caught_up < CATCH_UP_BOUND_S, f"catch-up took {caught_up:.0f} s (bound {CATCH_UP_BOUND_S} s)"
    after = {name: _main_pid(h, CONSUMER) for name, h in ((apps[0], host), (victim_name, victim))}
    assert after == pids, f"a consumer was restarted (main PIDs before {pids}, after {after}): it must heal by itself"


@pytest.mark.destructive
def test_a_wedged_consumer_is_restarted_by_the_watchdog_and_counted(host: Any, hostvars: dict[str, Any]) -> None:
    apps = list(hostvars["groups"].get("app", []))
    if host.backend.get_hostname() != apps[0]:
        pytest.skip("runs on the first app host")
    watchdog_s = int(setting(hostvars, "footprint_consumer_watchdog_seconds"))
    if watchdog_s == 0:
        pytest.skip("footprint_consumer_watchdog_seconds is 0: the inventory turned the watchdog off")
    before = _restarts_metric(host, hostvars)
    assert before is not None, "the consumer's /metrics has no footprint_consumer_watchdog_restarts"
    pid = _main_pid(host, CONSUMER)
    assert host.run("systemctl kill -s SIGSTOP %s", CONSUMER).rc == 0
    stopped = time.monotonic()
    # watchdog, then SIGABRT (TimeoutAbortSec=15 before SIGKILL), RestartSec=5, start-up
    wait_for("the wedged consumer restarted by systemd", lambda: _main_pid(host, CONSUMER) not in (0, pid),
             timeout=watchdog_s + 15 + 5 + 60)
    restarted = time.monotonic() - stopped
    wait_for("the restart counted in footprint_consumer_watchdog_restarts",
             lambda: (_restarts_metric(host, hostvars) or 0) >= before + 1, timeout=60)
    result = host.run("journalctl -u %s --no-pager -o cat -n 200", CONSUMER).stdout
    print(f"\nconsumer wedged (SIGSTOP): restarted by systemd's watchdog ({watchdog_s} s) after {restarted:.0f} s")
    assert "watchdog" in result.lower(), "systemd's journal does not name the watchdog"
    assert host.service(CONSUMER).is_running


def test_a_consumer_refused_its_group_exits_naming_the_acl(host: Any, hostvars: dict[str, Any]) -> None:
    """The deploy's consumer program with its own settings and principal but a group no ACL allows:
    it must end (systemd would start it again, the reason in the journal each time), not idle."""
    apps = list(hostvars["groups"].get("app", []))
    if host.backend.get_hostname() != apps[0]:
        pytest.skip("runs on the first app host")
    if not enabled(hostvars, "kafka_tls_enabled"):
        pytest.skip("kafka_tls_enabled is false: no authentication, no ACLs")
    group = "footprint-no-acl"
    started = time.monotonic()
    res = host.run(
        "set -a; . /etc/footprint/footprint.env; FOOTPRINT_KAFKA_GROUP=%s FOOTPRINT_KAFKA_GROUP_INSTANCE_ID= "
        "FOOTPRINT_CONSUMER_HTTP_PORT=0; exec timeout 90 runuser -u footprint -- /opt/footprint/venv/bin/footprint consume",
        group)
    took = time.monotonic() - started
    print(f"\na consumer refused its group: exit {res.rc} after {took:.0f} s")
    assert res.rc == 2, f"exit {res.rc} (124: still running after 90 s, idle)\n{res.stderr[-2000:]}"
    assert f"Read on the group '{group}'" in res.stderr and "kafka_principals" in res.stderr, res.stderr[-2000:]
