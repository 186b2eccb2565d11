"""The smoke checks read the inventory RESOLVED through Ansible (playbooks/resolve-vars.yml, used
by tests/conftest.py): templated values, the wiring of playbooks/group_vars/all.yml and the
roles' defaults, as a deploy sees them. Runs against this machine as a local host (read-only:
facts only; the generated secrets land in the temporary inventory's .secrets)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_templated_ports_resolve_and_the_firewall_follows(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    host = {"ansible_connection": "local", "ansible_host": "127.0.0.1",
            "ansible_python_interpreter": sys.executable,
            "footprint_port_base": 9000, "kafka_port": "{{ footprint_port_base + 94 }}",
            "footprint_firewall_store_from": "192.0.2.0/24"}
    groups = {g: {"hosts": {"fp-resolve": {}}} for g in ("kafka", "clickhouse", "postgresql", "app")}
    inventory.write_text(json.dumps({"all": {"children": {"footprint": {"hosts": {"fp-resolve": host},
                                                                        "children": groups}}}}))
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, ANSIBLE_ROLES_PATH=str(ROOT / "roles"), ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    res = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory),
         str(ROOT / "playbooks/resolve-vars.yml"), "-e", f"footprint_resolved_vars_dest={out}"],
        cwd=ROOT, env=env, text=True, capture_output=True, timeout=300,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    resolved = json.loads((out / "fp-resolve.json").read_text())
    assert resolved["kafka_port"] == 9094  # templated in the inventory, resolved
    assert resolved["clickhouse_tcp_port"] == 9232  # the role's default
    assert resolved["footprint_kafka_bootstrap"] == "127.0.0.1:9094"  # the wiring follows
    service = {(r["port"], r["from"]) for r in resolved["base_firewall_service_ports"]}
    # the monitoring host (this one, the first): its address as the wiring derives it, also given to the collector
    monitor = resolved["footprint_metrics_from"][-1]
    assert resolved["footprint_metrics_from"] == ["127.0.0.0/8", "::1", monitor]
    assert service == {(8000, "any"), (9094, "192.0.2.0/24"), (8123, "192.0.2.0/24"), (9232, "192.0.2.0/24"),
                       (5432, "192.0.2.0/24"), (8002, "192.0.2.0/24"),  # 8002: the dashboard, the host's network
                       (80, "any"),  # nginx's redirect to HTTPS (footprint_tls_enabled, on by default)
                       # node-exporter, PostgreSQL's exporter, Kafka's metrics: to the monitoring host only;
                       # Prometheus and Alertmanager: to the host's network (the dashboard reads Prometheus)
                       (9100, monitor), (9187, monitor), (9404, monitor), (9090, "192.0.2.0/24"), (9095, "192.0.2.0/24")}
    assert isinstance(resolved["postgresql_reader_password"], str) and len(resolved["postgresql_reader_password"]) == 32
    assert (out / "fp-resolve.json").stat().st_mode & 0o777 == 0o600  # it holds the secrets
