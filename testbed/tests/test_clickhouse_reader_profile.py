"""The ClickHouse reader's profile: the app's query limits, held by the server too (issue 28, item 2).

The app reads ClickHouse as the reader user and sends its limits with each query
(footprint.sqlapi.limits, from FOOTPRINT_QUERY_MAX_*, which the footprint role renders from
footprint_query_*). The clickhouse role gives the reader a profile of its own with the same values
as caps (users.d/footprint-users.xml, wired in playbooks/group_vars/all.yml). Without a host:
- the roles' own templates rendered for a made-up inventory (the app's env file on the app hosts,
  users.d on the ClickHouse hosts): the reader, and only the reader, has the profile; its values
  and caps are what the app, reading the env file the same inventory gave it, sends; they follow
  when the inventory changes footprint_query_* (the largest of several app hosts); constraints
  cap every limit, keep 0 (no limit) out and pin the hardening;
- bad input is refused before anything changes, naming the variable;
- the rendered users.d served by the test bed's stand-in (the real ClickHouse 26.9 engine, which
  applies users.d profiles and constraints as clickhouse-server does): a reader session that sends
  nothing gets the limits, a client cannot raise or lift them, the app's own per-query settings
  (readonly=1 and the same or lower limits) pass, the app's client connects under them (it reads
  system.settings on connecting: the floors), owner and writer are not limited.
Not shown here: the LTS versions the role pins on real servers (README "The reader's profile").
"""

from __future__ import annotations

import os
import re
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest
import yaml
from local_play import assert_failed_with, refused_fixture, run_play

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "testbed" / "clickhouse-standin"))
sys.path.insert(0, str(ROOT / "app" / "src"))  # this checkout's app

from chstandin import StandIn  # noqa: E402
from footprint import sqlapi  # noqa: E402
from footprint.settings import Settings  # noqa: E402

RENDER = """
- name: Render the app's env file (app hosts) and users.d (ClickHouse hosts); nothing on any host changes
  hosts: all
  gather_facts: false  # run_play gives every host this machine's facts first
  become: false
  roles:
    - {role: clickhouse, tags: [never]}
    - {role: footprint, tags: [never]}
  tasks:
    - name: Load the roles' internals
      ansible.builtin.include_vars: "{{ roles_dir }}/{{ item }}"
      loop: [clickhouse/vars/main.yml, clickhouse/vars/Debian.yml, footprint/vars/main.yml, footprint/vars/Debian.yml]
    - name: Render them (on the control node)
      ansible.builtin.set_fact:
        rendered: >-
          {{ ({'footprint.env': lookup('ansible.builtin.template', env_template)}
              if inventory_hostname in groups.get('app', []) else {})
             | combine({'footprint-users.xml': lookup('ansible.builtin.template', users_template)}
                       if inventory_hostname in groups.get('clickhouse', []) else {}) }}
      vars:
        ansible_managed: managed
        env_template: "{{ roles_dir }}/footprint/templates/footprint.env.j2"
        users_template: "{{ roles_dir }}/clickhouse/templates/users.d/footprint-users.xml.j2"
"""

# The roles' input checks, as a deploy runs them first (clickhouse: tasks/assert.yml; footprint:
# tasks/validate.yml).
CHECK = """
- name: The clickhouse role's checks
  hosts: clickhouse
  gather_facts: false
  become: false
  roles:
    - {role: clickhouse, tags: [never]}
  tasks:
    - name: Check the inputs
      ansible.builtin.include_role:
        name: clickhouse
        tasks_from: assert.yml

- name: The footprint role's checks
  hosts: app
  gather_facts: false
  become: false
  roles:
    - {role: footprint, tags: [never]}
  tasks:
    - name: Check the inputs
      ansible.builtin.include_role:
        name: footprint
        tasks_from: validate.yml
"""

FACTS = ["min"]
FIXED = {"clickhouse_owner_password": "owner-password-for-the-render",
         "clickhouse_writer_password": "writer-password-for-the-render",
         "clickhouse_reader_password": "reader-password-for-the-render"}
LIMITS = ("max_execution_time", "max_result_rows", "max_result_bytes")
HARDENING = {"result_overflow_mode": "throw", "allow_ddl": "0", "allow_introspection_functions": "0"}


def inventory(app: dict[str, dict[str, Any]], clickhouse: dict[str, dict[str, Any]],
              app_vars: dict[str, Any] | None = None) -> dict[str, Any]:
    """Made-up hosts (all of them this machine); a host may be in both groups."""
    hosts = {h: {"ansible_host": f"10.77.0.{90 + n}"} for n, h in enumerate(dict.fromkeys([*app, *clickhouse]))}
    for group in (app, clickhouse):
        for h, hv in group.items():
            hosts[h].update(hv)
    first = next(iter(app))
    return {"all": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                 "footprint_app_source": str(ROOT / "app"), **FIXED},
        "children": {"footprint": {"hosts": hosts, "children": {
            "app": {"hosts": {h: {} for h in app}, "vars": app_vars or {}},
            "clickhouse": {"hosts": {h: {} for h in clickhouse}},
            "kafka": {"hosts": {first: {}}}, "postgresql": {"hosts": {first: {}}},
        }}},
    }}


def app_settings(env_file: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The app's settings as its units get them from the rendered env file (systemd EnvironmentFile)."""
    for name in [n for n in os.environ if n.startswith("FOOTPRINT_")]:
        monkeypatch.delenv(name)
    for line in env_file.read_text().splitlines():
        m = re.fullmatch(r"(FOOTPRINT_[A-Z0-9_]+)='(.*)'", line)
        if m:
            monkeypatch.setenv(m.group(1), m.group(2))
    return Settings()


def profile_of(users: ET.Element, user: str) -> ET.Element:
    name = users.findtext(f"users/{user}/profile")
    assert name, f"{user} has no profile"
    profile = users.find(f"profiles/{name}")
    assert profile is not None, f"{user}'s profile {name} is not defined"
    return profile


def effective(users: ET.Element, profile: ET.Element) -> dict[str, str]:
    """A profile's settings with those it inherits (<profile>parent</profile>), as ClickHouse applies them."""
    values: dict[str, str] = {}
    for parent in profile.findall("profile"):
        parent_el = users.find(f"profiles/{parent.text}")
        assert parent_el is not None, f"inherited profile {parent.text} is not defined"
        values |= effective(users, parent_el)
    return values | {e.tag: (e.text or "").strip() for e in profile if e.tag not in ("profile", "constraints")}


def caps(profile: ET.Element) -> dict[str, dict[str, Any]]:
    """Each constrained setting -> {"min": text, "max": text, "const": bool}."""
    return {c.tag: {"min": c.findtext("min"), "max": c.findtext("max"), "const": c.find("const") is not None}
            for c in profile.findall("constraints/*")}


def check_reader_profile(users: ET.Element, sent: dict[str, Any], memory: int) -> None:
    """The reader's profile holds what the app sends (`sent`, sqlapi.limits) and caps it; owner and writer keep
    `footprint`, which has none of it."""
    reader = profile_of(users, "footprint_reader")
    values, constraints = effective(users, reader), caps(reader)
    for name in LIMITS:
        assert name in values and name in constraints, f"the reader's profile has no {name} or no cap on it"
        assert float(values[name]) == float(sent[name]), (name, values[name], sent[name])
        assert float(constraints[name]["max"]) == float(sent[name]), (name, constraints[name])
        assert constraints[name]["min"] is not None and float(constraints[name]["min"]) > 0, (name, "0 would lift it")
    assert sent["result_overflow_mode"] == "throw"
    for name, value in HARDENING.items():
        assert values[name] == value, name
        assert constraints[name]["const"], name
    assert int(values["max_memory_usage"]) == memory  # inherited from footprint
    if memory:
        assert int(constraints["max_memory_usage"]["max"]) == memory
        assert int(constraints["max_memory_usage"]["min"]) > 0
    else:
        assert "max_memory_usage" not in constraints  # no per-query limit: nothing to cap
    assert "readonly" not in values  # a profile's readonly=1 or 2 would refuse the app's own settings
    for user in ("footprint_owner", "footprint_writer"):
        assert users.findtext(f"users/{user}/profile") == "footprint", user
        assert effective(users, profile_of(users, user)) == {"max_memory_usage": str(memory)}, user
        assert profile_of(users, user).find("constraints") is None, user


@pytest.fixture(scope="module")
def defaults_render(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One host in every group, nothing set: the roles' defaults and the wiring's fallbacks."""
    tmp = tmp_path_factory.mktemp("defaults")
    res = run_play(tmp, RENDER, inventory({"h1": {}}, {"h1": {}}), facts=FACTS)
    assert res.returncode == 0, res.stdout[-3000:]
    return tmp / "out"


def test_the_reader_alone_gets_the_app_limits_as_caps(defaults_render: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = app_settings(defaults_render / "h1.footprint.env", monkeypatch)
    users = ET.parse(defaults_render / "h1.footprint-users.xml").getroot()
    check_reader_profile(users, sqlapi.limits(settings), memory=2147483648)
    # one definition: the app's own defaults, the footprint role's and the clickhouse role's agree
    app_defaults = Settings.model_fields
    fp = yaml.safe_load((ROOT / "roles/footprint/defaults/main.yml").read_text())
    ch = yaml.safe_load((ROOT / "roles/clickhouse/defaults/main.yml").read_text())
    for suffix in ("execution_seconds", "result_rows", "result_bytes"):
        assert fp[f"footprint_query_max_{suffix}"] == app_defaults[f"query_max_{suffix}"].default, suffix
        assert ch[f"clickhouse_reader_max_{suffix}"] == fp[f"footprint_query_max_{suffix}"], suffix


def test_the_profile_follows_the_app_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two app hosts (the group sets lower limits, one host raises the rows) and a ClickHouse host of its
    own without a per-query memory limit: the caps are the largest the app hosts send."""
    inv = inventory({"a1": {}, "a2": {"footprint_query_max_result_rows": 30000}},
                    {"c1": {"clickhouse_max_query_memory_usage": 0}},
                    app_vars={"footprint_query_max_execution_seconds": 2.5, "footprint_query_max_result_rows": 20000,
                              "footprint_query_max_result_bytes": 2097152})
    res = run_play(tmp_path, RENDER, inv, facts=FACTS)
    assert res.returncode == 0, res.stdout[-3000:]
    out = tmp_path / "out"
    sent = {h: sqlapi.limits(app_settings(out / f"{h}.footprint.env", monkeypatch)) for h in ("a1", "a2")}
    assert [sent[h]["max_result_rows"] for h in ("a1", "a2")] == [20000, 30000]
    assert {sent[h]["max_execution_time"] for h in sent} == {2.5}
    assert {sent[h]["max_result_bytes"] for h in sent} == {2097152}
    users = ET.parse(out / "c1.footprint-users.xml").getroot()
    check_reader_profile(users, sent["a2"], memory=0)  # a2 sends the most rows
    reader = caps(profile_of(users, "footprint_reader"))
    assert all(sent["a1"][n] <= float(reader[n]["max"]) for n in LIMITS)  # a1's lower limits pass the caps


def refused_cases() -> dict[str, dict[str, Any]]:
    return {
        "ch-rows-zero": inventory({"a": {}}, {"c": {"clickhouse_reader_max_result_rows": 0}}),
        "app-seconds-zero": inventory({"a": {"footprint_query_max_execution_seconds": 0}}, {"c": {}}),
        "app-rows-500": inventory({"a": {"footprint_query_max_result_rows": 500}}, {"c": {}}),
        "app-extra-env": inventory({"a": {"footprint_extra_env": {"QUERY_MAX_RESULT_ROWS": "99999"}}}, {"c": {}}),
        "low-cap": inventory({"a": {}}, {"c": {"clickhouse_reader_max_result_bytes": 2097152}},
                             app_vars={"footprint_query_max_result_bytes": 4194304}),
    }


# Each case's hosts fail on their own (one run for all); the app hosts' cap check reads every
# ClickHouse host of the run, so only the cases whose app host fails earlier are free of the others'.
refused = refused_fixture(CHECK, refused_cases, {}, FACTS)


def test_limits_the_app_cannot_connect_under_are_refused(refused: dict[str, str]) -> None:
    """0 is no limit; under the floors the reader's client cannot even connect (it reads system.settings)."""
    assert_failed_with(refused, "ch-rows-zero", "clickhouse_reader_max_result_rows a whole number from 10000",
                       "(got 10.0, 0, 16777216)")
    assert_failed_with(refused, "app-seconds-zero", "footprint_query_max_execution_seconds must be 1-600 seconds",
                       "(got 0, 10000, 16777216)")
    assert_failed_with(refused, "app-rows-500", "footprint_query_max_result_rows a whole number from 10000",
                       "(got 10, 500, 16777216)")


def test_the_limits_are_set_in_one_place(refused: dict[str, str]) -> None:
    assert_failed_with(refused, "app-extra-env", "not in footprint_extra_env")
    assert_failed_with(refused, "low-cap", "The ClickHouse reader profile would refuse this app host",
                       "low-cap.c: clickhouse_reader_max_result_bytes=2097152")


@pytest.fixture(scope="module")
def floors_render(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One host in every group, the lowest limits the roles accept."""
    tmp = tmp_path_factory.mktemp("floors")
    floors = {"footprint_query_max_execution_seconds": 1, "footprint_query_max_result_rows": 10000,
              "footprint_query_max_result_bytes": 1048576}
    res = run_play(tmp, RENDER, inventory({"h1": {}}, {"h1": {}}, app_vars=floors), facts=FACTS)
    assert res.returncode == 0, res.stdout[-3000:]
    return tmp / "out"


@pytest.fixture(scope="module")
def served(floors_render: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    """The role's users.d, rendered with the floors, on the stand-in (its passwords: FIXED)."""
    users = (floors_render / "h1.footprint-users.xml").read_text()
    with StandIn(tmp_path_factory.mktemp("ch"), extra_users={"footprint-users.xml": users},
                 databases=("footprint",)) as ch:
        yield ch


def client(ch: StandIn, role: str) -> Any:
    return clickhouse_connect.get_client(host=ch.host, port=ch.http_port, username=f"footprint_{role}",
                                         password=FIXED[f"clickhouse_{role}_password"], database="footprint",
                                         autogenerate_session_id=False)


def refusal(c: Any, sql: str, settings: dict[str, Any] | None = None) -> str:
    with pytest.raises(Exception) as err:  # the server's error, or clickhouse-connect's own refusal
        c.query(sql, settings=settings)
    return str(err.value)


def test_the_engine_holds_the_reader_to_the_limits(served: StandIn, floors_render: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    sent = sqlapi.limits(app_settings(floors_render / "h1.footprint.env", monkeypatch))
    assert (sent["max_execution_time"], sent["max_result_rows"], sent["max_result_bytes"]) == (1, 10000, 1048576)
    # making the client already ran its connect query (system.settings) under the profile: the floors hold
    reader, writer = client(served, "reader"), client(served, "writer")
    rows = sent["max_result_rows"]
    # a session that sends nothing has the limits
    assert "TOO_MANY_ROWS_OR_BYTES" in refusal(reader, f"SELECT number FROM numbers({rows + 1})")
    assert reader.query(f"SELECT count() FROM (SELECT number FROM numbers({rows + 1}))").result_rows == [(rows + 1,)]
    # the app's own settings pass: readonly=1, the same limits, or lower ones (the app's EXPLAIN sends two)
    assert reader.query("SELECT getSetting('readonly')", settings=sent).result_rows == [(1,)]
    assert reader.query("SELECT 1", settings={**sent, "max_result_rows": 5, "max_execution_time": 0.5}).result_rows == [(1,)]
    explain = {"readonly": 1, "max_execution_time": sent["max_execution_time"]}
    assert reader.query("SELECT 1", settings=explain).result_rows == [(1,)]
    # the same value of a const setting is not a change: ClickHouse does not check it
    assert reader.query("SELECT 1 SETTINGS result_overflow_mode = 'throw', allow_ddl = 0").result_rows == [(1,)]
    # raising a limit, lifting it with 0, or changing a const setting is refused (code 452)
    for name in LIMITS:
        assert "shouldn't be greater than" in refusal(reader, f"SELECT 1 SETTINGS {name} = {sent[name] * 2}"), name
        assert "shouldn't be less than" in refusal(reader, f"SELECT 1 SETTINGS {name} = 0"), name
    assert "shouldn't be greater than" in refusal(reader, "SELECT 1 SETTINGS max_memory_usage = 4294967296")
    for sql in ("SELECT 1 SETTINGS result_overflow_mode = 'break'", "SELECT 1 SETTINGS allow_introspection_functions = 1"):
        assert "should not be changed" in refusal(reader, sql), sql
    # (allow_ddl=0 refuses its own change before the const is looked at)
    assert "Cannot modify 'allow_ddl'" in refusal(reader, "SELECT 1 SETTINGS allow_ddl = 1")
    # owner and writer are not held to the reader's limits
    assert len(writer.query(f"SELECT number FROM numbers({rows + 1})").result_rows) == rows + 1
    assert writer.query("SELECT 1", settings={"max_result_rows": rows * 2, "result_overflow_mode": "break"}).result_rows == [(1,)]
