"""Run a playbook of the project's roles on a made-up inventory, on the control node only: the
model tests render the roles' templates and run their checks without a host."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def run_play(tmp_path: Path, playbook: str, inventory: dict[str, Any], roles: Path = ROOT / "roles",
             group_vars: Path = ROOT / "playbooks" / "group_vars") -> subprocess.CompletedProcess[str]:
    """`playbook` (text) against `inventory` in tmp_path, with the project's group_vars beside it.
    The play gets `out` (tmp_path/out, created) and `roles_dir` as extra vars."""
    (tmp_path / "out").mkdir(exist_ok=True)
    (tmp_path / "group_vars").symlink_to(group_vars)
    (tmp_path / "play.yml").write_text(playbook)
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_ROLES_PATH=str(roles))
    return subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp_path / "hosts.yml"),
         str(tmp_path / "play.yml"), "-e", f"out={tmp_path / 'out'}", "-e", f"roles_dir={roles}"],
        text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT, env=env, timeout=300,
    )
