"""playbooks/upgrade.yml on the cluster layout while events keep coming (issue 32, item 1).

`destructive` and `cluster_upgrade` (deselected unless FOOTPRINT_CLUSTER_UPGRADE=1: ~16 minutes of
CI's time, so on demand: `FOOTPRINT_CLUSTER_UPGRADE=1 make molecule-cluster`), on an inventory with
three Kafka nodes and two app hosts (the cluster scenario), run last (conftest.py orders it: the
cluster runs the new versions afterwards). While both collectors take batches of events:

1. one broker (the second Kafka node) is made unable to start (a bad JVM option in a systemd
   drop-in, as the upgrade scenario does on one host), then upgrade.yml moves Kafka to the version
   the upgrade scenario moves to and the app to a newer build of the working tree: the play stops
   at that node naming the host, the cause and the fix; the first node runs the new Kafka, the
   third the old one, ClickHouse, PostgreSQL and the app untouched (same processes);
2. the fix (the drop-in removed, the broker started), and upgrade.yml again: it completes, every
   host one at a time behind its gate;
3. a second run: 0 changed on every host and no service of the kit restarted (each unit's
   systemd invocation id the same before and after);
4. afterwards every accepted event is in PostgreSQL and ClickHouse exactly once, no collector
   refused batches for more than REFUSED_MAX_S in a row and never both at once (the other app
   host kept answering), every Kafka node runs the new jars, every app host the new build, and
   the cluster id and the records the topics held before are unchanged.

The upgrade's own smoke checks are off (upgrade_smoke=false): the scenario's verify is that suite.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import upgrade_traffic
import yaml
from conftest import ROOT, resolved, setting
from test_delivery import endpoints_of
from test_kafka import meta_cluster_id
from test_kafka_cluster import CollectorTraffic
from test_ports import converge
from test_rotate_certs import REFUSED_MAX_S
from test_upgrade import topic_digests

testinfra_hosts = ["ansible://app"]
pytestmark = [pytest.mark.destructive, pytest.mark.cluster_upgrade]

Component = Callable[[str], tuple[str, dict[str, Any]]]
# the newer Kafka the test bed assembles: the one the upgrade scenario moves to (one definition)
NEW_KAFKA = str(yaml.safe_load((ROOT / "molecule/upgrade/host_vars/footprint-upgrade.yml").read_text())["kafka_version"])
BROKEN_DROPIN = "/etc/systemd/system/kafka.service.d/zz-cluster-upgrade-test-broken.conf"
BROKEN_OPTION = "-XX:+FootprintClusterUpgradeTestBrokenOption"
KIT_UNITS = re.compile(r"^(kafka|clickhouse|postgresql|footprint|nginx|prometheus|alertmanager)\S*\.service$")


def newer_app(tmp_path: Path) -> tuple[Path, str]:
    """A copy of the working tree's app whose version is one post-release later: the build the
    upgrade moves the app hosts to."""
    src = tmp_path / "app"
    shutil.copytree(ROOT / "app", src, ignore=shutil.ignore_patterns(".venv", "__pycache__", "build", "dist", "*.egg-info"))
    pyproject = src / "pyproject.toml"
    text = pyproject.read_text()
    current = re.search(r'^version = "([^"]+)"$', text, re.M)
    assert current, "no version in app/pyproject.toml"
    version = f"{current[1]}.post1"
    pyproject.write_text(text.replace(current[0], f'version = "{version}"', 1))
    return src, version


def kafka_loaded(host: Any) -> str:
    """The Kafka version whose jars the running broker holds open ('' when it does not run)."""
    out = host.check_output(
        "pid=$(systemctl show --property=MainPID --value kafka); [ \"${pid:-0}\" -gt 0 ] && "
        "find /proc/$pid/fd -lname '*/libs/kafka-server-[0-9]*.jar' -printf '%l\\n' -quit 2>/dev/null || true")
    found = re.search(r"kafka-server-(\S+)\.jar", out)
    return found[1] if found else ""


def app_version(host: Any) -> str:
    return str(host.check_output(
        "/opt/footprint/venv/bin/python -c \"import importlib.metadata as m; print(m.version('footprint'))\""))


def invocations(host: Any) -> dict[str, str]:
    """The kit's running services on the host -> their systemd invocation id (a new one on every
    start or restart; a reload keeps it)."""
    units = [u for u in host.check_output(
        "systemctl list-units --type=service --state=running --no-legend --plain | awk '{print $1}'").split()
        if KIT_UNITS.match(u)]
    out = host.check_output("systemctl show --property=Id,InvocationID " + " ".join(units)) if units else ""
    found: dict[str, str] = {}
    for block in out.strip().split("\n\n"):
        fields = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if fields.get("Id"):
            found[fields["Id"]] = fields.get("InvocationID", "")
    return found


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP: host -> {ok, changed, failed, ...}."""
    out: dict[str, dict[str, int]] = {}
    for line in output[output.rfind("PLAY RECAP"):].splitlines()[1:]:
        m = re.match(r"^(\S+)\s*:\s*(.*)$", line.strip())
        if m:
            out[m[1]] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m[2])}
    return out


def both_refused(logs: list[Path]) -> float:
    """The longest time both collectors refused at once (seconds)."""
    a, b = (upgrade_traffic.refused_windows(upgrade_traffic.read_log(log)) for log in logs[:2])
    return max([0.0, *(min(e1, e2) - max(s1, s2) for s1, e1 in a for s2, e2 in b)])


def test_the_cluster_upgrades_one_host_at_a_time_under_traffic_through_a_failure(
    host: Any, hostvars: dict[str, Any], component: Component, request: pytest.FixtureRequest, tmp_path: Path,
) -> None:
    groups = hostvars["groups"]
    apps, kafkas = list(groups.get("app", [])), list(groups.get("kafka", []))
    if len(kafkas) < 3 or len(apps) < 2:
        pytest.skip("needs three Kafka nodes and two app hosts (the cluster scenario)")
    if host.backend.get_hostname() != apps[0]:
        pytest.skip("runs once for the cluster (from the first app host's parameter)")
    import testinfra

    inventory = request.config.option.ansible_inventory
    hosts = {h: testinfra.get_host(f"ansible://{h}?ansible_inventory={inventory}") for h in groups["footprint"]}
    old_kafka = str(setting(hostvars, "kafka_version"))
    assert old_kafka != NEW_KAFKA, f"the cluster already runs Kafka {NEW_KAFKA}: nothing to upgrade"
    source, new_app = newer_app(tmp_path)
    extra = tmp_path / "upgrade-vars.yml"
    extra.write_text(yaml.safe_dump({"kafka_version": NEW_KAFKA, "footprint_app_source": str(source), "upgrade_smoke": False}))

    ep = endpoints_of(component, hostvars)
    ids_before = {h: meta_cluster_id(hosts[h], resolved(request.config, h)) for h in kafkas}
    assert len(set(ids_before.values())) == 1, ids_before
    topics_before = topic_digests(ep)
    broken = kafkas[1]
    untouched = {h: invocations(hosts[h]) for h in groups["footprint"]}
    traffic = CollectorTraffic([endpoints_of(component, resolved(request.config, h)) for h in apps], tmp_path)
    hosts[broken].run_test("mkdir -p %s && printf '[Service]\\nEnvironment=\"KAFKA_OPTS=%s\"\\n' > %s",
                           str(Path(BROKEN_DROPIN).parent), BROKEN_OPTION, BROKEN_DROPIN)
    traffic.start()
    took: dict[str, float] = {}
    try:
        time.sleep(5)
        # 1. the failing run
        failed, took["failing run"] = converge(inventory, extra, playbook="upgrade.yml")
        assert failed.returncode != 0, "upgrade.yml passed with a broker that cannot start"
        out = failed.stdout
        assert f"UPGRADE STOPPED at Kafka on {broken}" in out, out[-6000:]
        assert "FootprintClusterUpgradeTestBrokenOption" in out, out[-6000:]
        assert f"Fix: repair the cause on {broken}" in out, out[-6000:]
        for later in ("Upgrade ClickHouse", "Upgrade PostgreSQL", "Upgrade the app"):
            assert later not in out, f"the play went on to '{later}' after the failed broker"
        assert kafka_loaded(hosts[kafkas[0]]) == NEW_KAFKA, "the first node was not upgraded before the failure"
        assert kafka_loaded(hosts[kafkas[2]]) == old_kafka, "the node after the failed one was touched"
        for h in groups["footprint"]:  # Kafka restarted on the first two nodes only; nothing else anywhere
            upgraded = {"kafka.service"} if h in kafkas[:2] else set()
            now = {u: i for u, i in invocations(hosts[h]).items() if u not in upgraded}
            was = {u: i for u, i in untouched[h].items() if u not in upgraded}
            assert now == was, f"{h}: services restarted although the upgrade stopped at {broken}: {was} -> {now}"
        for h in apps:
            assert app_version(hosts[h]) != new_app, f"{h}: the app was upgraded although the upgrade stopped at {broken}"
        # 2. the fix, and the rerun that completes the upgrade
        hosts[broken].run_test("rm -f %s && systemctl daemon-reload && systemctl restart kafka", BROKEN_DROPIN)
        done, took["rerun"] = converge(inventory, extra, playbook="upgrade.yml")
        assert done.returncode == 0, done.stdout[-8000:]
        # 3. the second run changes nothing and restarts nothing
        running = {h: invocations(hosts[h]) for h in groups["footprint"]}
        again, took["second run"] = converge(inventory, extra, playbook="upgrade.yml")
        assert again.returncode == 0, again.stdout[-8000:]
        changed = {h: r.get("changed", -1) for h, r in recap(again.stdout).items()}
        assert set(changed) >= set(groups["footprint"]), f"no recap for every host: {changed}"
        assert not any(changed.values()), f"the second run changed something: {changed}\n{again.stdout[-6000:]}"
        restarted = {h: sorted(u for u, i in invocations(hosts[h]).items() if running[h].get(u) != i)
                     for h in groups["footprint"]}
        assert not any(restarted.values()), f"the second run restarted services: {restarted}"
        time.sleep(5)
    finally:
        traffic.done.set()
        hosts[broken].run("rm -f %s && systemctl daemon-reload", BROKEN_DROPIN)
    delivered = traffic.stop_and_check()
    # 4. afterwards
    longest = max((e - s for log in traffic.logs for s, e in upgrade_traffic.refused_windows(upgrade_traffic.read_log(log))),
                  default=0.0)
    together = both_refused(traffic.logs)
    assert {h: kafka_loaded(hosts[h]) for h in kafkas} == dict.fromkeys(kafkas, NEW_KAFKA)
    assert {h: app_version(hosts[h]) for h in apps} == dict.fromkeys(apps, new_app)
    assert {h: meta_cluster_id(hosts[h], resolved(request.config, h)) for h in kafkas} == ids_before
    ranges = {name: end for name, (end, _) in topics_before.items()}
    assert topic_digests(ep, ranges) == topics_before, "the records the topics held before the upgrade changed"
    print(f"\ncluster upgrade (Kafka {old_kafka} -> {NEW_KAFKA}, app -> {new_app}): "
          + ", ".join(f"{k} {v:.0f} s" for k, v in took.items())
          + f"; stopped at {broken} with the fix named; second run 0 changed, 0 restarted; {delivered}; "
          f"longest run of refused batches at one collector {longest:.1f} s, at both at once {together:.1f} s")
    assert longest <= REFUSED_MAX_S, f"a collector refused events for {longest:.1f} s in a row"
    assert together == 0, f"both collectors refused events at once for {together:.1f} s"
