"""The base role: packages, time, kernel settings, limits, firewall."""

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


def test_firewall(host: Any, hostvars: dict[str, Any]) -> None:
    if not setting(hostvars, "base_firewall_enabled"):
        assert not host.package("ufw").is_installed or "inactive" in host.run("ufw status").stdout
        return
    status = host.run("ufw status").stdout
    assert "Status: active" in status
    for item in setting(hostvars, "base_firewall_allowed_ports"):
        assert f"{item['port']}/{item.get('proto', 'tcp')}" in status, item


def test_firewall_denies_unlisted_ports(host: Any, hostvars: dict[str, Any], address: str) -> None:
    """A port that is not in the allowed list is unreachable from the control node."""
    if not setting(hostvars, "base_firewall_enabled"):
        pytest.skip("base_firewall_enabled is false in this inventory (test_firewall checks ufw is off)")
    allowed = {int(p["port"]) for p in setting(hostvars, "base_firewall_allowed_ports")}
    port = next(p for p in range(18081, 18200) if p not in allowed)
    host.run_test("setsid -f timeout 20 python3 -m http.server %s --bind 0.0.0.0 >/dev/null 2>&1", str(port))
    probe = f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/', timeout=3)"
    for _ in range(20):  # it listens: reachable from inside the host
        if host.run("python3 -c %s", probe).rc == 0:
            break
    else:
        raise AssertionError("the probe server did not start")
    with socket.socket() as s:
        s.settimeout(3)
        assert s.connect_ex((address, port)) != 0, f"port {port} is reachable through the firewall"
