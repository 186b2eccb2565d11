"""The test bed's `module_bytecode` callback (tests/ansible_plugins/callback): a task's payload carries the bytecode
of every source in it, compiled by FOOTPRINT_MODULE_PYTHON, and runs the same wherever that bytecode fits or not.

Each case runs one real task (`ansible.builtin.stat`) on this machine with the payload kept
(ANSIBLE_KEEP_REMOTE_FILES) and reads the zip inside it.
"""

from __future__ import annotations

import base64
import io
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
HOST_PYTHON = "/usr/bin/python3"  # the task's interpreter here (Debian 12: 3.11, as the venv's)


def run_task(tmp_path: Path, module_python: str | None, interpreter: str = HOST_PYTHON) -> tuple[str, zipfile.ZipFile]:
    """One stat task on localhost with the callback enabled; its output and its payload's zip."""
    env = dict(os.environ, ANSIBLE_CALLBACK_PLUGINS=str(ROOT / "tests/ansible_plugins/callback"),
               ANSIBLE_CALLBACKS_ENABLED="module_bytecode", ANSIBLE_KEEP_REMOTE_FILES="1",
               ANSIBLE_REMOTE_TMP=str(tmp_path / "remote"), ANSIBLE_LOCAL_TEMP=str(tmp_path / "local"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_LOAD_CALLBACK_PLUGINS="1")  # (an ad-hoc run loads none without it)
    env.pop("FOOTPRINT_MODULE_PYTHON", None)
    if module_python:
        env["FOOTPRINT_MODULE_PYTHON"] = module_python
    res = subprocess.run([str(BIN / "ansible"), "localhost", "-c", "local", "-e", f"ansible_python_interpreter={interpreter}",
                          "-m", "ansible.builtin.stat", "-a", "path=/etc/hostname", "-vvv"],
                         env=env, text=True, capture_output=True, timeout=120)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "exists: true" in res.stdout  # the stat's result (ansible.cfg: YAML)
    [payload] = list((tmp_path / "remote").glob("ansible-tmp-*/AnsiballZ_stat.py"))
    data = re.search(r"zip_data='([^']*)'", payload.read_text())
    assert data, "no zip in the payload: this ansible-core builds its payloads otherwise"
    return res.stdout + res.stderr, zipfile.ZipFile(io.BytesIO(base64.b64decode(data[1])))


def test_every_source_of_the_payload_has_its_bytecode_and_the_task_runs(tmp_path: Path) -> None:
    output, payload = run_task(tmp_path, HOST_PYTHON)
    sources = {n for n in payload.namelist() if n.endswith(".py")}
    compiled = {n[:-1] for n in payload.namelist() if n.endswith(".pyc")}
    assert "ansible/modules/stat.py" in sources and "ansible/module_utils/basic.py" in sources
    assert compiled == sources
    assert "module_bytecode:" not in output  # no warning: installed and compiled
    magic = subprocess.run([HOST_PYTHON, "-c", "import importlib.util, sys; sys.stdout.buffer.write("
                            "importlib.util.MAGIC_NUMBER)"], capture_output=True, check=True).stdout
    assert payload.read("ansible/module_utils/basic.pyc")[:4] == magic


def test_without_the_variable_the_payload_is_as_ansible_builds_it(tmp_path: Path) -> None:
    _, payload = run_task(tmp_path, None)
    assert not [n for n in payload.namelist() if n.endswith(".pyc")]


def test_bytecode_of_another_python_version_falls_back_to_the_source(tmp_path: Path) -> None:
    """Bytecode whose magic number is not the host Python's (as another version's): the zip importer refuses it and
    compiles the source, and the task runs as before."""
    other = tmp_path / "other-python"
    other.write_text(f"#!{HOST_PYTHON}\nimport sys, importlib._bootstrap_external as be\n"
                     "be.MAGIC_NUMBER = bytes([0xff, 0x0f]) + b'\\r\\n'  # no Python's\nexec(sys.argv[2])\n")
    other.chmod(0o755)
    output, payload = run_task(tmp_path, str(other))
    assert payload.read("ansible/module_utils/basic.pyc")[:2] == bytes([0xff, 0x0f])
    assert "module_bytecode:" not in output
