"""Shared fixtures for the testinfra suite.

Every address, port and credential comes from the Ansible inventory the suite runs
against (molecule's, the demo host's or a user's) or, where the inventory does not set a
variable, from the role's own defaults — never from literals in the tests.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import pytest
import testinfra.host
import testinfra.utils.ansible_runner as ansible_runner
import yaml  # type: ignore[import-untyped]
from testinfra.backend import base
from testinfra.backend.local import LocalBackend

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("FOOTPRINT_CACHE", Path.home() / ".cache" / "footprint"))


class NsenterBackend(LocalBackend):
    """Runs commands inside a test-bed host through nsenter (fast path).

    testinfra drives hosts with an Ansible connection it does not know by running one
    Ansible ad-hoc command per check (~1 s each); for the test bed's nspawn hosts this
    enters the container's namespaces directly instead. Variables still come from Ansible.
    """

    NAME = "nsenter"

    def __init__(self, name: str, pidfile: Path, **kwargs: Any) -> None:
        self.pidfile = pidfile
        self.name = name
        super().__init__(**kwargs)

    def get_pytest_id(self) -> str:
        return self.name

    def run(self, command: str, *args: str, **kwargs: Any) -> base.CommandResult:
        pid = self.pidfile.read_text().strip()
        return self.run_local("nsenter -t %s -a /bin/sh -c %s", pid, self.get_command(command, *args))


_original_get_ansible_host = ansible_runner.get_ansible_host


def _get_ansible_host(config: Any, inventory: Any, host: str, **kwargs: Any) -> testinfra.host.Host | None:
    hostvars = inventory.get("_meta", {}).get("hostvars", {}).get(host, {})
    pidfile = CACHE / "hosts" / host / "leader.pid"
    if hostvars.get("ansible_connection") == "community.docker.nsenter" and pidfile.is_file():
        return testinfra.host.Host(NsenterBackend(host, pidfile))
    return _original_get_ansible_host(config, inventory, host, **kwargs)


ansible_runner.get_ansible_host = _get_ansible_host  # type: ignore[assignment]


@functools.cache
def role_defaults(role: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text()) or {}


@pytest.fixture(scope="module")
def hostvars(host: Any) -> dict[str, Any]:
    """The inventory variables of the host under test (as the inventory states them)."""
    return dict(host.ansible.get_variables())


def setting(hostvars: dict[str, Any], name: str) -> Any:
    """The inventory's value of a role variable, else the role's default."""
    if name in hostvars:
        return hostvars[name]
    return role_defaults(name.split("_", 1)[0])[name]


@pytest.fixture(scope="module")
def address(hostvars: dict[str, Any]) -> str:
    """Where the control node reaches the host's services."""
    return str(hostvars.get("ansible_host") or hostvars["inventory_hostname"])


@pytest.fixture(scope="session")
def secrets_dir(request: pytest.FixtureRequest) -> Path:
    """Where the generated secrets live: FOOTPRINT_SECRETS_DIR, else `.secrets` beside the inventory."""
    if os.environ.get("FOOTPRINT_SECRETS_DIR"):
        return Path(os.environ["FOOTPRINT_SECRETS_DIR"])
    inventory = request.config.option.ansible_inventory
    if not inventory:
        pytest.fail("pass --ansible-inventory or set FOOTPRINT_SECRETS_DIR")
    path = Path(inventory).resolve()
    return (path if path.is_dir() else path.parent) / ".secrets"


@pytest.fixture(scope="session")
def component(request: pytest.FixtureRequest) -> Any:
    """component(group) -> (address, inventory vars) of the first host of an inventory group."""
    runner = ansible_runner.AnsibleRunner.get_runner(request.config.option.ansible_inventory)

    def lookup(group: str) -> tuple[str, dict[str, Any]]:
        hosts = runner.get_hosts(group)
        if not hosts:
            pytest.fail(f"the inventory has no host in group {group!r}")
        hv = dict(runner.get_variables(hosts[0]))
        return str(hv.get("ansible_host") or hosts[0]), hv

    return lookup


def secret(hostvars: dict[str, Any], variable: str, secrets_dir: Path, file_name: str) -> str:
    """A secret: the inventory's value (e.g. from a vault) if it sets one, else the generated file."""
    value = hostvars.get(variable)
    if isinstance(value, str) and value and "{{" not in value:
        return value
    path = secrets_dir / file_name
    if not path.is_file():
        pytest.fail(f"secret {variable} is neither in the inventory nor generated at {path}")
    return path.read_text().strip()
