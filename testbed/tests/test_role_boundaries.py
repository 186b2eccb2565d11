"""What a role keeps to itself and what it offers (docs/conventions.md, "Roles and playbooks").

A role's private names start with `__<role>_`; a playbook reads a role's inputs and the facts the
role documents as set for playbooks ("Facts the role sets" in its README), never its private names.
The playbooks' own helpers (playbooks/group_vars/all.yml's wiring, a playbook's vars) are named so
that they cannot be taken for a role's (`__wire_...`, `__upgrade_...`).
"""

from __future__ import annotations

import re
from pathlib import Path

import jinja2
import yaml  # type: ignore[import-untyped]
from jinja2 import meta

ROOT = Path(__file__).resolve().parents[2]
ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "tasks").is_dir())
PRIVATE = re.compile(r"\b__(?:" + "|".join(re.escape(r) for r in ROLES) + r")_\w+")  # a role's private name


# What a role's defaults may read besides its own names: Ansible's magic and connection variables,
# the host's facts, and the lookups and filters of the templating itself
MAGIC = {"inventory_hostname", "inventory_dir", "playbook_dir", "groups", "hostvars", "group_names", "ansible_host",
         "ansible_facts", "lookup", "query", "omit"}


def template_names(node: object) -> set[str]:
    """The variables the templates in a YAML value read."""
    if isinstance(node, str):
        return meta.find_undeclared_variables(jinja2.Environment().parse(node)) if "{" in node else set()
    if isinstance(node, dict):
        return {name for value in node.values() for name in template_names(value)}
    if isinstance(node, list):
        return {name for value in node for name in template_names(value)}
    return set()


def foreign_names(role: str, defaults: dict[str, object]) -> dict[str, set[str]]:
    """Per default, the names it reads that are neither the role's own nor MAGIC."""
    own = (f"{role}_", f"__{role}_")
    found = {name: {n for n in template_names(value) if not n.startswith(own) and n not in MAGIC}
             for name, value in defaults.items()}
    return {name: names for name, names in found.items() if names}


def playbook_files() -> list[Path]:
    return sorted((ROOT / "playbooks").rglob("*.yml"))


def set_facts(role: str) -> set[str]:
    """The names the role's tasks set with set_fact."""
    names: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("ansible.builtin.set_fact", "set_fact") and isinstance(value, dict):
                    names.update(k for k in value if k != "cacheable")
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for path in (ROOT / "roles" / role / "tasks").rglob("*.yml"):
        walk(yaml.safe_load(path.read_text()))
    return names


def documented_facts(role: str) -> set[str]:
    """The facts the README's "Facts the role sets" table names."""
    text = (ROOT / "roles" / role / "README.md").read_text()
    match = re.search(r"^## Facts the role sets\n(.*?)(?=^## )", text, re.S | re.M)
    return set(re.findall(r"^\| `(\w+)` \|", match[1], re.M)) if match else set()


def test_no_playbook_reads_a_roles_private_names() -> None:
    found = {f"{path.relative_to(ROOT)}: {name}" for path in playbook_files() for name in PRIVATE.findall(path.read_text())}
    assert not found, f"playbooks read role-private names (use the role's documented facts or inputs): {sorted(found)}"


def test_every_public_fact_a_role_sets_is_documented_and_no_more() -> None:
    for role in ROLES:
        public = {name for name in set_facts(role) if not name.startswith("__")}
        assert public == documented_facts(role), (
            f"roles/{role}: set_fact of public names {sorted(public)} against README's \"Facts the role sets\" "
            f"{sorted(documented_facts(role))}: a public fact is part of the role's interface, document it "
            "(or name it __{role}_...)"
        )
        for name in public:
            assert name.startswith(f"{role}_"), f"roles/{role}: the fact {name} does not carry the role's prefix"


def test_the_check_sees_a_private_name_in_a_playbook() -> None:
    """The pattern of the first test finds what it must (a role name from the list, a private name)."""
    assert "kafka" in ROLES and "footprint" in ROLES
    assert PRIVATE.findall("{{ __kafka_loaded_version }} {{ __wire_monitoring_hosts }} {{ kafka_running_version }}") == [
        "__kafka_loaded_version"]


def test_role_defaults_read_only_their_own_names() -> None:
    """What one role takes from another is wired in playbooks/group_vars/all.yml, not in its defaults."""
    for role in ROLES:
        path = ROOT / "roles" / role / "defaults" / "main.yml"
        found = foreign_names(role, yaml.safe_load(path.read_text()) or {}) if path.exists() else {}
        assert not found, (
            f"roles/{role}/defaults/main.yml reads other names: {found}; give the role an input of its own and set it "
            "from the other role's in playbooks/group_vars/all.yml (lookup('role_var', ...))"
        )


def test_the_check_sees_another_roles_name_in_a_default() -> None:
    defaults = {"kafka_a": "{{ kafka_b ~ inventory_hostname }}", "kafka_c": "{{ footprint_x | default(1) }}",
                "kafka_d": ["{{ lookup('ansible.builtin.password', java_home) }}"], "kafka_e": 3}
    assert foreign_names("kafka", defaults) == {"kafka_c": {"footprint_x"}, "kafka_d": {"java_home"}}
