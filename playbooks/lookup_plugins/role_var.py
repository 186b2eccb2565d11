"""The lookup the cross-role wiring (playbooks/group_vars/all.yml) reads a role's variable with."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from ansible.errors import AnsibleLookupError, AnsibleUndefinedVariable
from ansible.plugins.lookup import LookupBase
from ansible.template import trust_as_template

DOCUMENTATION = r"""
name: role_var
short_description: A role's variable as a deploy sees it, on this host or another
description:
  - Returns the variable as the host sees it (the inventory, the vault, a play's vars, a loaded
    role's defaults) and, where nothing defines it (the role that owns it is not in this play, or
    the host is another one), that role's default from its C(defaults/main.yml), rendered with the
    host's variables. So the wiring between roles never repeats a role's default.
  - The owning role is the one whose name prefixes the variable (C(kafka_port) is the kafka role's).
options:
  _terms:
    description: The variable names.
    required: true
  host:
    description: The inventory host whose view is read (default the current one).
    type: str
  hosts:
    description: Several hosts; the lookup returns the variable as each of them sees it, in order.
    type: list
    elements: str
"""

EXAMPLES = r"""
footprint_pg_port: "{{ lookup('role_var', 'postgresql_port', host=groups['postgresql'][0]) }}"
cap: "{{ query('role_var', 'footprint_query_max_result_rows', hosts=groups['app']) | map('int') | max }}"
"""

RETURN = r"""
_raw:
  description: The value of each variable.
  type: list
"""


ROLES = Path(__file__).resolve().parents[2] / "roles"


@cache
def role_defaults(role: str) -> dict[str, Any]:
    """A role's defaults/main.yml as written, its strings trusted as templates (read once per run)."""
    path = ROLES / role / "defaults" / "main.yml"
    return trusted(yaml.safe_load(path.read_text(encoding="utf-8")) or {}) if path.is_file() else {}


@cache
def role_names() -> tuple[str, ...]:
    return tuple(p.name for p in ROLES.iterdir() if (p / "tasks").is_dir())


def owner(name: str) -> str:
    """The role whose name prefixes the variable (the longest that does)."""
    roles = [role for role in role_names() if name.startswith(role + "_")]
    if not roles:
        raise AnsibleLookupError(f"role_var: no role in {ROLES} owns {name!r} (a role's variables start with its name)")
    return max(roles, key=len)


def trusted(value: Any) -> Any:
    """A default as written, its strings trusted as templates (they come from the project's roles)."""
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, list):
        return [trusted(v) for v in value]
    if isinstance(value, dict):
        return {k: trusted(v) for k, v in value.items()}
    return value


class LookupModule(LookupBase):
    def run(self, terms: list[str], variables: Mapping[str, Any] | None = None, **kwargs: Any) -> list[Any]:
        self.set_options(var_options=variables, direct=kwargs)
        variables = variables or {}
        hosts, host = self.get_option("hosts"), self.get_option("host")
        # each host's variables as written (hostvars would render each one on access, outside
        # this host's context); rendered below in the context of the host they belong to
        if hosts is None and not host:
            views = [variables]
        else:
            if "hostvars" not in variables:  # rendering another host's variable through hostvars[h][name]
                raise AnsibleUndefinedVariable(
                    "role_var: no hostvars where this is rendered (a variable read as hostvars[host][name]); "
                    "read it with lookup('role_var', name, host=host) instead")
            hostvars = variables["hostvars"]
            views = [{**hostvars.raw_get(h), "hostvars": hostvars} for h in (hosts if hosts is not None else [host])]
        return [self.value(name, view) for name in terms for view in views]

    def value(self, name: str, view: Mapping[str, Any]) -> Any:
        """The variable as a host's variables (`view`) have it, else its role's default, rendered there."""
        if name in view:
            return self._templar.copy_with_new_env(available_variables=view).template(view[name])
        role = owner(name)
        defaults = role_defaults(role)
        if name not in defaults:
            raise AnsibleLookupError(f"role_var: {name} is not set for the host and is no default of roles/{role}")
        # the role's other defaults too, where the host does not set them (as when the role runs there)
        context = {**defaults, **view}
        return self._templar.copy_with_new_env(available_variables=context).template(context[name])
