"""Bad input fails early, before anything changes, with a message naming the cause.

Runs the real playbooks against a scratch test host of its own (never a user's server):
in check mode wherever the check can be reached without installing anything. The bad variables
of one playbook are checked in one run of it: each case is the test host under a name of its
own (`<case>.<host>`, its own cluster: local_play.batch) with its bad variable as a host variable,
and fails on its own (one run instead of one per case: ~6-13 s each).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from local_play import batch, failures

ROOT = Path(__file__).resolve().parents[2]
TOOL = str(ROOT / "testbed" / "host")
NAME, IP = "fp-test-inputs", "10.77.0.95"
GROUPS = ["kafka", "clickhouse", "postgresql", "app"]
# the variables that name a role's cluster by its group: each case's name its own group (batch)
CLUSTER_GROUPS = {"kafka_cluster_group": "kafka", "kafka_controller_group": "kafka_controller",
                  "clickhouse_cluster_group": "clickhouse", "clickhouse_keeper_group": "clickhouse_keeper"}
# case: (playbook, bad variables, what its failure must say)
BAD_VARIABLES: dict[str, tuple[str, dict[str, object], str]] = {
    "kafka-port": ("kafka.yml", {"kafka_port": 70000}, "kafka_port (70000)"),
    "kafka-partitions": ("kafka.yml", {"kafka_topics": [{"name": "web-logs-topic", "partitions": -1}]},
                         "partitions a positive integer (got -1)"),
    "clickhouse-version": ("clickhouse.yml", {"clickhouse_version": "26.9.1.1"},
                           "clickhouse_version 26.9.1.1 is not on a known LTS line"),
    "clickhouse-channel": ("clickhouse.yml", {"clickhouse_channel": "beta"}, "clickhouse_channel"),
    "postgresql-version": ("postgresql.yml", {"postgresql_version": "15"}, "postgresql_version=15 cannot be installed here"),
}


def tool(*args: str) -> str:
    res = subprocess.run([TOOL, *args], text=True, capture_output=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return res.stdout


def one_host(hostvars: dict[str, object]) -> dict[str, object]:
    """The test host in every group, as site.yml sees a single-host deployment."""
    children = {g: {"hosts": {NAME: {}}} for g in GROUPS}
    return {"all": {"children": {"footprint": {"hosts": {NAME: hostvars}, "children": children}}}}


@pytest.fixture(scope="module")
def hostvars() -> Iterator[dict[str, object]]:
    tool("up", NAME, IP)
    tool("exec", NAME, "apt-get", "update", "-qq")  # like any real server, it knows its package lists
    yield json.loads(tool("inventory", NAME))["all"]["hosts"][NAME]
    tool("down", NAME)


@pytest.fixture(scope="module")
def inventory(hostvars: dict[str, object], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("inv") / "hosts.yml"
    path.write_text(json.dumps(one_host(hostvars)))
    return path


def playbook(inventory: Path, play: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    return subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), str(ROOT / "playbooks" / play), *args],
        text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT, env=env, timeout=900,
    )


def test_unsupported_os_fails_before_any_change(inventory: Path) -> None:
    original = tool("exec", NAME, "cat", "/etc/os-release")
    fake = 'NAME="Fedora Linux"\nID=fedora\nVERSION_ID=41\nPRETTY_NAME="Fedora Linux 41"\n'
    tool("exec", NAME, "sh", "-c", f"rm /etc/os-release && printf '%s' '{fake}' > /etc/os-release")
    try:
        res = playbook(inventory, "site.yml")
    finally:
        tool("exec", NAME, "sh", "-c", "rm /etc/os-release && ln -s ../usr/lib/os-release /etc/os-release")
    assert res.returncode != 0
    assert "Unsupported OS Fedora Linux 41" in res.stdout, res.stdout[-3000:]
    assert "changed=0" in res.stdout
    assert 'VERSION_ID="13"' in original


def test_java_that_is_not_the_required_major_fails(inventory: Path) -> None:
    """Java 21 installed, 25 required: java -version is read and the play fails naming both."""
    res = playbook(
        inventory, "java.yml",
        "-e", "java_major_version=25", "-e", "java_source=distribution",
        "-e", "java_package=openjdk-21-jre-headless", "-e", "java_home=/usr/lib/jvm/java-21-openjdk-amd64",
    )
    assert res.returncode != 0
    assert "must report Java 25" in res.stdout and 'version "21' in res.stdout, res.stdout[-3000:]


@pytest.fixture(scope="module")
def bad_variable_runs(hostvars: dict[str, object], tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str]]:
    """Each playbook of BAD_VARIABLES run once in check mode over all of its cases:
    case -> (what the case's host failed with, the run's output)."""
    found: dict[str, tuple[str, str]] = {}
    for play in sorted({play for play, _, _ in BAD_VARIABLES.values()}):
        cases = {case: one_host({**hostvars, **extra}) for case, (p, extra, _) in BAD_VARIABLES.items() if p == play}
        path = tmp_path_factory.mktemp("inv") / "hosts.yml"
        path.write_text(json.dumps(batch(cases, CLUSTER_GROUPS)))
        res = playbook(path, play, "--check")
        failed = failures(res.stdout)  # host names as printed: `<case>.<host>`, or `... -> localhost` delegated
        for case in cases:
            found[case] = (" ".join(text for host, text in failed.items() if host.split(" -> ")[0] == f"{case}.{NAME}"),
                           res.stdout)
    return found


@pytest.mark.parametrize("case", list(BAD_VARIABLES))
def test_bad_variable_fails_early_naming_it(bad_variable_runs: dict[str, tuple[str, str]], case: str) -> None:
    play, _, message = BAD_VARIABLES[case]
    failed, output = bad_variable_runs[case]
    assert failed, f"{case}: its host did not fail\n{output[-3000:]}"
    assert message in failed, failed[-3000:]
    role, host = play.removesuffix(".yml"), f"{case}.{NAME}"
    role_tasks = [t for t in output.split("TASK [")[1:] if t.startswith(f"{role} : ") and f"[{host}]" in t]
    assert role_tasks, f"no task of role {role} ran on {host}"
    assert not [t.splitlines()[0] for t in role_tasks if f"\nchanged: [{host}]" in t], "the role changed something before failing"
