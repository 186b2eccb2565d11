"""The suite really runs inside the test host: systemd is PID 1 and the OS is the one asked for."""

from typing import Any


def test_pid1_is_systemd(host: Any) -> None:
    assert host.process.get(pid=1).comm == "systemd"


def test_os_is_supported(host: Any) -> None:
    sysinfo = host.system_info
    assert (sysinfo.distribution, sysinfo.release.split(".")[0]) in {
        ("debian", "12"), ("debian", "13"), ("ubuntu", "22"), ("ubuntu", "24"),
    }


def test_systemd_is_healthy(host: Any) -> None:
    state = host.run("systemctl is-system-running").stdout.strip()
    assert state in ("running", "degraded"), state
    failed = host.run("systemctl list-units --state=failed --no-legend --plain").stdout.strip()
    assert failed == "", f"failed units: {failed}"


def test_not_the_control_node(host: Any) -> None:
    """The machine the tests run on is not the host under test."""
    import socket

    assert host.run("hostname").stdout.strip() != socket.gethostname()
