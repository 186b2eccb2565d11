"""The deployment survives a reboot (molecule's side effect: molecule/default/side_effect.yml).

Two phases in two pytest runs around `testbed/host restart` (a clean reboot keeping the disk),
selected by FOOTPRINT_REBOOT_PHASE (without it these tests are deselected, see conftest):
- `before`: synthetic events sent and seen in both stores; their ids and the host's boot id are
  saved in FOOTPRINT_REBOOT_STATE;
- `after`: the host really booted again; every service is active and none was restarted after
  a failure (systemd's NRestarts=0); the events from before are still in both stores; new
  events are delivered (here and by the whole smoke suite, run in the same pytest run).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml  # type: ignore[import-untyped]
from conftest import ROOT, setting
from test_delivery import bearer, ch_rows, endpoints, pg_rows, wait_for

__all__ = ["endpoints"]  # the fixture, shared with test_delivery

testinfra_hosts = ["ansible://app"]
pytestmark = pytest.mark.reboot

APP_VARS: dict[str, Any] = yaml.safe_load((ROOT / "roles" / "footprint" / "vars" / "main.yml").read_text())
APP_UNITS = (APP_VARS["__footprint_collector_service"], APP_VARS["__footprint_consumer_service"])
N_EVENTS = 20


def state_file() -> Path:
    path = os.environ.get("FOOTPRINT_REBOOT_STATE")
    if not path:
        pytest.fail("set FOOTPRINT_REBOOT_STATE to the file that carries the events across the reboot")
    return Path(path)


def send_and_wait(ep: dict[str, Any], label: str) -> list[str]:
    """N synthetic track events through the API, seen in PostgreSQL AND ClickHouse; their ids."""
    marker = uuid.uuid4().hex
    batch = [{"type": "track", "event": f"Reboot {label}", "userId": f"reboot-{marker}",
              "properties": {"footprint_probe": True, "n": i}, "messageId": f"{marker}-{i}"} for i in range(N_EVENTS)]
    res = httpx.post(f"{ep['collector']}/v1/events", json={"batch": batch},
                     headers=bearer(ep["api_key"]), timeout=15, verify=ep["verify"])
    assert res.status_code == 202, res.text
    ids = [str(i) for i in res.json()["event_ids"]]
    assert len(ids) == N_EVENTS
    wait_for(f"{label}: events in PostgreSQL", lambda: len(pg_rows(ep, "event_id = ANY(%s)", (ids,))) == N_EVENTS)
    wait_for(f"{label}: events in ClickHouse",
             lambda: len(ch_rows(ep, "event_id IN {ids:Array(UUID)}", {"ids": ids})) == N_EVENTS)
    return ids


def boot_id(host: Any) -> str:
    """Which boot the host is in: the kernel's boot_id (systemd-nspawn gives every container boot
    its own) and PID 1's start time (a Docker container shares the kernel's boot_id, but its
    systemd starts again)."""
    kernel = host.file("/proc/sys/kernel/random/boot_id").content_string.strip()
    pid1_start = host.file("/proc/1/stat").content_string.rsplit(")", 1)[1].split()[19]
    return f"{kernel}/{pid1_start}"


def store_units(hostvars: dict[str, Any]) -> list[str]:
    return [u.removesuffix(".service") for u in setting(hostvars, "footprint_local_store_units")]


def test_before_reboot_events_are_stored(host: Any, endpoints: dict[str, Any]) -> None:
    ids = send_and_wait(endpoints, "before reboot")
    state_file().write_text(json.dumps({"ids": ids, "boot_id": boot_id(host)}))


def test_after_reboot_the_host_booted_again(host: Any) -> None:
    assert boot_id(host) != json.loads(state_file().read_text())["boot_id"], "the host was not rebooted"
    assert host.check_output("systemctl is-system-running || true") == "running", \
        host.check_output("systemctl list-units --state=failed --no-legend --plain || true")


def test_after_reboot_every_service_runs_and_none_failed(host: Any, hostvars: dict[str, Any]) -> None:
    units = [*store_units(hostvars), *APP_UNITS]
    assert len(units) >= 5, units  # kafka, postgresql (umbrella), clickhouse-server, the app's two
    for unit in units:
        props = dict(line.split("=", 1) for line in host.check_output(
            f"systemctl show {unit} -p ActiveState -p SubState -p NRestarts -p Type").splitlines())
        assert props["ActiveState"] == "active", (unit, props)
        if props["Type"] != "oneshot":  # postgresql.service is an umbrella; its clusters run
            assert props["SubState"] == "running", (unit, props)
            assert props["NRestarts"] == "0", (
                f"{unit} was restarted by systemd after failing ({props}); its journal since the boot:\n"
                + host.run(f"journalctl --boot --unit {unit} --no-pager --lines 60").stdout)
    clusters = host.check_output("systemctl list-units 'postgresql@*' --state=running --no-legend --plain")
    assert clusters.strip(), "no PostgreSQL cluster runs"
    for line in clusters.splitlines():
        unit = line.split()[0]
        assert host.check_output(f"systemctl show {unit} -p NRestarts --value") == "0", unit


def test_after_reboot_the_app_started_after_its_stores(host: Any, hostvars: dict[str, Any]) -> None:
    for unit in APP_UNITS:
        after = host.check_output(f"systemctl show {unit} -p After --value").split()
        for store in store_units(hostvars):
            assert f"{store}.service" in after, (unit, store)


def test_after_reboot_events_from_before_are_intact(endpoints: dict[str, Any]) -> None:
    ids = json.loads(state_file().read_text())["ids"]
    assert len(pg_rows(endpoints, "event_id = ANY(%s)", (ids,))) == N_EVENTS
    assert len(ch_rows(endpoints, "event_id IN {ids:Array(UUID)}", {"ids": ids})) == N_EVENTS


def test_after_reboot_new_events_are_delivered(endpoints: dict[str, Any]) -> None:
    send_and_wait(endpoints, "after reboot")
