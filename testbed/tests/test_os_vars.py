"""The roles' OS variables (tasks/os_vars.yml, one shape in every role): each supported release
finds a vars file through the chain <Distro>-<major>.yml, <Distro>.yml, <OS family>.yml, and the
file each release loads defines the same variables as every other release's (only one file is
loaded, so a variable added to the family's file but not to a release's own would be undefined on
that release alone: a failure no single test host shows), unless vars/main.yml gives it a value
that a release's file overrides (e.g. the footprint role's python on Ubuntu 22.04). Every role's loader is the same text
but for the role's name, and the role runs it first."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[2] / "roles"
FAMILY = {"Debian": "Debian", "Ubuntu": "Debian"}
LOADERS = sorted(p.parents[1].name for p in ROLES.glob("*/tasks/os_vars.yml"))


def releases(role: str) -> list[str]:
    return list(yaml.safe_load((ROLES / role / "vars" / "main.yml").read_text())[f"__{role}_releases"])


def loaded_file(role: str, release: str) -> Path | None:
    distro, major = release.split("-")
    for name in (f"{distro}-{major}.yml", f"{distro}.yml", f"{FAMILY[distro]}.yml"):
        if (ROLES / role / "vars" / name).is_file():
            return ROLES / role / "vars" / name
    return None


def test_every_role_with_os_files_loads_them_through_the_one_loader() -> None:
    with_os_files = sorted(p.name for p in ROLES.iterdir()
                           if any(f.name != "main.yml" for f in (p / "vars").glob("*.yml")))
    assert with_os_files == LOADERS
    shape = (ROLES / "kafka" / "tasks" / "os_vars.yml").read_text().replace("kafka", "ROLE")
    for role in LOADERS:
        assert (ROLES / role / "tasks" / "os_vars.yml").read_text().replace(role, "ROLE") == shape, role


@pytest.mark.parametrize("role", LOADERS)
def test_each_release_loads_a_file_with_the_same_variables(role: str) -> None:
    files = {release: loaded_file(role, release) for release in releases(role)}
    assert None not in files.values(), f"{role}: no vars file for {[r for r, f in files.items() if f is None]}"
    keys = {release: set(yaml.safe_load(f.read_text()) or {}) for release, f in files.items() if f}
    every = set().union(*keys.values()) - set(yaml.safe_load((ROLES / role / "vars" / "main.yml").read_text()))
    missing = {release: sorted(every - k) for release, k in keys.items() if every - k}
    assert not missing, f"{role}: variables another release's file defines are missing in {missing}"
    unused = sorted(f.name for f in (ROLES / role / "vars").glob("*.yml")
                    if f.name != "main.yml" and f not in files.values())
    assert not unused, f"{role}: vars files no supported release loads: {unused}"
