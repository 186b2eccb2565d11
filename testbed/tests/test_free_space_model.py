"""The free-space preflight of site.yml and upgrade.yml (playbooks/tasks/free_space.yml), without
a host: run locally on made-up inventories (with the playbooks' group_vars, where the directories
each host holds are wired), so the disk is this machine's and the thresholds are set from it.
All cases in one run (local_play.run_cases).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
from local_play import assert_failed_with, run_cases

ROOT = Path(__file__).resolve().parents[2]

PREFLIGHT = f"""
- name: The preflight of site.yml (nothing changes)
  hosts: footprint
  gather_facts: false
  become: false
  tasks:
    - name: Check the free space where each host keeps its data
      ansible.builtin.import_tasks: {ROOT}/playbooks/tasks/free_space.yml
    - name: Hand what was checked to the test
      ansible.builtin.set_fact:
        rendered:
          dirs: "{{{{ __preflight_data_dirs | join('\\n') }}}}"
"""


def inventory(groups: list[str], **vars_: Any) -> dict[str, Any]:
    return {"all": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, **vars_},
        "children": {"footprint": {"hosts": {"h1": {}}, "children": {g: {"hosts": {"h1": {}}} for g in groups}}},
    }}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("free-space")
    st = os.statvfs(tmp)
    avail = st.f_bavail * st.f_frsize
    absent = str(tmp / "absent" / "kafka" / "data")
    cases = {
        "kafka-host": inventory(["kafka"], kafka_log_dirs=[absent, str(tmp)], kafka_data_dir="/nonexistent/kafka",
                                footprint_min_free_bytes=0, footprint_min_free_percent=0),
        "stores": inventory(["postgresql", "clickhouse"], footprint_min_free_bytes=0, footprint_min_free_percent=0),
        # more than this machine has free (by far, in case files come and go meanwhile)
        "bytes": inventory(["kafka"], kafka_log_dirs=[absent], footprint_min_free_bytes=avail * 4,
                           footprint_min_free_percent=0),
        "percent": inventory([], footprint_min_free_bytes=0, footprint_min_free_percent=100),
    }
    failed = run_cases(tmp, PREFLIGHT, cases, {})
    dirs = {case: (tmp / "out" / f"{case}.h1.dirs").read_text().splitlines()
            for case in cases if (tmp / "out" / f"{case}.h1.dirs").exists()}
    return {"failed": failed, "dirs": dirs, "absent": absent, "tmp": str(tmp), "avail": avail}


def test_each_host_checks_the_data_it_holds(run: dict[str, Any]) -> None:
    assert run["failed"]["kafka-host"] == "" and run["failed"]["stores"] == ""
    assert run["dirs"]["kafka-host"] == [run["absent"], run["tmp"], "/nonexistent/kafka", "/var/lib"]
    assert run["dirs"]["stores"] == ["/var/lib/clickhouse", "/var/lib/postgresql", "/var/lib"]


def test_too_little_free_space_stops_with_the_path_and_the_numbers(run: dict[str, Any]) -> None:
    # the absent log dir is measured at its nearest existing parent, on this machine's disk
    assert_failed_with(run["failed"], "bytes", f"{run['absent']}, /var/lib/kafka, /var/lib are on /",
                       f"the preflight wants at least {run['avail'] * 4} bytes", "footprint_min_free_bytes",
                       "Nothing was changed", "a mount of its own")
    assert_failed_with(run["failed"], "percent", "/var/lib is on /", "and 100 % free")
