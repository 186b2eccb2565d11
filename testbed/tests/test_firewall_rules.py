"""The base role's ufw bookkeeping (roles/base/filter_plugins/base_ufw.py) and the wiring that
feeds it (playbooks/group_vars/all.yml), without a host.

The rules files are as ufw 0.36 on Debian 13 writes them (taken from a test host).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("base_ufw", ROOT / "roles/base/filter_plugins/base_ufw.py")
assert _spec and _spec.loader
ufw: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ufw)

PREFIX = "footprint:"


def tuple_line(port: int, src: str, comment: str | None, v6: bool = False, proto: str = "tcp") -> str:
    dst = "::/0" if v6 else "0.0.0.0/0"
    tail = f" comment={comment.encode().hex()}" if comment is not None else ""
    return f"### tuple ### allow {proto} {port} {dst} any {src} in{tail}"


USER_RULES = "\n".join([
    "*filter",
    tuple_line(22, "0.0.0.0/0", "footprint: ssh"),
    "-A ufw-user-input -p tcp --dport 22 -j ACCEPT",
    tuple_line(9092, "10.77.0.0/24", "footprint: kafka clients"),
    tuple_line(8080, "0.0.0.0/0", None),  # added by hand: never the kit's
    tuple_line(9100, "0.0.0.0/0", "monitoring"),  # someone else's comment
    "COMMIT",
])
USER6_RULES = "\n".join([tuple_line(22, "::/0", "footprint: ssh", v6=True)])


def test_kit_rules_are_the_commented_ones_once_each() -> None:
    rules = ufw.base_ufw_kit_rules([USER_RULES, USER6_RULES], PREFIX)
    assert sorted((r["port"], r["proto"], r["from"]) for r in rules) == [
        ("22", "tcp", "any"), ("9092", "tcp", "10.77.0.0/24"),
    ]


def test_a_moved_port_is_stale_and_nothing_else() -> None:
    kit = ufw.base_ufw_kit_rules([USER_RULES, USER6_RULES], PREFIX)
    wanted = ufw.base_ufw_wanted(
        [{"port": 22, "proto": "tcp"}, {"port": "9094", "from": "10.77.0.0/24", "comment": "kafka clients"}], PREFIX)
    assert [(r["port"], r["from"]) for r in ufw.base_ufw_stale(kit, wanted)] == [("9092", "10.77.0.0/24")]


def test_only_rules_ufw_lacks_are_added_and_a_hand_made_one_is_not_the_kits() -> None:
    kit = ufw.base_ufw_kit_rules([USER_RULES, USER6_RULES], PREFIX)
    wanted = ufw.base_ufw_wanted([{"port": 22}, {"port": 9092, "from": "10.77.0.0/24"}, {"port": 8080},
                                  {"port": 9092, "from": "10.77.0.5"}], PREFIX)
    missing = [(r["port"], r["from"]) for r in ufw.base_ufw_missing(wanted, kit)]
    assert missing == [("8080", "any"), ("9092", "10.77.0.5")]
    assert ufw.base_ufw_missing(wanted, []) == wanted  # a host without rules gets them all


def test_a_rule_for_any_source_missing_from_one_family_is_added_again() -> None:
    wanted = ufw.base_ufw_wanted([{"port": 22}], PREFIX)
    v4_only = ufw.base_ufw_kit_rules([USER_RULES], PREFIX)  # user6.rules lost its ssh rule
    assert [r["port"] for r in ufw.base_ufw_missing(wanted, v4_only)] == ["22"]
    v6_only = ufw.base_ufw_kit_rules([USER6_RULES], PREFIX)
    assert [r["port"] for r in ufw.base_ufw_missing(wanted, v6_only)] == ["22"]
    both = ufw.base_ufw_kit_rules([USER_RULES, USER6_RULES], PREFIX)
    assert ufw.base_ufw_missing(wanted, both) == []


def test_a_narrowed_source_is_stale() -> None:
    kit = ufw.base_ufw_kit_rules([USER_RULES], PREFIX)
    wanted = ufw.base_ufw_wanted([{"port": 22}, {"port": 9092, "from": "10.77.0.5"}], PREFIX)
    assert [(r["port"], r["from"]) for r in ufw.base_ufw_stale(kit, wanted)] == [("9092", "10.77.0.0/24")]


def test_wanted_rules_are_normalised_and_commented() -> None:
    wanted = ufw.base_ufw_wanted(
        [{"port": 22, "proto": "tcp", "comment": "ssh"}, {"port": "22"}, {"port": 5432, "from": "any", "proto": "any"}],
        PREFIX)
    assert wanted == [
        {"port": "22", "proto": "tcp", "from": "any", "comment": "footprint: ssh"},
        {"port": "5432", "proto": "any", "from": "any", "comment": "footprint: port 5432/any"},
    ]


def test_the_firewall_wiring_reads_each_port_with_its_roles_default() -> None:
    """group_vars/all.yml reads each component's port variable; where a play does not load that
    role (the base role runs first), the role_var lookup gives the role's own default (no copy of it:
    test_wiring_model.py fails on one)."""
    wiring = (ROOT / "playbooks/group_vars/all.yml").read_text()
    read = set(re.findall(r"lookup\('role_var', '((?:kafka|clickhouse|postgresql|footprint|monitoring)_\w*port)'\)", wiring))
    assert read >= {"kafka_port", "clickhouse_http_port", "clickhouse_tcp_port", "postgresql_port",
                    "footprint_collector_port", "kafka_controller_port", "monitoring_node_exporter_port"}
    for name in read:
        role = name.split("_")[0]
        assert name in yaml.safe_load((ROOT / "roles" / role / "defaults/main.yml").read_text()), name


def test_a_bad_port_is_named_by_the_variable_it_comes_from() -> None:
    items = [{"port": 22}, {"port": 70000, "variable": "kafka_port"}, {"port": "x"}, {"port": 0}]
    assert ufw.base_ufw_bad_ports(items, "base_firewall_allowed_ports") == [
        "kafka_port (70000)", "base_firewall_allowed_ports (x)", "base_firewall_allowed_ports (0)",
    ]
