"""The cross-role wiring of playbooks/group_vars/all.yml, without a host.

A store's port set for the store's own group reaches an app on another host (it used to keep
the default there, silently); the fallbacks equal the roles' defaults; and an app topic that the
kafka role does not keep fails the app's validation, naming the variables.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from local_play import run_play

ROOT = Path(__file__).resolve().parents[2]

RENDER = """
- name: Resolve the wiring as the app's hosts see it (nothing on any host changes)
  hosts: all
  gather_facts: false
  become: false
  tasks:
    - name: Resolve the wiring (on the control node)
      ansible.builtin.set_fact:
        rendered:
          json: "{{ {'pg_port': footprint_pg_port | int, 'ch_port': footprint_ch_port | int,
                     'bootstrap': footprint_kafka_bootstrap | trim} | to_json }}"

- name: Publish the kafka role's topics (its validation does this)
  hosts: kafka
  gather_facts: true
  gather_subset: [min, network]
  become: false
  roles:
    - {role: kafka, tags: [never]}
  tasks:
    - name: Set the topics this cluster keeps
      ansible.builtin.set_fact:
        kafka_declared_topics: "{{ kafka_topics | items2dict(key_name='name', value_name='partitions') }}"

- name: Validate the app against them
  hosts: app
  gather_facts: true
  gather_subset: [min]
  become: false
  roles:
    - {role: footprint, tags: [never]}
  tasks:
    - name: The footprint role's validation
      ansible.builtin.include_role:
        name: footprint
        tasks_from: validate.yml
"""


def run(tmp_path: Path, app_vars: dict[str, Any] | None = None, extra_app_hosts: int = 0,
        group_ports: bool = True) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inv: dict[str, Any] = {"all": {"vars": local, "children": {
        "app": {"hosts": {"app1": {"ansible_host": "10.77.0.81", "footprint_app_source": str(ROOT / "app"),
                                   **(app_vars or {})}}},
        "postgresql": {"hosts": {"pg1": {"ansible_host": "10.77.0.82"}}, "vars": {"postgresql_port": 6543}},
        "clickhouse": {"hosts": {"ch1": {"ansible_host": "10.77.0.83"}}, "vars": {"clickhouse_http_port": 8124}},
        "kafka": {"hosts": {"k1": {"ansible_host": "10.77.0.84"}}, "vars": {"kafka_port": 9094}},
    }}}
    if not group_ports:
        for group in ("postgresql", "clickhouse", "kafka"):
            inv["all"]["children"][group].pop("vars")
    for n in range(extra_app_hosts):
        inv["all"]["children"]["app"]["hosts"][f"app{n + 2}"] = {"footprint_app_source": str(ROOT / "app")}
    res = run_play(tmp_path, RENDER, inv)
    out = tmp_path / "out" / "app1.json"
    return res, json.loads(out.read_text()) if out.exists() else {}


def test_a_store_port_set_for_its_group_reaches_the_app_on_another_host(tmp_path: Path) -> None:
    res, wiring = run(tmp_path)
    assert res.returncode == 0, res.stdout[-3000:]
    assert wiring == {"pg_port": 6543, "ch_port": 8124, "bootstrap": "10.77.0.84:9094"}


def test_the_wiring_repeats_no_roles_default() -> None:
    """The wiring reads a role's variable with the role_var lookup, which falls back to the role's own
    default: a `<role variable> | default(<value>)` would be a second copy of it."""
    text = (ROOT / "playbooks" / "group_vars" / "all.yml").read_text()
    defaults: dict[str, Any] = {}
    for f in (ROOT / "roles").glob("*/defaults/main.yml"):
        defaults |= yaml.safe_load(f.read_text()) or {}
    found = re.findall(r"\b(\w+)'?\]? \| default\(([^()]+)\)", text)
    copies = [f"{name} | default({value})" for name, value in found if name in defaults]
    assert not copies, f"the wiring repeats role defaults (use lookup('role_var', name)): {copies}"
    assert "lookup('role_var', 'postgresql_port'" in text


def test_a_store_port_set_nowhere_is_the_roles_default_on_the_app(tmp_path: Path) -> None:
    """role_var's fallback: the store's group sets no port, the app gets the store role's default."""
    defaults = {role: yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())
                for role in ("postgresql", "clickhouse", "kafka")}
    res, wiring = run(tmp_path, group_ports=False)
    assert res.returncode == 0, res.stdout[-3000:]
    assert wiring == {"pg_port": defaults["postgresql"]["postgresql_port"],
                      "ch_port": defaults["clickhouse"]["clickhouse_http_port"],
                      "bootstrap": f"10.77.0.84:{defaults['kafka']['kafka_port']}"}


def test_more_app_hosts_than_partitions_is_warned(tmp_path: Path) -> None:
    res, _ = run(tmp_path, extra_app_hosts=2)
    assert res.returncode == 0, res.stdout[-3000:]
    flat = " ".join(res.stdout.split())
    assert "WARNING: 3 app hosts run a consumer each, but web-logs-topic has 1 partition(s): 2 consumer(s)" in flat


def test_an_app_topic_the_kafka_role_does_not_keep_fails_naming_the_variable(tmp_path: Path) -> None:
    res, _ = run(tmp_path, {"footprint_kafka_topic": "clicks"})
    assert res.returncode != 0
    flat = " ".join(res.stdout.split())
    assert "footprint_kafka_topic=clicks" in flat and "add them to kafka_topics" in flat, res.stdout[-3000:]


GUARD = f"""
- name: The wiring's preflight alone
  hosts: all
  gather_facts: false
  tasks:
    - name: Check the inventory
      ansible.builtin.import_tasks: {ROOT / "playbooks" / "tasks" / "wiring_guard.yml"}
"""


def run_guard(tmp_path: Path, files: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The guard against an inventory whose group_vars/all holds `files` (name: text)."""
    (tmp_path / "group_vars").symlink_to(ROOT / "playbooks" / "group_vars")  # the wiring beside the play
    (tmp_path / "play.yml").write_text(GUARD)
    inv = tmp_path / "inv"
    (inv / "group_vars" / "all").mkdir(parents=True)
    (inv / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": {"h1": {"ansible_connection": "local"}}}}))
    for name, text in files.items():
        (inv / "group_vars" / "all" / name).write_text(text)
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    return subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inv / "hosts.yml"),
                           str(tmp_path / "play.yml")], text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          cwd=ROOT, env=env, timeout=120)


def test_a_wired_variable_in_the_inventorys_group_vars_all_stops_the_play(tmp_path: Path) -> None:
    """It would be ignored (the wiring wins over that file): the preflight names it and its file, and
    reads past a !vault value."""
    res = run_guard(tmp_path, {"main.yml": "base_timezone: UTC\nkafka_secrets_dir: /srv/secrets\n",
                               "vault.yml": "footprint_pg_writer_password: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  3338\n"})
    assert res.returncode != 0, res.stdout[-2000:]
    assert f"kafka_secrets_dir ({tmp_path}/inv/group_vars/all/main.yml)" in res.stdout, res.stdout[-2000:]
    assert "footprint_pg_writer_password (" in res.stdout and "base_timezone (" not in res.stdout, res.stdout[-2000:]


def test_an_inventory_that_sets_only_role_inputs_passes_the_guard(tmp_path: Path) -> None:
    res = run_guard(tmp_path, {"main.yml": "base_timezone: UTC\nkafka_port: 9094\npostgresql_writer_password: x\n"})
    assert res.returncode == 0, res.stdout[-2000:]
