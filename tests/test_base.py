"""The base role: packages, time, kernel settings, limits, firewall."""

from typing import Any


def test_essential_packages(host: Any) -> None:
    for name in ("ca-certificates", "curl", "gnupg", "acl", "tzdata", "python3-apt"):
        assert host.package(name).is_installed, name


def test_timezone(host: Any, hostvars: dict[str, Any]) -> None:
    want = hostvars.get("base_timezone", "Etc/UTC")
    assert host.file("/etc/localtime").linked_to == f"/usr/share/zoneinfo/{want}"


def test_time_sync_enabled(host: Any) -> None:
    assert host.service("systemd-timesyncd").is_enabled


def test_task_delayacct_persisted(host: Any) -> None:
    f = host.file("/etc/sysctl.d/60-footprint-base.conf")
    assert f.exists and f.user == "root" and f.mode == 0o644
    assert "kernel.task_delayacct=1" in f.content_string.replace(" ", "")


def test_task_delayacct_live(host: Any) -> None:
    """Applied by the role on a VM, by the machine hosting the container otherwise."""
    assert host.file("/proc/sys/kernel/task_delayacct").content_string.strip() == "1"


def test_service_file_limit(host: Any, hostvars: dict[str, Any]) -> None:
    want = str(hostvars.get("base_nofile_limit", 131072))
    assert host.run("systemctl show --property DefaultLimitNOFILE --value").stdout.strip() == want
    assert f"soft nofile {want}" in host.file("/etc/security/limits.d/60-footprint.conf").content_string


def test_firewall(host: Any, hostvars: dict[str, Any]) -> None:
    if not hostvars.get("base_firewall_enabled", False):
        assert not host.package("ufw").is_installed or "inactive" in host.run("ufw status").stdout
        return
    status = host.run("ufw status").stdout
    assert "Status: active" in status
    for item in hostvars["base_firewall_allowed_ports"]:
        assert f"{item['port']}/{item.get('proto', 'tcp')}" in status, item
