"""Shared fixtures for the testinfra suite.

Every address, port and credential comes from the Ansible inventory the suite runs
against (molecule's, the demo host's or a user's), never from literals.
"""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="module")
def hostvars(host: Any) -> dict[str, Any]:
    """The inventory variables of the host under test (templated by Ansible)."""
    return host.ansible.get_variables()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def address(host: Any, hostvars: dict[str, Any]) -> str:
    """Where the control node reaches the host's services."""
    addr = hostvars.get("ansible_host") or hostvars["inventory_hostname"]
    return str(addr)
