"""testinfra checks of the clickhouse role, run against an inventory.

    .venv/bin/pytest tests/test_clickhouse.py --hosts=ansible://clickhouse --ansible-inventory=INVENTORY

The server is reached from the control node with clickhouse-connect (HTTP) and a native-protocol
handshake (TCP) at the host's address from the inventory (`ansible_host`). Settings and passwords
are the inventory's resolved through Ansible, the role's defaults where it sets none (conftest;
a generated password is the lookup file's content, as the deploy used it). The app's `events`
table is checked only on hosts in the inventory group `app` (where site.yml runs the app
role, which runs `footprint migrate`).
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import clickhouse_connect
import httpx
import pytest
import yaml  # type: ignore[import-untyped]
from chnative import NativeError, handshake
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError
from conftest import Secret, secret, setting

testinfra_hosts = ["ansible://clickhouse"]

ROLE = Path(__file__).resolve().parent.parent / "roles" / "clickhouse"
ROLE_OS_VARS: dict[str, Any] = yaml.safe_load((ROLE / "vars" / "Debian.yml").read_text())
SYSCTL_FILE = "/etc/sysctl.d/60-footprint-base.conf"
OVERRIDES = (
    "config.d/footprint-network.xml",
    "config.d/footprint-logger.xml",
    "config.d/footprint-memory.xml",
    "config.d/footprint-system-logs.xml",
    "config.d/footprint-access.xml",
    "config.d/footprint-storage.xml",
    "users.d/footprint-users.xml",
)
# packaged defaults of the MySQL / PostgreSQL protocol ports
PACKAGED_PROTOCOL_PORTS = {"clickhouse_mysql_port": 9004, "clickhouse_postgresql_port": 9005}


@pytest.fixture(scope="module")
def reachable(hostvars: dict[str, Any], address: str) -> str:
    """The address, if the server listens where the control node can reach it."""
    hosts = [str(h) for h in setting(hostvars, "clickhouse_listen_hosts")]
    if not ({"0.0.0.0", "::", address} & set(hosts)):
        pytest.skip(f"ClickHouse listens only on {hosts}, not reachable at {address}")
    return address


ROLES = ("owner", "writer", "reader")


class ClickHouse:
    """clickhouse-connect clients for the app's users, from the inventory."""

    def __init__(self, hostvars: dict[str, Any], address: str) -> None:
        self.hostvars = hostvars
        self.address = address
        self.port = int(setting(hostvars, "clickhouse_http_port"))
        self.database = str(setting(hostvars, "clickhouse_database"))

    def user(self, role: str) -> str:
        return str(setting(self.hostvars, f"clickhouse_{role}_user"))

    def password(self, role: str) -> Secret:
        return secret(self.hostvars, f"clickhouse_{role}_password")

    def client(self, role: str, password: str | None = None) -> Client:
        return clickhouse_connect.get_client(
            host=self.address,
            port=self.port,
            username=self.user(role),
            password=self.password(role).reveal() if password is None else password,
            database=self.database,
            connect_timeout=10,
        )


@pytest.fixture(scope="module")
def ch(hostvars: dict[str, Any], reachable: str) -> ClickHouse:
    return ClickHouse(hostvars, reachable)


@pytest.fixture
def probe_table(ch: ClickHouse) -> Iterator[str]:
    """A table the owner creates now, as the app's migrations would."""
    name = f"probe_{uuid.uuid4().hex[:12]}"
    owner = ch.client("owner")
    owner.command(f"CREATE TABLE {name} (event_id UUID, n UInt32) ENGINE = ReplacingMergeTree ORDER BY event_id")
    try:
        yield name
    finally:
        owner.command(f"DROP TABLE IF EXISTS {name} SYNC")


def denied(client: Client, sql: str) -> str:
    """Run sql expecting ClickHouse to refuse it; return the error text."""
    with pytest.raises(DatabaseError) as err:
        client.command(sql)
    return str(err.value)


def _listen_spec(addr: str, port: int) -> str:
    ip = ipaddress.ip_address(addr)
    return f"tcp://{addr}:{port}" if ip.version == 4 else f"tcp://[{addr}]:{port}"


def test_service_is_enabled_and_running(host: Any) -> None:
    service = host.service(ROLE_OS_VARS["__clickhouse_service"])
    assert service.is_enabled
    assert service.is_running


@pytest.mark.parametrize("port_var", ["clickhouse_http_port", "clickhouse_tcp_port"])
def test_ports_listen_on_configured_addresses(host: Any, hostvars: dict[str, Any], port_var: str) -> None:
    port = int(setting(hostvars, port_var))
    for addr in setting(hostvars, "clickhouse_listen_hosts"):
        assert host.socket(_listen_spec(str(addr), port)).is_listening, (addr, port)


@pytest.mark.parametrize("port_var", sorted(PACKAGED_PROTOCOL_PORTS))
def test_mysql_and_postgresql_protocols_are_off_unless_asked(host: Any, hostvars: dict[str, Any], port_var: str) -> None:
    configured = int(setting(hostvars, port_var))
    port = configured or PACKAGED_PROTOCOL_PORTS[port_var]
    listening = host.socket(f"tcp://{port}").is_listening
    assert listening == (configured > 0), (port_var, port)


def test_ping_answers(reachable: str, hostvars: dict[str, Any]) -> None:
    port = int(setting(hostvars, "clickhouse_http_port"))
    resp = httpx.get(f"http://{reachable}:{port}/ping", timeout=10)
    assert resp.status_code == 200
    assert resp.text.strip() == "Ok."


def test_native_port_authenticates_the_app_users(ch: ClickHouse, hostvars: dict[str, Any]) -> None:
    """The native (TCP) listener a native client uses: a real protocol Hello with the reader's
    credentials answered by the server's Hello and a Pong; a wrong password refused (516)."""
    port = int(setting(hostvars, "clickhouse_tcp_port"))
    hello = handshake(ch.address, port, ch.user("reader"), ch.password("reader").reveal(), ch.database)
    assert hello.name == "ClickHouse"
    assert hello.version[0] >= 23 and hello.revision > 54000, hello
    with pytest.raises(NativeError) as refused:
        handshake(ch.address, port, ch.user("reader"), ch.password("reader").reveal() + "-wrong", ch.database)
    assert refused.value.code == 516


def test_default_user_is_refused_from_the_network(reachable: str, hostvars: dict[str, Any]) -> None:
    port = int(setting(hostvars, "clickhouse_http_port"))
    resp = httpx.post(f"http://{reachable}:{port}/", content="SELECT 1", timeout=10)
    assert resp.status_code != 200
    assert "Authentication failed" in resp.text or "REQUIRED_PASSWORD" in resp.text


def test_writer_inserts_and_selects_in_app_database(ch: ClickHouse, probe_table: str) -> None:
    writer = ch.client("writer")
    ids = [uuid.uuid4() for _ in range(3)]
    writer.insert(probe_table, [[i, n] for n, i in enumerate(ids)], column_names=["event_id", "n"])
    rows = writer.query(f"SELECT event_id, n FROM {probe_table} ORDER BY n").result_rows
    assert rows == [(i, n) for n, i in enumerate(ids)]


def test_writer_has_no_rights_beyond_the_app_tables(ch: ClickHouse) -> None:
    writer = ch.client("writer")
    other = f"probe_{uuid.uuid4().hex[:8]}"
    for sql in (
        f"CREATE TABLE {other} (n UInt8) ENGINE = MergeTree ORDER BY n",
        f"CREATE TABLE default.{other} (n UInt8) ENGINE = MergeTree ORDER BY n",
        f"CREATE DATABASE {other}",
        "SELECT name FROM system.users",
    ):
        assert "ACCESS_DENIED" in denied(writer, sql), sql


def test_reader_selects_but_cannot_write(ch: ClickHouse, probe_table: str) -> None:
    reader = ch.client("reader")
    assert reader.query(f"SELECT count() FROM {probe_table}").result_rows == [(0,)]
    for sql in (
        f"INSERT INTO {probe_table} (event_id, n) VALUES (generateUUIDv4(), 1)",
        f"ALTER TABLE {probe_table} DELETE WHERE 1",
        f"DROP TABLE {probe_table}",
    ):
        assert "ACCESS_DENIED" in denied(reader, sql), sql


def test_wrong_password_is_refused(ch: ClickHouse) -> None:
    for role in ROLES:
        with pytest.raises(DatabaseError, match="516"):
            ch.client(role, password=ch.password(role).reveal() + "-wrong")


def test_configuration_is_only_in_override_files(host: Any) -> None:
    confdir = ROLE_OS_VARS["__clickhouse_config_dir"]
    group = ROLE_OS_VARS["__clickhouse_group"]
    paths = [f"{confdir}/{name}" for name in OVERRIDES]
    # one remote call: owner, group, mode of every override file
    out = host.check_output("stat -c '%%n %%U %%G %%a' " + " ".join(["%s"] * len(paths)), *paths)
    found = {line.split()[0]: line.split()[1:] for line in out.splitlines()}
    for path in paths:
        assert found.get(path) == ["root", group, "640"], path
    packaged = host.check_output("cat %s/config.xml %s/users.xml", confdir, confdir)
    assert "footprint" not in packaged


def test_users_file_has_hashes_not_passwords(host: Any, ch: ClickHouse) -> None:
    content = host.file(f"{ROLE_OS_VARS['__clickhouse_config_dir']}/users.d/footprint-users.xml").content_string
    for role in ROLES:
        leaked = ch.password(role).found_in(content)
        assert not leaked, f"the {role} password is in the users file in clear text"
    assert content.count("<password_sha256_hex>") == len(ROLES)


def test_system_log_tables_have_a_ttl(host: Any, hostvars: dict[str, Any]) -> None:
    days = int(setting(hostvars, "clickhouse_system_log_ttl_days"))
    content = host.file(f"{ROLE_OS_VARS['__clickhouse_config_dir']}/config.d/footprint-system-logs.xml").content_string
    for table in setting(hostvars, "clickhouse_system_log_tables"):
        assert f"<{table}>" in content
    assert content.count(f"INTERVAL {days} DAY DELETE") == len(setting(hostvars, "clickhouse_system_log_tables"))


def test_storage_file_sets_the_data_directory_and_the_reserved_space(host: Any, hostvars: dict[str, Any]) -> None:
    """Real servers apply both (README "Retention and disk"); the stand-in ignores them. The packaged
    directory is left to the server (no <path>: it keeps its own), a moved one is written."""
    content = host.file(f"{ROLE_OS_VARS['__clickhouse_config_dir']}/config.d/footprint-storage.xml").content_string
    data = str(setting(hostvars, "clickhouse_data_dir")).rstrip("/") + "/"
    if data == ROLE_OS_VARS["__clickhouse_packaged_data_path"]:
        assert "<path>" not in content and "<tmp_path>" not in content
    else:
        assert f"<path>{data}</path>" in content and f"<tmp_path>{data}tmp/</tmp_path>" in content
    keep = int(setting(hostvars, "clickhouse_keep_free_space_bytes"))
    assert f"<keep_free_space_bytes>{keep}</keep_free_space_bytes>" in content
    d = host.file(data)
    assert d.is_directory and d.user == ROLE_OS_VARS["__clickhouse_user"] and d.mode == 0o750


def test_existing_system_log_tables_use_the_ttl(ch: ClickHouse) -> None:
    """On a real server the tables carry the TTL; the stand-in has no system log tables."""
    rows = (
        ch.client("owner")
        .query(
            "SELECT name, create_table_query FROM system.tables "
            "WHERE database = 'system' AND name IN ('query_log', 'part_log', 'metric_log')"
        )
        .result_rows
    )
    if not rows:
        pytest.skip("no system log tables on this server (the test stand-in has none)")
    for name, create in rows:
        assert "TTL" in create, name


def test_sysctl_file_enables_task_delayacct(host: Any) -> None:
    f = host.file(SYSCTL_FILE)
    assert f.is_file
    settings = {
        k.strip(): v.strip()
        for k, _, v in (line.partition("=") for line in f.content_string.splitlines() if "=" in line)
        if not k.strip().startswith("#")
    }
    assert settings.get("kernel.task_delayacct") == "1"


def test_app_tables_exist(ch: ClickHouse, hostvars: dict[str, Any]) -> None:
    if not hostvars.get("groups", {}).get("app"):
        pytest.skip("the inventory has no app hosts: nothing ran footprint migrate")
    tables = {
        row[0]
        for row in ch.client("reader")
        .query("SELECT name FROM system.tables WHERE database = {db:String}", parameters={"db": ch.database})
        .result_rows
    }
    assert "events" in tables
