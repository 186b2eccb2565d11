"""ACLs for the kafka role: parse `kafka-acls.sh --list` and flatten the declared principals."""

from __future__ import annotations

import re
from typing import Any

_RESOURCE = re.compile(
    r"resourceType=(?P<type>\w+), name=(?P<name>[^,]*), patternType=(?P<pattern>\w+)\)"
)
_ENTRY = re.compile(
    r"\(principal=(?P<principal>[^,]+), host=(?P<host>[^,]+), operation=(?P<op>\w+), permissionType=(?P<perm>\w+)\)"
)


def _key(resource_type: str, name: str, pattern: str, principal: str, operation: str) -> str:
    return "|".join([resource_type.upper().replace("-", "_"), name, pattern.upper(), principal, _operation(operation).upper()])


def _operation(operation: str) -> str:
    """An operation as AclCommand's --operation takes it: `kafka-acls --list` prints DESCRIBE_CONFIGS, and
    `--operation describe_configs` is refused ("only supports operations ..."); describeconfigs is not."""
    return str(operation).replace("_", "").replace("-", "").lower()


def kafka_acls_list(output: str) -> list[dict[str, str]]:
    """ALLOW entries of `kafka-acls.sh --list` as dicts with a comparable `key`."""
    found: list[dict[str, str]] = []
    resource: re.Match[str] | None = None
    for line in output.splitlines():
        head = _RESOURCE.search(line)
        if head and "Current ACLs for resource" in line:
            resource = head
            continue
        entry = _ENTRY.search(line)
        if entry and resource is not None and entry["perm"] == "ALLOW" and entry["host"] == "*":
            found.append({
                "resource_type": resource["type"].lower().replace("_", "-"),
                "name": resource["name"],
                "pattern_type": resource["pattern"].lower(),
                "principal": entry["principal"],
                "operation": _operation(entry["op"]),
                "key": _key(resource["type"], resource["name"], resource["pattern"], entry["principal"], entry["op"]),
            })
    return found


def kafka_acls_declared(principals: list[dict[str, Any]]) -> list[dict[str, str]]:
    """One dict per (principal, resource, operation) declared in kafka_principals."""
    flat: list[dict[str, str]] = []
    for principal in principals:
        user = f"User:{principal['name']}"
        for acl in principal.get("acls", []):
            pattern = str(acl.get("pattern_type", "literal")).lower()
            name = "kafka-cluster" if acl["resource_type"] == "cluster" else str(acl.get("name", ""))
            for op in acl["operations"]:
                flat.append({
                    "resource_type": str(acl["resource_type"]).lower(),
                    "name": name,
                    "pattern_type": pattern,
                    "principal": user,
                    "operation": _operation(op),
                    "key": _key(acl["resource_type"], name, pattern, user, op),
                })
    return flat


def kafka_acl_resource_args(acl: dict[str, str]) -> list[str]:
    """The resource options of kafka-acls (AclCommand) for one flattened ACL."""
    kind = acl["resource_type"]
    if kind == "cluster":
        args = ["--cluster"]
    elif kind in ("topic", "group", "transactional-id"):
        args = [f"--{kind}", acl["name"]]
    else:
        raise ValueError(f"kafka_principals: unknown resource_type {kind!r} (topic, group, cluster, transactional-id)")
    if acl.get("pattern_type", "literal") != "literal":
        args += ["--resource-pattern-type", acl["pattern_type"]]
    return args


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"kafka_acls_list": kafka_acls_list, "kafka_acls_declared": kafka_acls_declared,
                "kafka_acl_resource_args": kafka_acl_resource_args}
