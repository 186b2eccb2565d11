"""Every listener a client uses, reached from the control node at the resolved address and port.

The collector (HTTP), Kafka (the advertised client listener), ClickHouse over HTTP AND over the
native protocol, PostgreSQL: each one answers its own protocol with the app's credentials.
A blocked or moved port fails here, naming the listener and the port.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import clickhouse_connect
import httpx
import psycopg
from chnative import handshake
from confluent_kafka.admin import AdminClient
from conftest import kafka_client, pg_tls, secret, setting, web_scheme, web_verify

# The checks run from the control node; one pass for the deployment.
testinfra_hosts = ["ansible://app"]

Component = Callable[[str], tuple[str, dict[str, Any]]]


def test_collector_http(component: Component) -> None:
    addr, hv = component("app")
    port = int(setting(hv, "footprint_collector_port"))
    r = httpx.get(f"{web_scheme(hv)}://{addr}:{port}/healthz", timeout=10, verify=web_verify(hv))
    assert r.status_code == 200, f"collector {addr}:{port}: HTTP {r.status_code}"


def test_kafka_client_listener(component: Component) -> None:
    _, hv = component("kafka")
    bootstrap = f"{setting(hv, 'kafka_advertised_host')}:{int(setting(hv, 'kafka_port'))}"
    meta = AdminClient(kafka_client(hv, bootstrap) | {"socket.timeout.ms": 10000}).list_topics(timeout=15)
    assert meta.brokers, f"kafka {bootstrap}: no broker in the metadata"
    advertised = {f"{b.host}:{b.port}" for b in meta.brokers.values()}
    assert bootstrap in advertised, f"kafka advertises {advertised}, clients were given {bootstrap}"
    topic = next(t["name"] for t in setting(hv, "kafka_topics"))
    assert topic in meta.topics


def test_clickhouse_http(component: Component) -> None:
    addr, hv = component("clickhouse")
    client = clickhouse_connect.get_client(
        host=addr, port=int(setting(hv, "clickhouse_http_port")), username=setting(hv, "clickhouse_reader_user"),
        password=secret(hv, "clickhouse_reader_password").reveal(), database=setting(hv, "clickhouse_database"),
        connect_timeout=10,
    )
    try:
        assert client.command("SELECT 1") == 1
    finally:
        client.close()


def test_clickhouse_native(component: Component) -> None:
    addr, hv = component("clickhouse")
    port = int(setting(hv, "clickhouse_tcp_port"))
    hello = handshake(addr, port, setting(hv, "clickhouse_reader_user"),
                      secret(hv, "clickhouse_reader_password").reveal(), setting(hv, "clickhouse_database"))
    assert hello.name == "ClickHouse", f"clickhouse native {addr}:{port}: {hello}"


def test_postgresql(component: Component) -> None:
    addr, hv = component("postgresql")
    with psycopg.connect(
        host=addr, port=int(setting(hv, "postgresql_port")), dbname=setting(hv, "postgresql_database"),
        user=setting(hv, "postgresql_reader_user"), password=secret(hv, "postgresql_reader_password").reveal(),
        connect_timeout=10, **pg_tls(hv),
    ) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
