"""Shared fixtures for the testinfra suite.

Every address, port and credential comes from the Ansible inventory the suite runs against
(molecule's, the demo host's or a user's), RESOLVED through Ansible as a deploy sees it:
`playbooks/resolve-vars.yml` renders every role variable and the cross-role wiring of
`playbooks/group_vars/all.yml` for each host (templates such as `kafka_port: "{{ x }}"`,
vault values, the roles' defaults where the inventory sets nothing). Never literals, never
the raw YAML. `FOOTPRINT_EXTRA_VARS=FILE` adds a YAML file of extra variables (`-e @FILE`),
as the deploy it checks was given.

Secrets (passwords, API keys) are held as `Secret`, whose repr/str hide the value; tracebacks
are forced short and without locals (see `pytest_configure`), so a failing check never
prints one. Use `.reveal()` only right where a client needs the text.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import testinfra.host
import testinfra.utils.ansible_runner as ansible_runner
from testinfra.backend import base
from testinfra.backend.docker import DockerBackend
from testinfra.backend.local import LocalBackend

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("FOOTPRINT_CACHE", Path.home() / ".cache" / "footprint"))
RESOLVER = ROOT / "playbooks" / "resolve-vars.yml"
# variables whose values are secrets: held as Secret in every fixture
SECRET_NAME = re.compile(r"(_password|_api_key|_api_keys|_private_keys|_dsn)$")


class Secret:
    """A secret value that never shows in output: repr() and str() hide it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = str(value)

    def reveal(self) -> str:
        """The text, for the client that needs it (never for an assertion message)."""
        return self._value

    def found_in(self, text: str) -> bool:
        """Whether the secret occurs in text (assert on the bool, not on the text)."""
        return bool(self._value) and self._value in text

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def pytest_configure(config: pytest.Config) -> None:
    """Never print a secret, also when a check fails: pytest's long tracebacks show every frame's
    arguments (a client library's `password=...`) and -l shows locals; both are turned off here,
    whatever the command line says."""
    config.option.showlocals = False
    config.option.fulltrace = False
    if config.option.tbstyle in ("auto", "long"):
        config.option.tbstyle = "short"


class NsenterBackend(LocalBackend):
    """Runs commands inside a test-bed host through nsenter (fast path).

    testinfra drives hosts with an Ansible connection it does not know by running one
    Ansible ad-hoc command per check (~1 s each); for the test bed's nspawn hosts this
    enters the container's namespaces directly instead. Variables still come from Ansible.
    """

    NAME = "nsenter"

    def __init__(self, name: str, pidfile: Path, **kwargs: Any) -> None:
        self.pidfile = pidfile
        self.name = name
        super().__init__(**kwargs)
        self.hostname = name  # get_hostname(): the inventory name, as with Ansible's backend

    def get_pytest_id(self) -> str:
        return self.name

    def run(self, command: str, *args: str, **kwargs: Any) -> base.CommandResult:
        pid = self.pidfile.read_text().strip()
        return self.run_local("nsenter -t %s -a /bin/sh -c %s", pid, self.get_command(command, *args))


_original_get_ansible_host = ansible_runner.get_ansible_host


def _get_ansible_host(config: Any, inventory: Any, host: str, **kwargs: Any) -> testinfra.host.Host | None:
    hostvars = inventory.get("_meta", {}).get("hostvars", {}).get(host, {})
    pidfile = CACHE / "hosts" / host / "leader.pid"
    if hostvars.get("ansible_connection") == "community.docker.nsenter" and pidfile.is_file():
        return testinfra.host.Host(NsenterBackend(host, pidfile))
    if hostvars.get("ansible_connection") in ("docker", "community.docker.docker"):
        # `docker exec` needs the container's name (ansible_docker_host, as Ansible's docker
        # connection reads it); testinfra's own mapping would take ansible_host, which is the
        # address the checks reach the services at (molecule/docker)
        backend = DockerBackend(str(hostvars.get("ansible_docker_host") or host))
        backend.hostname = host  # get_hostname(): the inventory name, as with Ansible's backend
        return testinfra.host.Host(backend)
    return _original_get_ansible_host(config, inventory, host, **kwargs)


ansible_runner.get_ansible_host = _get_ansible_host  # type: ignore[assignment]


def _phase(variable: str) -> str:
    phase = os.environ.get(variable, "")
    if phase not in ("", "before", "after"):
        raise pytest.UsageError(f"{variable} must be before or after, not {phase!r}")
    return phase


# the cluster scenario's checks run on demand (`FOOTPRINT_... =1 make molecule-cluster`): marker -> variable
ON_DEMAND = {
    "lost_host": "FOOTPRINT_LOST_HOST",  # a Kafka voter lost for good and replaced (~6 min)
    "ca_rotation": "FOOTPRINT_CA_ROTATION",  # the CA replaced in three steps under traffic
    "cert_renewal": "FOOTPRINT_CERT_RENEWAL",  # every host certificate re-issued under traffic (~4 min)
    "cluster_upgrade": "FOOTPRINT_CLUSTER_UPGRADE",  # upgrade.yml on the cluster through a failure
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `reboot` run only around a reboot (FOOTPRINT_REBOOT_PHASE=before|after, see
    test_reboot.py), tests marked `grow` only around a grow (FOOTPRINT_GROW_PHASE, the same way:
    see test_grow.py), tests marked `upgrade` only around an upgrade (FOOTPRINT_UPGRADE_PHASE,
    alone: see test_upgrade.py), tests marked `check_mode` only where FOOTPRINT_CHECK_REPORT names the
    report of a check run (test_check_mode.py), the tests of ON_DEMAND (minutes of CI's time each)
    only with their variable set to 1; otherwise they are deselected (reported as such, not
    skipped)."""
    upgrade_phase = _phase("FOOTPRINT_UPGRADE_PHASE")
    check_report = bool(os.environ.get("FOOTPRINT_CHECK_REPORT"))
    on_demand = {marker for marker, variable in ON_DEMAND.items() if os.environ.get(variable, "") == "1"}
    phases = {"reboot": _phase("FOOTPRINT_REBOOT_PHASE"), "grow": _phase("FOOTPRINT_GROW_PHASE")}
    if all(phases.values()):
        raise pytest.UsageError("FOOTPRINT_REBOOT_PHASE and FOOTPRINT_GROW_PHASE: one at a time")

    def wanted(item: pytest.Item) -> bool:
        upgrade = item.get_closest_marker("upgrade") is not None
        if upgrade_phase:  # only the upgrade checks of this phase
            return upgrade and item.name.startswith(f"test_{upgrade_phase}_upgrade_")
        if upgrade:
            return False
        if item.get_closest_marker("check_mode") is not None and not check_report:
            return False
        if any(item.get_closest_marker(m) is not None for m in ON_DEMAND.keys() - on_demand):
            return False
        for marker, phase in phases.items():
            marked = item.get_closest_marker(marker) is not None
            if phase == "before":  # only the step before the reboot / the grow
                return marked and item.name.startswith("test_before_")
            if phase == "after" and marked:  # the whole suite, plus the checks after it
                return item.name.startswith("test_after_")
            if marked:
                return False
        return True

    keep = [item for item in items if wanted(item)]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if not wanted(item)])
    # test_ports.py moves every port (and may leave the host there): every other check first;
    # test_rotate_certs.py replaces the certificates just before it; test_cluster_upgrade.py leaves
    # the cluster on newer versions than the inventory's: last of all
    items[:] = sorted(keep, key=lambda item: (item.path.name == "test_cluster_upgrade.py", item.path.name == "test_ports.py",
                                              item.path.name == "test_rotate_certs.py"))


def _secret_values(name: str, value: Any) -> Any:
    if not SECRET_NAME.search(name):
        return value
    if isinstance(value, list):
        return [Secret(v) for v in value]
    return Secret(value)


@functools.cache
def resolved_inventory(inventory: str, extra_vars: str = "") -> dict[str, dict[str, Any]]:
    """inventory host -> its variables, resolved through Ansible (playbooks/resolve-vars.yml)."""
    with tempfile.TemporaryDirectory(prefix="footprint-vars-") as out:
        cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", inventory, str(RESOLVER),
               "-e", f"footprint_resolved_vars_dest={out}"]
        if extra_vars:
            cmd += ["-e", f"@{extra_vars}"]
        env = dict(os.environ, ANSIBLE_ROLES_PATH=str(ROOT / "roles"), ANSIBLE_NOCOLOR="1")
        res = subprocess.run(cmd, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             timeout=300)
        if res.returncode != 0:  # the resolver's task is no_log: its output holds no secret
            pytest.fail(f"resolving the inventory's variables failed:\n{res.stdout[-3000:]}")
        found = {}
        for f in Path(out).glob("*.json"):
            raw = json.loads(f.read_text())
            found[f.stem] = {k: _secret_values(k, v) for k, v in raw.items()}
    return found


def inventory_option(config: pytest.Config) -> str:
    inventory = config.option.ansible_inventory
    if not inventory:
        pytest.fail("pass --ansible-inventory (the inventory the deploy used)")
    return str(inventory)


def resolved(config: pytest.Config, name: str) -> dict[str, Any]:
    hosts = resolved_inventory(inventory_option(config), os.environ.get("FOOTPRINT_EXTRA_VARS", ""))
    if name not in hosts:
        pytest.fail(f"host {name!r} is not in the group footprint of the inventory (resolved: {sorted(hosts)})")
    return hosts[name]


@pytest.fixture(scope="module")
def hostvars(host: Any, request: pytest.FixtureRequest) -> dict[str, Any]:
    """The resolved variables of the host under test (inventory, wiring and the roles' defaults)."""
    return resolved(request.config, host.backend.get_hostname())


def setting(hostvars: dict[str, Any], name: str) -> Any:
    """A resolved variable of the host (the inventory's value, else the role's default)."""
    if name not in hostvars:
        pytest.fail(f"variable {name} is not defined for {hostvars.get('inventory_hostname')}")
    return hostvars[name]


def address_of(hostvars: dict[str, Any]) -> str:
    return str(hostvars.get("ansible_host") or hostvars["inventory_hostname"])


@pytest.fixture(scope="module")
def address(hostvars: dict[str, Any]) -> str:
    """Where the control node reaches the host's services."""
    return address_of(hostvars)


@pytest.fixture(scope="session")
def secrets_dir(request: pytest.FixtureRequest) -> Path:
    """Where the generated secrets live: FOOTPRINT_SECRETS_DIR, else `.secrets` beside the inventory."""
    if os.environ.get("FOOTPRINT_SECRETS_DIR"):
        return Path(os.environ["FOOTPRINT_SECRETS_DIR"])
    path = Path(inventory_option(request.config)).resolve()
    return (path if path.is_dir() else path.parent) / ".secrets"


@pytest.fixture(scope="session")
def component(request: pytest.FixtureRequest) -> Any:
    """component(group) -> (address, resolved vars) of the first host of an inventory group."""
    runner = ansible_runner.AnsibleRunner.get_runner(request.config.option.ansible_inventory)

    def lookup(group: str) -> tuple[str, dict[str, Any]]:
        hosts = runner.get_hosts(group)
        if not hosts:
            pytest.fail(f"the inventory has no host in group {group!r}")
        hv = resolved(request.config, hosts[0])
        return address_of(hv), hv

    return lookup


def secret(hostvars: dict[str, Any], variable: str) -> Secret:
    """A resolved secret (given in the inventory or a vault, else the generated file's content)."""
    value = setting(hostvars, variable)
    if isinstance(value, list):
        value = value[0]
    if not isinstance(value, Secret) or not value.reveal():
        pytest.fail(f"{variable} did not resolve to a secret")
    return value


def enabled(hostvars: dict[str, Any], variable: str) -> bool:
    """A resolved boolean switch (true/false, also as the strings Ansible may render)."""
    value = setting(hostvars, variable)
    return value if isinstance(value, bool) else str(value).strip().lower() in ("true", "yes", "1", "on")


def kafka_client(kafka_vars: dict[str, Any], bootstrap: str, user: str | None = None,
                 password: Secret | None = None, **extra: Any) -> dict[str, Any]:
    """confluent-kafka configuration for the broker of kafka_vars: with kafka_tls_enabled, SASL_SSL
    (SCRAM-SHA-512) as `user` (default: the kafka role's admin principal), the broker's certificate
    verified against the CA of the deploy (kafka_tls_ca_cert). The password is revealed here only,
    straight into the client's configuration."""
    config: dict[str, Any] = {"bootstrap.servers": bootstrap}
    if enabled(kafka_vars, "kafka_tls_enabled"):
        config.update({
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": user or setting(kafka_vars, "kafka_admin_user"),
            "sasl.password": (password or secret(kafka_vars, "kafka_admin_password")).reveal(),
            "ssl.ca.location": setting(kafka_vars, "kafka_tls_ca_cert"),
            "ssl.endpoint.identification.algorithm": "https",
        })
    return config | extra


def create_topic(admin: Any, name: str, partitions: int = 1, replication_factor: int = 1, timeout: float = 60) -> None:
    """Create a test's topic and return once every broker the admin client asks knows it. On a
    cluster a CreateTopics answer can be a retriable error (the broker that forwarded it has not
    yet learnt the controller's record: UNKNOWN_TOPIC_OR_PART, seen once in CI run 40): retried,
    and a retry that finds the topic made by the first attempt counts as made."""
    import time

    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

    deadline = time.monotonic() + timeout
    attempt = 0
    while True:
        attempt += 1
        try:
            topic = NewTopic(name, num_partitions=partitions, replication_factor=replication_factor)
            admin.create_topics([topic])[name].result(30)
            break
        except KafkaException as exc:
            error = exc.args[0]
            if attempt > 1 and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                break
            retry = error.retriable() or error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
            if not retry or time.monotonic() > deadline:
                raise
            time.sleep(1)
    while name not in admin.list_topics(timeout=15).topics:
        assert time.monotonic() < deadline, f"{name}: created, but not in the cluster's metadata within {timeout:.0f} s"
        time.sleep(0.5)


def pg_tls(pg_vars: dict[str, Any]) -> dict[str, Any]:
    """libpq TLS parameters for the PostgreSQL of pg_vars: verify-full against the deploy's CA."""
    if not enabled(pg_vars, "postgresql_tls_enabled"):
        return {}
    return {"sslmode": "verify-full", "sslrootcert": setting(pg_vars, "footprint_tls_ca_cert")}


def web_scheme(app_vars: dict[str, Any]) -> str:
    """https when nginx terminates TLS in front of the collector and the dashboard (footprint_tls_enabled)."""
    return "https" if enabled(app_vars, "footprint_tls_enabled") else "http"


def web_verify(app_vars: dict[str, Any]) -> str | bool:
    """httpx's `verify` for the collector and the dashboard: the deploy's CA with TLS."""
    return str(setting(app_vars, "footprint_tls_ca_cert")) if enabled(app_vars, "footprint_tls_enabled") else True
