"""Run a playbook of the project's roles on a made-up inventory, on the control node only: the
model tests render the roles' templates and run their checks without a host. Each run costs
seconds (Ansible's start, facts, the roles' argument checks), so a test module runs the
inventories its role must refuse in one run (run_cases), each case its own cluster there."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

# Every host of a made-up inventory is this machine (connection local). Its facts are gathered
# once, by this play put before the playbook: the facts a run_once task returns are set on every
# host of the play, instead of one setup run per host.
GATHER_ONCE = """
- name: Gather this machine's facts once, for every made-up host (all of them run here)
  hosts: all
  gather_facts: false
  become: false
  tasks:
    - name: Gather the facts (run_once sets them on every host)
      ansible.builtin.setup:
        gather_subset: {subset}
      run_once: true
"""

# A module run (stat, copy) costs a Python start per file and host; a template rendered with the
# template lookup in a set_fact costs none. So the plays render into each host's `rendered` fact
# and this play, put after the playbook, writes them all with one module run.
WRITE_RENDERED = """
- name: Write what the hosts rendered on the control node (their `rendered` facts) into one file
  hosts: localhost
  gather_facts: false
  become: false
  tasks:
    - name: Write the rendered files of every host
      ansible.builtin.copy:
        content: "{{ dict(groups['all'] | zip(groups['all'] | map('extract', hostvars)
                                                | map(attribute='rendered', default={}))) | to_json }}"
        dest: "{{ out }}/rendered.json"
        mode: "0644"
"""


def run_play(tmp_path: Path, playbook: str, inventory: dict[str, Any], roles: Path = ROOT / "roles",
             group_vars: Path = ROOT / "playbooks" / "group_vars", *,
             facts: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    """`playbook` (text) against `inventory` in tmp_path, with the project's group_vars beside it.
    The play gets `out` (tmp_path/out, created) and `roles_dir` as extra vars. With `facts` (a
    gather_subset), every host has this machine's facts first (GATHER_ONCE; the playbook's plays
    then gather none). What a host sets in its `rendered` fact ({name: text}, e.g. from the
    template lookup) lands in out/<host>.<name>, when the run reaches its end with a host left."""
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    (tmp_path / "group_vars").symlink_to(group_vars)
    gather = GATHER_ONCE.format(subset=json.dumps(list(facts))) if facts else ""
    (tmp_path / "play.yml").write_text(gather + playbook + WRITE_RENDERED)
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_ROLES_PATH=str(roles))
    res = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp_path / "hosts.yml"),
         str(tmp_path / "play.yml"), "-e", f"out={out}", "-e", f"roles_dir={roles}"],
        text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT, env=env, timeout=300,
    )
    rendered = out / "rendered.json"
    if rendered.exists():
        for host, files in json.loads(rendered.read_text(encoding="utf-8")).items():
            for name, text in files.items():
                (out / f"{host}.{name}").write_text(text, encoding="utf-8")
        rendered.unlink()
    return res


def batch(cases: Mapping[str, dict[str, Any]], group_vars: Mapping[str, str]) -> dict[str, Any]:
    """Several made-up inventories as one, each case its own cluster: case c's host h becomes
    `c.h`, its group g becomes `g_c` (a child of g, so that a play on g reaches every case) and
    its inventory-wide vars those of its group `all_c`, with each variable of `group_vars`
    (variable: group, e.g. kafka_cluster_group: kafka) naming the case's own group: a role that
    reads its cluster from such variables sees the hosts of the case only."""
    children: dict[str, Any] = {}
    parents: dict[str, dict[str, Any]] = {}

    def rename(group: dict[str, Any], case: str, suffix: str) -> dict[str, Any]:
        renamed: dict[str, Any] = {key: group[key] for key in ("vars",) if key in group}
        if "hosts" in group:
            renamed["hosts"] = {f"{case}.{host}": hvars for host, hvars in group["hosts"].items()}
        if "children" in group:
            renamed["children"] = {f"{name}_{suffix}": rename(child, case, suffix)
                                   for name, child in group["children"].items()}
            for name in group["children"]:
                parents.setdefault(name, {"children": {}})["children"][f"{name}_{suffix}"] = {}
        return renamed

    for case, inventory in cases.items():
        assert "." not in case, f"{case}: the case names its hosts ({case}.<host>), so no dot"
        suffix = case.replace("-", "_")
        top = rename(inventory["all"], case, suffix)
        top["vars"] = {**top.get("vars", {}), **{var: f"{group}_{suffix}" for var, group in group_vars.items()}}
        children[f"all_{suffix}"] = top
    return {"all": {"children": {**children, **parents}}}


def failures(stdout: str) -> dict[str, str]:
    """What each host failed with in a run's output: its `fatal: [host]: FAILED! =>` line with the
    indented lines below it, and the `[ERROR]:` report printed just before it (the message once
    more, unquoted, and where the task is), white space folded."""
    found: dict[str, list[str]] = {}
    report: list[str] = []  # an [ERROR] report, until the fatal line of its host
    host: str | None = None  # the host whose fatal lines these are
    for line in stdout.splitlines():
        start = re.match(r"(?:fatal|failed): \[([^\]]+)\]", line)
        if start:
            host = start.group(1)
            found.setdefault(host, []).extend([*report, line])
            report = []
        elif host is not None and (not line.strip() or line[0].isspace()):
            found[host].append(line)
        elif line.startswith("[ERROR]:") or (report and not line.startswith(("TASK [", "PLAY "))):
            host = None
            report.append(line)
        else:
            host, report = None, []
    return {h: " ".join(" ".join(lines).split()) for h, lines in found.items()}


def run_cases(tmp_path: Path, playbook: str, cases: Mapping[str, dict[str, Any]], group_vars: Mapping[str, str],
              facts: Sequence[str] = ()) -> dict[str, str]:
    """`playbook` on every case (a made-up inventory) at once, each its own cluster (batch): what
    the hosts of each case failed with ('' where none did). One run instead of one per case; a
    failing host stops only itself, so each case is checked as if it ran alone. (Ansible prints
    an [ERROR] report once per text: a case that failed word for word like another has only its
    fatal lines, where the message is YAML-quoted.) The run's output: tmp_path/output.txt."""
    res = run_play(tmp_path, playbook, batch(cases, group_vars), facts=facts)
    failed = failures(res.stdout)
    (tmp_path / "output.txt").write_text(res.stdout)
    return {case: " ".join(text for host, text in failed.items() if host.split(".", 1)[0] == case) for case in cases}


def refused_fixture(playbook: str, cases: Callable[[], Mapping[str, dict[str, Any]]], group_vars: Mapping[str, str],
                    facts: Sequence[str] = ()) -> Callable[..., dict[str, str]]:
    """The module-scoped fixture `refused`: run_cases on `cases()` once for the test module; each
    test reads what its own case failed with (assert_failed_with)."""
    def refused(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
        return run_cases(tmp_path_factory.mktemp("refused"), playbook, cases(), group_vars, facts)
    return pytest.fixture(scope="module", name="refused")(refused)


def assert_failed_with(failed: Mapping[str, str], case: str, *messages: str) -> None:
    """Hosts of `case` failed, and what they failed with says each of `messages`."""
    for message in messages:
        assert message in failed[case], failed[case][-3000:] or f"no host of {case} failed"
