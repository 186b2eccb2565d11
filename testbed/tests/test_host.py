"""testbed/host: real Debian 13 systemd hosts in nspawn, several at once, and a teardown
that leaves nothing behind, also after the run that made a host was killed.

Needs root (like the tool). Uses its own names and addresses (10.77.0.9x).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOL = str(ROOT / "testbed" / "host")
CACHE = Path(os.environ.get("FOOTPRINT_CACHE", Path.home() / ".cache" / "footprint"))
HOSTS = {"fp-test-a": "10.77.0.91", "fp-test-b": "10.77.0.92"}


def running(pid: int) -> bool:
    """The process exists and is not a zombie (a zombie waits for this machine's PID 1 to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def tool(*args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([TOOL, *args], text=True, capture_output=True, timeout=timeout)
    if check:
        assert res.returncode == 0, f"testbed/host {' '.join(args)}: {res.stderr}"
    return res


def inside(name: str, *cmd: str) -> str:
    return tool("exec", name, *cmd).stdout.strip()


@pytest.fixture(scope="module")
def two_hosts() -> object:
    for name, ip in HOSTS.items():
        tool("up", name, ip)
    yield HOSTS
    for name in HOSTS:
        tool("down", name)


def test_hosts_run_systemd_on_debian_13(two_hosts: dict[str, str]) -> None:
    for name in two_hosts:
        assert inside(name, "cat", "/proc/1/comm") == "systemd"
        assert inside(name, "systemctl", "is-system-running") in ("running", "degraded")
        assert 'VERSION_ID="13"' in inside(name, "cat", "/etc/os-release")
        assert inside(name, "hostname") == name


def test_hosts_have_distinct_names_and_addresses(two_hosts: dict[str, str]) -> None:
    listed = dict(line.split()[:2] for line in tool("list").stdout.splitlines())
    for name, ip in two_hosts.items():
        assert listed[name] == ip
        assert f"inet {ip}/" in inside(name, "ip", "-4", "addr", "show", "dev", "host0")


def test_control_node_reaches_host_ports(two_hosts: dict[str, str]) -> None:
    name, ip = next(iter(two_hosts.items()))
    server = subprocess.Popen([TOOL, "exec", name, "timeout", "60", "python3", "-m", "http.server", "18080", "--bind", ip],
                              start_new_session=True)
    try:
        for _ in range(50):
            res = subprocess.run(["curl", "-sf", "-o", "/dev/null", "-w", "%{http_code}", f"http://{ip}:18080/"],
                                 text=True, capture_output=True)
            if res.stdout == "200":
                break
            time.sleep(0.2)
        assert res.stdout == "200"
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(10)
        tool("exec", name, "pkill", "-f", "http.server 18080", check=False)


def test_hosts_reach_each_other(two_hosts: dict[str, str]) -> None:
    (a, _), (_, ip_b) = list(two_hosts.items())
    code = f"import socket,sys; s=socket.socket(); s.settimeout(3); sys.exit(s.connect_ex(('{ip_b}', 9)) not in (0, 111))"
    assert tool("exec", a, "python3", "-c", code, check=False).returncode == 0  # refused = reachable


def test_host_trusts_this_machines_ca_certificates(two_hosts: dict[str, str]) -> None:
    name = next(iter(two_hosts))
    bundle = inside(name, "cat", "/etc/ssl/certs/ca-certificates.crt")
    cas = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
    assert cas, "this machine has no extra CA certificates to copy"
    for ca in cas:
        assert tool("exec", name, "test", "-s", f"/usr/local/share/ca-certificates/{ca.name}", check=False).returncode == 0
        body = "".join(ca.read_text().split("-----")[2].split())
        assert body[:200] in "".join(bundle.split()), ca.name


def test_host_has_its_own_apt_traffic(two_hosts: dict[str, str]) -> None:
    """NAT lets a host reach the Debian archive for its own packages."""
    name = next(iter(two_hosts))
    res = tool("exec", name, "apt-get", "update", "-qq", check=False, timeout=300)
    assert res.returncode == 0, res.stderr


def test_teardown_after_a_killed_run_leaves_nothing() -> None:
    name, ip = "fp-test-killed", "10.77.0.93"
    proc = subprocess.Popen([TOOL, "up", name, ip], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pidfile = CACHE / "hosts" / name / "nspawn.pid"
    deadline = time.monotonic() + 120
    while not pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pidfile.exists(), "the container never started"
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)  # the job that made the host dies; nspawn runs on, detached
    proc.wait()
    nspawn = int(pidfile.read_text())
    assert running(nspawn), "nspawn should outlive the killed run"
    tool("down", name)
    assert not running(nspawn)
    assert [x for x in tool("leftovers", check=False).stdout.splitlines() if name in x] == []


def test_teardown_without_state_files_finds_the_container() -> None:
    """Even when the state dir is gone, `down` finds the nspawn process by its machine name."""
    name, ip = "fp-test-orphan", "10.77.0.94"
    tool("up", name, ip)
    nspawn = int((CACHE / "hosts" / name / "nspawn.pid").read_text())
    for f in ("nspawn.pid", "leader.pid"):
        (CACHE / "hosts" / name / f).unlink()
    tool("down", name)
    assert not running(nspawn)
    assert [x for x in tool("leftovers", check=False).stdout.splitlines() if name in x] == []


def boot_id(name: str) -> str:
    return inside(name, "cat", "/proc/sys/kernel/random/boot_id")


def test_restart_keeps_the_disk_and_the_address(tmp_path: Path) -> None:
    """restart = clean poweroff + boot of the same disk with the same address; stop + up boots the
    kept disk too (also once its overlay was unmounted, as by a reboot of this machine); only
    --fresh discards it. A snapshot of a stopped host's disk boots again as a new disk (--disk)."""
    name, ip = "fp-test-reboot", "10.77.0.96"
    state = CACHE / "hosts" / name
    tool("up", name, ip, "--fresh")
    try:
        tool("exec", name, "sh", "-c", "echo kept > /var/lib/footprint-disk-marker")
        # a unit that records a clean stop: its ExecStop runs only on an orderly shutdown
        (state / "root/etc/systemd/system/stop-recorder.service").write_text(
            "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n"
            "ExecStop=/bin/sh -c 'date +%%s >> /var/lib/clean-stops'\n"
            "[Install]\nWantedBy=multi-user.target\n"
        )
        tool("exec", name, "sh", "-c", "systemctl daemon-reload && systemctl enable --now stop-recorder.service")
        leader, boot = (state / "leader.pid").read_text().strip(), boot_id(name)

        res = tool("restart", name)
        assert "restarted" in res.stderr
        assert (state / "leader.pid").read_text().strip() != leader
        assert boot_id(name) != boot, "the host did not boot again"
        assert inside(name, "cat", "/var/lib/footprint-disk-marker") == "kept"
        assert len(inside(name, "cat", "/var/lib/clean-stops").split()) == 1, "no clean shutdown recorded"
        assert inside(name, "systemctl", "is-system-running") in ("running", "degraded")
        assert f"inet {ip}/" in inside(name, "ip", "-4", "addr", "show", "dev", "host0")
        listed = dict(line.split()[:2] for line in tool("list").stdout.splitlines())
        assert listed[name] == ip

        tool("stop", name)
        assert name not in tool("list").stdout.split()
        assert (state / "root" / "var/lib/footprint-disk-marker").read_text().strip() == "kept"
        assert "kept disk" in tool("leftovers", check=False).stdout
        # the disk is an overlay: the marker is the host's own, not in the base layer every host shares
        lower = Path((state / "lower").read_text().strip())
        assert (lower / "etc/os-release").exists() and not (lower / "var/lib/footprint-disk-marker").exists()
        # as after a reboot of this machine: the overlay unmounted, the kept disk still boots
        subprocess.run(["umount", str(state / "root")], check=True)
        refused = tool("up", name, "10.77.0.97", check=False)
        assert refused.returncode != 0 and "--fresh" in refused.stderr, refused.stderr
        res = tool("up", name, ip)
        assert "kept disk" in res.stderr
        assert inside(name, "cat", "/var/lib/footprint-disk-marker") == "kept"
        assert len(inside(name, "cat", "/var/lib/clean-stops").split()) == 2

        tool("stop", name)
        saved = tmp_path / "disk.tar"
        assert "--fresh" in tool("up", name, ip, "--disk", str(saved), check=False).stderr  # a kept disk stays
        tool("snapshot", name, str(saved))
        tool("up", name, ip, "--fresh")
        gone = tool("exec", name, "test", "-e", "/var/lib/footprint-disk-marker", check=False)
        assert gone.returncode != 0, "--fresh kept the old disk"

        # a new disk holding the saved one's changes: the marker and the clean stops recorded are back
        tool("stop", name)
        res = tool("up", name, ip, "--fresh", "--disk", str(saved))
        assert "with the changes saved in" in res.stderr, res.stderr
        assert inside(name, "cat", "/var/lib/footprint-disk-marker") == "kept"
        assert len(inside(name, "cat", "/var/lib/clean-stops").split()) == 3  # the restart's and both stops'
    finally:
        tool("down", name)
    assert not state.exists()
    assert [x for x in tool("leftovers", check=False).stdout.splitlines() if name in x] == []


def test_bad_input_is_refused() -> None:
    assert tool("up", "Bad_Name", "10.77.0.95", check=False).returncode != 0
    res = tool("up", "fp-test-badip", "192.0.2.50", check=False)
    assert res.returncode != 0 and "not a free host address" in res.stderr


def test_network_is_removed_with_the_last_host() -> None:
    for name in HOSTS:
        tool("down", name)
    if tool("list").stdout.strip():
        pytest.skip("other test hosts are running on this machine; the bridge stays for them")
    assert subprocess.run(["ip", "link", "show", "fpbr0"], capture_output=True).returncode != 0
    assert "footprint-testbed" not in subprocess.run(["iptables-save"], text=True, capture_output=True).stdout
    assert tool("leftovers", check=False).stdout.strip() == ""
