"""Prometheus' jobs from the inventory (playbooks/group_vars/all.yml, monitoring_scrape_configs)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def address_of(hostvars: Mapping[str, Any], host: str) -> str:
    """The address a host's services advertise: its facts' default IPv4 address, else ansible_host,
    else its inventory name (the same order as the kafka role's advertised host)."""
    hv = hostvars[host]
    facts = hv.get("ansible_facts") or {}
    return str((facts.get("default_ipv4") or {}).get("address") or hv.get("ansible_host") or host)


def monitoring_scrape_jobs(jobs: Sequence[Sequence[Any]], hostvars: Mapping[str, Any],
                           scheme: str) -> list[dict[str, Any]]:
    """[job, hosts, port variable, default port, metrics path(, scheme)] items -> Prometheus jobs with
    their targets ({address: "address:port", host: name}); jobs without hosts are left out. Each
    host's port is its own value of the port variable (a port set for one group or host is
    followed); a job's own scheme, when given, replaces `scheme`."""
    out = []
    for job, hosts, port_var, port_default, path, *own_scheme in jobs:
        if not hosts:
            continue
        targets = [{"address": f"{address_of(hostvars, h)}:{hostvars[h].get(port_var, port_default)}", "host": h}
                   for h in hosts]
        out.append({"job": job, "scheme": own_scheme[0] if own_scheme else scheme, "metrics_path": path,
                    "targets": targets})
    return out


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"monitoring_scrape_jobs": monitoring_scrape_jobs}
