"""Bad input fails early, before anything changes, with a message naming the cause.

Runs the real playbooks against a scratch test host of its own (never a user's server):
in check mode wherever the check can be reached without installing anything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOL = str(ROOT / "testbed" / "host")
NAME, IP = "fp-test-inputs", "10.77.0.95"
GROUPS = ["kafka", "clickhouse", "postgresql", "app"]


def tool(*args: str) -> str:
    res = subprocess.run([TOOL, *args], text=True, capture_output=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return res.stdout


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tool("up", NAME, IP)
    tool("exec", NAME, "apt-get", "update", "-qq")  # like any real server, it knows its package lists
    inv = json.loads(tool("inventory", NAME))
    hostvars = inv["all"]["hosts"][NAME]
    children = {g: {"hosts": {NAME: {}}} for g in GROUPS}
    inv = {"all": {"children": {"footprint": {"hosts": {NAME: hostvars}, "children": children}}}}
    path = tmp_path_factory.mktemp("inv") / "hosts.yml"
    path.write_text(json.dumps(inv))
    yield path
    tool("down", NAME)


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


@pytest.mark.parametrize(
    ("play", "extra", "message"),
    [
        ("kafka.yml", {"kafka_port": 70000}, "kafka_port (70000)"),
        ("kafka.yml", {"kafka_topics": [{"name": "web-logs-topic", "partitions": -1}]}, "partitions a positive integer (got -1)"),
        ("clickhouse.yml", {"clickhouse_version": "26.9.1.1"}, "clickhouse_version 26.9.1.1 is not on a known LTS line"),
        ("clickhouse.yml", {"clickhouse_channel": "beta"}, "clickhouse_channel"),
        ("postgresql.yml", {"postgresql_version": "15"}, "postgresql_version=15 cannot be installed here"),
    ],
    ids=["kafka-port", "kafka-partitions", "clickhouse-version", "clickhouse-channel", "postgresql-version"],
)
def test_bad_variable_fails_early_naming_it(inventory: Path, play: str, extra: dict[str, object], message: str) -> None:
    res = playbook(inventory, play, "--check", "-e", json.dumps(extra))
    assert res.returncode != 0
    assert message in " ".join(res.stdout.split()), res.stdout[-3000:]
    role = play.removesuffix(".yml")
    role_tasks = [t for t in res.stdout.split("TASK [")[1:] if t.startswith(f"{role} : ")]
    assert role_tasks, f"no task of role {role} ran"
    assert not [t.splitlines()[0] for t in role_tasks if "\nchanged: [" in t], "the role changed something before failing"
