"""testinfra checks of the footprint (app) role, run against an inventory.

    .venv/bin/pytest tests/test_footprint.py --hosts=ansible://app --ansible-inventory=INVENTORY

The collector is reached from the control node at the host's address from the inventory
(`ansible_host`). Settings are the inventory's resolved through Ansible, the role's defaults
where it sets none (conftest).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml  # type: ignore[import-untyped]
from conftest import setting, web_scheme, web_verify

# Only the hosts of the app group (the suite may run against a split inventory).
testinfra_hosts = ["ansible://app"]

ROLE = Path(__file__).resolve().parent.parent / "roles" / "footprint"
ROLE_VARS: dict[str, Any] = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
SERVICES = (ROLE_VARS["__footprint_collector_service"], ROLE_VARS["__footprint_consumer_service"])


def test_app_user_is_a_system_user_without_login(host: Any, hostvars: dict[str, Any]) -> None:
    user = host.user(setting(hostvars, "footprint_user"))
    assert user.exists
    assert user.group == setting(hostvars, "footprint_group")
    assert user.uid < 1000
    assert user.shell in ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false")


def test_env_file_is_private_to_root(host: Any, hostvars: dict[str, Any]) -> None:
    env = host.file(f"{setting(hostvars, 'footprint_config_dir')}/footprint.env")
    assert env.is_file
    assert env.mode == 0o600
    assert env.user == "root"
    assert env.group == "root"
    # it is the file the services read their settings from
    assert "FOOTPRINT_PG_DSN=" in env.content_string


def test_code_is_not_writable_by_the_app(host: Any, hostvars: dict[str, Any]) -> None:
    venv = host.file(f"{setting(hostvars, 'footprint_install_dir')}/venv")
    assert venv.is_directory
    assert venv.user == "root"
    assert not venv.mode & 0o022


def watchdog_restarts_since_boot(host: Any) -> int:
    """Restarts of the consumer by systemd's watchdog since the host booted (the unit's ExecStopPost
    records each in its state directory)."""
    out = host.run("cat /var/lib/footprint-consumer/watchdog-restarts")
    if out.rc != 0:
        return 0
    boot = int(host.check_output("awk '/^btime/ {print $2}' /proc/stat"))
    stamps = [datetime.strptime(line.strip(), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
              for line in out.stdout.splitlines() if line.strip()]
    return sum(1 for t in stamps if t.timestamp() >= boot)


@pytest.mark.parametrize("service", SERVICES)
def test_service_enabled_running_as_app_user(host: Any, hostvars: dict[str, Any], service: str) -> None:
    svc = host.service(service)
    assert svc.is_enabled
    assert svc.is_running
    props = dict(
        line.split("=", 1)
        for line in host.check_output(
            f"systemctl show {service} -p MainPID -p User -p NoNewPrivileges -p ProtectSystem -p ProtectHome "
            "-p PrivateTmp -p Restart -p EnvironmentFiles -p NRestarts"
        ).splitlines()
    )
    assert props["User"] == setting(hostvars, "footprint_user")
    assert props["NoNewPrivileges"] == "yes"
    assert props["ProtectSystem"] == "strict"
    assert props["ProtectHome"] == "yes"
    assert props["PrivateTmp"] == "yes"
    assert props["Restart"] == "on-failure"
    assert props["EnvironmentFiles"].startswith(f"{setting(hostvars, 'footprint_config_dir')}/footprint.env")
    # tests/test_consumer_stall.py wedges the consumer on purpose: the restarts systemd's watchdog
    # made since boot are recorded (one UTC timestamp a line); any other restart is a failure
    watchdog = watchdog_restarts_since_boot(host) if service == "footprint-consumer" else 0
    assert int(props["NRestarts"]) <= watchdog, (
        f"{service} has been restarted by systemd after failing ({props['NRestarts']} restarts, "
        f"{watchdog} of them by the watchdog)")
    # the process really runs as that user
    uid = host.check_output(f"stat -c %u /proc/{props['MainPID']}")
    assert uid == str(host.user(setting(hostvars, "footprint_user")).uid)


def test_retention_timer_is_daily_and_its_job_runs(host: Any, hostvars: dict[str, Any]) -> None:
    """The timer is on; a run of its job now succeeds with the deployed settings (it finds the months
    ahead made and nothing expired on a young host) and reports what it did in the journal."""
    timer = host.service("footprint-retention.timer")
    assert timer.is_enabled and timer.is_running
    assert "OnCalendar=*-*-* 00:15:00 UTC" in host.file("/etc/systemd/system/footprint-retention.timer").content_string
    since = host.check_output("date +%s")
    run = host.run("systemctl start footprint-retention.service")
    assert run.rc == 0, run.stderr
    result = host.check_output("systemctl show footprint-retention.service -p Result --value")
    assert result == "success"
    log = host.check_output(f"journalctl -u footprint-retention.service --since @{since} -o cat --no-pager")
    months = int(setting(hostvars, "footprint_retention_months"))
    assert f'"raw_months": {months}' in log, log[-2000:]
    assert '"pg_dropped": []' in log, "a young host has no expired month"


def test_visits_timer_is_hourly_and_its_job_runs(host: Any) -> None:
    """The timer is on; a run of its job now succeeds as the ClickHouse writer and reports in the journal what
    it did: every day it went over (from the first event's day to yesterday), for each of the five types (each
    event type's visits and all types together), made, verified or left to the raw events."""
    timer = host.service("footprint-visits.timer")
    assert timer.is_enabled and timer.is_running
    assert "OnCalendar=*-*-* *:20:00 UTC" in host.file("/etc/systemd/system/footprint-visits.timer").content_string
    since = host.check_output("date +%s")
    run = host.run("systemctl start footprint-visits.service")
    assert run.rc == 0, run.stderr
    assert host.check_output("systemctl show footprint-visits.service -p Result --value") == "success"
    log = host.check_output(f"journalctl -u footprint-visits.service --since @{since} -o cat --no-pager")
    report = json.loads(next(line for line in log.splitlines() if line.startswith('{"made"')))
    assert (report["made"] + report["verified"] + report["open"]) % 5 == 0, report


def test_collector_runs_the_configured_workers(host: Any, hostvars: dict[str, Any]) -> None:
    workers = int(setting(hostvars, "footprint_collector_workers"))
    pid = host.check_output(f"systemctl show {SERVICES[0]} -p MainPID --value")
    children = host.check_output(f"ps -o args= --ppid {pid}").splitlines()
    spawned = [c for c in children if "spawn_main" in c]
    # uvicorn runs a single worker in its own process, more as spawned children
    assert len(spawned) == (workers if workers > 1 else 0)


def test_collector_listens_on_the_configured_port(host: Any, hostvars: dict[str, Any]) -> None:
    listen = setting(hostvars, "footprint_collector_host")
    port = int(setting(hostvars, "footprint_collector_port"))
    assert host.socket(f"tcp://{listen}:{port}").is_listening


def test_healthz_answers_from_the_control_node(hostvars: dict[str, Any], address: str) -> None:
    port = int(setting(hostvars, "footprint_collector_port"))
    r = httpx.get(f"{web_scheme(hostvars)}://{address}:{port}/healthz", timeout=10, verify=web_verify(hostvars))
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


def test_events_endpoint_refuses_a_wrong_key(hostvars: dict[str, Any], address: str) -> None:
    port = int(setting(hostvars, "footprint_collector_port"))
    r = httpx.post(
        f"{web_scheme(hostvars)}://{address}:{port}/v1/events",
        json={"batch": [{"type": "track", "event": "probe", "userId": "u1"}]},
        headers={"Authorization": "Bearer not-a-key"},
        timeout=10,
        verify=web_verify(hostvars),
    )
    assert r.status_code == 401
