"""ufw rules of the base role: the wanted list, and the rules the kit added earlier.

The kit marks every rule it adds with a comment (`<prefix> <purpose>`); ufw keeps it, hex
encoded, in the `### tuple ###` lines of /etc/ufw/user.rules and user6.rules. A marked rule
that is no longer wanted is one the kit opened before: the role deletes it.
"""

from __future__ import annotations

import re
from typing import Any

_TUPLE = re.compile(
    r"^### tuple ### (?P<action>\S+) (?P<proto>\S+) (?P<dport>\S+) (?P<dst>\S+) (?P<sport>\S+) (?P<src>\S+)"
    r" (?P<direction>\S+)(?: comment=(?P<comment>[0-9a-fA-F]*))?\s*$"
)
_ANY = ("any", "0.0.0.0/0", "::/0", "")


def _key(rule: dict[str, Any]) -> tuple[str, str, str]:
    source = str(rule.get("from") or "any")
    return str(int(rule["port"])), str(rule.get("proto") or "tcp"), "any" if source in _ANY else source


def base_ufw_wanted(items: list[dict[str, Any]], prefix: str) -> list[dict[str, str]]:
    """Normalise allowed-port items ({port, proto, from, comment}) and drop duplicates."""
    seen: dict[tuple[str, str, str], dict[str, str]] = {}
    for item in items:
        port, proto, source = _key(item)
        purpose = str(item.get("comment") or f"port {port}/{proto}")
        rule = {"port": port, "proto": proto, "from": source, "comment": f"{prefix} {purpose}"}
        seen.setdefault((port, proto, source), rule)
    return list(seen.values())


def base_ufw_kit_rules(texts: list[str], prefix: str) -> list[dict[str, str]]:
    """The incoming allow rules in ufw's user rules files whose comment starts with `prefix`."""
    found: dict[tuple[str, str, str], dict[str, str]] = {}
    for text in texts:
        for line in text.splitlines():
            m = _TUPLE.match(line.strip())
            if not m or m["action"] != "allow" or not m["direction"].startswith("in"):
                continue
            try:
                comment = bytes.fromhex(m["comment"] or "").decode()
            except ValueError:
                continue
            if not comment.startswith(prefix) or not m["dport"].isdigit():
                continue
            rule = {"port": m["dport"], "proto": m["proto"], "from": m["src"], "comment": comment}
            kept = found.setdefault(_key(rule), {**rule, "from": _key(rule)[2], "families": ""})
            family = "v6" if ":" in m["dst"] else "v4"
            kept["families"] = ",".join(sorted(set(filter(None, kept["families"].split(","))) | {family}))
    return list(found.values())


def base_ufw_stale(kit_rules: list[dict[str, Any]], wanted: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rules the kit added earlier that are not wanted any more."""
    keep = {_key(rule) for rule in wanted}
    return [rule for rule in kit_rules if _key(rule) not in keep]


def base_ufw_missing(wanted: list[dict[str, Any]], kit_rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Wanted rules ufw does not hold in full (the ones the ufw module must run for: each run of it
    costs most of a second, and a host holds a dozen rules). A rule from any source is held in
    full when both user.rules (IPv4) and user6.rules (IPv6) have it; one from an address, in the
    file of its family. (With IPv6 off in ufw the module then runs for such rules and finds them
    unchanged, as it did for every rule before.)"""
    have = {_key(rule): set(str(rule.get("families", "")).split(",")) for rule in kit_rules}
    missing = []
    for rule in wanted:
        key = _key(rule)
        source = key[2]
        needed = {"v4", "v6"} if source == "any" else ({"v6"} if ":" in source else {"v4"})
        if not needed <= have.get(key, set()):
            missing.append(rule)
    return missing


def base_ufw_bad_ports(items: list[dict[str, Any]], list_name: str) -> list[str]:
    """`<variable> (<port>)` for every item whose port is not a number 1-65535; the variable is the
    item's `variable` (where a derived port comes from), else the list's own name."""
    bad = []
    for item in items:
        port = item.get("port")
        try:
            ok = 1 <= int(port) <= 65535  # type: ignore[arg-type]
        except (TypeError, ValueError):
            ok = False
        if not ok:
            bad.append(f"{item.get('variable') or list_name} ({port})")
    return bad


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "base_ufw_wanted": base_ufw_wanted,
            "base_ufw_kit_rules": base_ufw_kit_rules,
            "base_ufw_stale": base_ufw_stale,
            "base_ufw_missing": base_ufw_missing,
            "base_ufw_bad_ports": base_ufw_bad_ports,
        }
