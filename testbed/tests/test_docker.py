"""testbed/docker: the engine started by the kit, a systemd container from the test bed's own
Debian 12 image with the docker scenario's options (no --privileged), the nspawn test bed working
beside a running dockerd, and `down` leaving nothing behind.

Needs root and Debian's docker.io (make deps). Uses its own names (footprint-docker-test*) and
the nspawn address 10.77.0.94.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOL = str(ROOT / "testbed" / "docker")
HOST_TOOL = str(ROOT / "testbed" / "host")
IMAGE = "footprint-testbed/debian:12"
NAME = "footprint-docker-test"
# the options of molecule/docker/molecule.yml
RUN_OPTIONS = [
    "--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN", "--security-opt", "seccomp=unconfined",
    "--security-opt", "apparmor=unconfined", "--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp:exec,mode=1777",
    "--sysctl", "net.ipv6.conf.all.disable_ipv6=0", "--sysctl", "net.ipv6.conf.lo.disable_ipv6=0",
]


def run(*cmd: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(list(cmd), text=True, capture_output=True, timeout=timeout)
    if check:
        assert res.returncode == 0, f"{' '.join(cmd)}: {res.stdout[-1500:]}{res.stderr[-1500:]}"
    return res


def engine_answers() -> bool:
    return run("docker", "version", check=False, timeout=20).returncode == 0


@pytest.fixture(scope="module")
def engine() -> Iterator[bool]:
    """The engine with the Debian 12 image; yields whether this tool started it (then down stops it)."""
    foreign = engine_answers()
    run(TOOL, "up", "--image", "debian-12", timeout=900)
    yield not foreign
    run("docker", "rm", "-f", NAME, check=False)
    run(TOOL, "down")


@pytest.fixture(scope="module")
def container(engine: bool) -> Iterator[str]:
    run("docker", "rm", "-f", NAME, check=False)
    run("docker", "run", "-d", "--name", NAME, "--hostname", NAME, *RUN_OPTIONS, IMAGE)
    deadline = time.monotonic() + 120
    state = ""
    while time.monotonic() < deadline:
        state = run("docker", "exec", NAME, "systemctl", "is-system-running", check=False).stdout.strip()
        if state in ("running", "degraded"):
            break
        time.sleep(0.5)
    assert state in ("running", "degraded"), f"systemd did not finish booting: {state}"
    yield NAME
    run("docker", "rm", "-f", NAME, check=False)


def inside(name: str, *cmd: str) -> str:
    return run("docker", "exec", name, *cmd).stdout.strip()


def test_container_runs_systemd_on_debian_12_without_privileged(container: str) -> None:
    assert inside(container, "cat", "/proc/1/comm") == "systemd"
    assert 'VERSION_ID="12"' in inside(container, "cat", "/etc/os-release")
    assert run("docker", "inspect", "--format", "{{.HostConfig.Privileged}}", container).stdout.strip() == "false"
    assert inside(container, "systemctl", "list-units", "--state=failed", "--no-legend", "--plain") == ""
    assert inside(container, "ip", "-6", "addr", "show", "dev", "lo") != ""  # ::1 as on a server


def test_container_trusts_this_machines_ca_certificates_and_has_apt(container: str) -> None:
    for ca in sorted(Path("/usr/local/share/ca-certificates").glob("*.crt")):
        run("docker", "exec", container, "test", "-s", f"/usr/local/share/ca-certificates/{ca.name}")
    res = run("docker", "exec", container, "apt-get", "update", "-qq", check=False, timeout=300)
    assert res.returncode == 0, res.stderr  # through Docker's own NAT


def test_nspawn_test_bed_works_beside_dockerd(container: str) -> None:
    """Both NATs at once: a nspawn host on fpbr0 reaches the archive while dockerd's chains are there."""
    name, ip = "fp-test-dock", "10.77.0.94"
    try:
        run(HOST_TOOL, "up", name, ip, timeout=300)
        assert "DOCKER" in run("iptables-save").stdout
        res = run(HOST_TOOL, "exec", name, "apt-get", "update", "-qq", check=False, timeout=300)
        assert res.returncode == 0, res.stderr
        ping = run("docker", "exec", container, "apt-get", "update", "-qq", check=False, timeout=300)
        assert ping.returncode == 0, ping.stderr
    finally:
        run(HOST_TOOL, "down", name)
    assert [x for x in run(HOST_TOOL, "leftovers", check=False).stdout.splitlines() if name in x] == []


def test_stop_signal_powers_systemd_off(container: str) -> None:
    started = time.monotonic()
    run("docker", "stop", "-t", "60", container, timeout=120)
    assert time.monotonic() - started < 55, "systemd did not power off on the image's STOPSIGNAL"


def test_down_leaves_nothing(engine: bool) -> None:
    run(TOOL, "down")
    assert run(TOOL, "leftovers", check=False).stdout == ""
    if engine:  # the engine was ours: stopped, and its network gone
        assert not engine_answers()
        assert "DOCKER" not in run("iptables-save").stdout
        assert run("ip", "link", "show", "docker0", check=False).returncode != 0
