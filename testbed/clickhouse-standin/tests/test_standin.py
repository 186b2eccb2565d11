"""Tests of the ClickHouse stand-in itself (config merge + a real served engine).

Run: .venv/bin/pytest testbed/clickhouse-standin/tests -q
"""

from __future__ import annotations

import socket
import struct
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import clickhouse_connect
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chstandin import StandIn, StandInUser
from chstandin.config import (
    ConfigError,
    load_merged_xml,
    merge_into,
    read_server_settings,
)

WRITER = StandInUser("footprint_writer", "w-secret", ("INSERT, SELECT ON footprint.*",))
READER = StandInUser("footprint_reader", "r-secret", ("SELECT ON footprint.*",))
OWNER = StandInUser(
    "footprint_owner",
    "o-secret",
    (
        "ALL ON footprint.*",
        "TABLE ENGINE ON MergeTree",
        "TABLE ENGINE ON ReplacingMergeTree",
    ),
)


def _xml(text: str) -> ET.Element:
    return ET.fromstring(text)


def test_merge_replaces_leaves_appends_new_and_honours_remove() -> None:
    base = _xml(
        "<clickhouse><http_port>8123</http_port><tcp_port>9000</tcp_port>"
        "<mysql_port>9004</mysql_port><logger><level>trace</level><size>1M</size></logger>"
        "</clickhouse>"
    )
    merge_into(
        base,
        _xml(
            "<clickhouse><tcp_port>9232</tcp_port><mysql_port remove='1'/>"
            "<logger><level>warning</level></logger><listen_host>::</listen_host>"
            "<listen_host>0.0.0.0</listen_host></clickhouse>"
        ),
    )
    assert base.findtext("http_port") == "8123"
    assert base.findtext("tcp_port") == "9232"
    assert base.find("mysql_port") is None
    assert base.findtext("logger/level") == "warning"
    assert base.findtext("logger/size") == "1M"
    assert [e.text for e in base.findall("listen_host")] == ["::", "0.0.0.0"]


def test_merge_replace_attribute_drops_old_children() -> None:
    base = _xml("<clickhouse><users><default><networks><ip>::/0</ip></networks></default></users></clickhouse>")
    merge_into(
        base,
        _xml(
            "<clickhouse><users><default><networks replace='replace'><ip>127.0.0.1</ip></networks></default></users></clickhouse>"
        ),
    )
    assert [e.text for e in base.findall("users/default/networks/ip")] == ["127.0.0.1"]
    assert base.find("users/default/networks").attrib == {}  # type: ignore[union-attr]


def test_config_dir_overrides_are_merged_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "config.d").mkdir()
    (tmp_path / "config.xml").write_text("<clickhouse><http_port>8123</http_port></clickhouse>")
    (tmp_path / "config.d" / "b.xml").write_text("<clickhouse><http_port>2</http_port></clickhouse>")
    (tmp_path / "config.d" / "a.xml").write_text("<clickhouse><http_port>1</http_port></clickhouse>")
    merged = load_merged_xml(tmp_path / "config.xml", tmp_path / "config.d")
    assert merged.findtext("http_port") == "2"


def test_default_user_with_password_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.xml").write_text("<clickhouse><http_port>8123</http_port></clickhouse>")
    (tmp_path / "users.xml").write_text("<clickhouse><users><default><password>x</password></default></users></clickhouse>")
    with pytest.raises(ConfigError, match="without a password"):
        read_server_settings(tmp_path)


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    with StandIn(
        tmp_path_factory.mktemp("ch"),
        users=[WRITER, READER, OWNER],
        databases=("footprint",),
    ) as instance:
        yield instance


def _client(ch: StandIn, user: StandInUser) -> clickhouse_connect.driver.Client:
    return clickhouse_connect.get_client(
        host=ch.host,
        port=ch.http_port,
        username=user.name,
        password=user.password,
        database="footprint",
    )


def test_grants_from_users_d_are_enforced(standin: StandIn) -> None:
    owner, writer, reader = (_client(standin, u) for u in (OWNER, WRITER, READER))
    owner.command(
        "CREATE TABLE IF NOT EXISTS ev (id UUID, at DateTime64(3, 'UTC'), tags Array(String)) "
        "ENGINE = ReplacingMergeTree ORDER BY id"
    )
    writer.command("INSERT INTO ev VALUES (generateUUIDv4(), now64(3), ['a'])")
    assert reader.query("SELECT count() FROM ev").result_rows[0][0] >= 1
    for client, sql in (
        (reader, "INSERT INTO ev VALUES (generateUUIDv4(), now64(3), [])"),
        (writer, "CREATE TABLE t2 (a UInt8) ENGINE = MergeTree ORDER BY a"),
        (writer, "CREATE DATABASE elsewhere"),
    ):
        with pytest.raises(DatabaseError, match="ACCESS_DENIED"):
            client.command(sql)


def test_wrong_password_gives_code_516(standin: StandIn) -> None:
    with pytest.raises(DatabaseError, match="code: 516"):
        _client(standin, StandInUser(WRITER.name, "not-the-password"))


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _string(text: str) -> bytes:
    raw = text.encode()
    return _varint(len(raw)) + raw


def _read_varint(sock: socket.socket) -> int:
    shift = result = 0
    while True:
        byte = sock.recv(1)[0]
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result


def _read_string(sock: socket.socket) -> str:
    size = _read_varint(sock)
    data = b""
    while len(data) < size:
        data += sock.recv(size - len(data))
    return data.decode()


def native_hello(host: str, port: int, user: str, password: str) -> tuple[int, str]:
    """Send a native-protocol Hello; return (packet type, server name or error code)."""
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(
            _varint(0)  # ClientHello
            + _string("footprint-test")
            + _varint(24)
            + _varint(1)
            + _varint(54058)  # an old protocol revision keeps the reply simple
            + _string("footprint")
            + _string(user)
            + _string(password)
        )
        packet = _read_varint(sock)
        if packet == 0:  # ServerHello
            return packet, _read_string(sock)
        if packet == 2:  # Exception: Int32 code first
            return packet, str(struct.unpack("<i", sock.recv(4))[0])
        return packet, ""


def test_native_tcp_hello_and_auth(standin: StandIn) -> None:
    assert native_hello(standin.host, standin.tcp_port, WRITER.name, WRITER.password) == (
        0,
        "ClickHouse",
    )
    assert native_hello(standin.host, standin.tcp_port, WRITER.name, "bad") == (
        2,
        "516",
    )


def test_restart_keeps_data(tmp_path: Path) -> None:
    ch = StandIn(tmp_path, users=[OWNER], databases=("footprint",))
    with ch:
        client = _client(ch, OWNER)
        client.command("CREATE TABLE keep (n UInt32) ENGINE = MergeTree ORDER BY n")
        client.command("INSERT INTO keep SELECT number FROM numbers(1000)")
    assert ch.stop() is None  # already stopped by the context manager
    with ch:
        rows = _client(ch, OWNER).query("SELECT count(), sum(n) FROM keep").result_rows
    assert rows == [(1000, 499500)]


def test_sigterm_stops_cleanly(tmp_path: Path) -> None:
    ch = StandIn(tmp_path, users=[READER]).start()
    assert ch.stop() == 0
    assert "stopped" in ch.log_file.read_text()


def test_merge_keeps_a_section_an_empty_override_names() -> None:
    base = _xml("<clickhouse><users><default><password/></default></users></clickhouse>")
    merge_into(base, _xml("<clickhouse><users/></clickhouse>"))
    assert base.find("users/default") is not None
    merge_into(base, _xml("<clickhouse><users replace='1'/></clickhouse>"))
    assert base.find("users/default") is None


def test_another_server_on_the_port_is_not_taken_for_ready(standin: StandIn, tmp_path: Path) -> None:
    clash = StandIn(tmp_path, http_port=standin.http_port, start_timeout=20)
    with pytest.raises(RuntimeError, match="exited with 1"):
        clash.start()
    assert "clickhouse-standin: ready:" not in clash.log_file.read_text()
    assert "Address already in use" in clash.log_file.read_text()
