"""End to end: events sent over HTTP reach PostgreSQL AND ClickHouse with every field intact.

Both paths are probed: the collector's middleware (a `page` event for any request) and
`POST /v1/events` (a Segment-style batch with track, identify, group and page). Every
probe is marked synthetic (header `X-Footprint-Probe: 1`, property `footprint_probe`), so
the dashboard stats exclude it; the suite is safe to rerun against production as a smoke
check. Addresses, ports and credentials are the inventory's, resolved through Ansible (see conftest).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import clickhouse_connect
import httpx
import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition
from conftest import Secret, secret, setting

# The probe runs from the control node against the collector's host.
testinfra_hosts = ["ansible://app"]

DEADLINE_S = 90.0


def wait_for(what: str, probe: Callable[[], Any], timeout: float = DEADLINE_S) -> Any:
    """Poll until probe() returns something truthy; fail naming `what` after timeout."""
    end = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < end:
        last = probe()
        if last:
            return last
        time.sleep(0.5)
    pytest.fail(f"{what}: not seen within {timeout:.0f}s (last: {last!r})")


@pytest.fixture(scope="module")
def endpoints(component: Callable[[str], tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Where every client listener is, from the resolved inventory; passwords and the API key as Secret."""
    app_addr, app_vars = component("app")
    pg_addr, pg_vars = component("postgresql")
    ch_addr, ch_vars = component("clickhouse")
    _, kafka_vars = component("kafka")
    return {
        "collector": f"http://{app_addr}:{setting(app_vars, 'footprint_collector_port')}",
        "api_key": secret(app_vars, "footprint_api_keys"),
        "pg": {
            "host": pg_addr,
            "port": setting(pg_vars, "postgresql_port"),
            "dbname": setting(pg_vars, "postgresql_database"),
            "user": setting(pg_vars, "postgresql_reader_user"),
            "password": secret(pg_vars, "postgresql_reader_password"),
        },
        "ch": {
            "host": ch_addr,
            "port": setting(ch_vars, "clickhouse_http_port"),
            "database": setting(ch_vars, "clickhouse_database"),
            "username": setting(ch_vars, "clickhouse_reader_user"),
            "password": secret(ch_vars, "clickhouse_reader_password"),
        },
        # the broker's advertised address, as the kafka role resolves it
        "kafka": f"{setting(kafka_vars, 'kafka_advertised_host')}:{setting(kafka_vars, 'kafka_port')}",
        "topic": next(t["name"] for t in setting(kafka_vars, "kafka_topics") if not t["name"].endswith(".dlq")),
        "dlq": next(t["name"] for t in setting(kafka_vars, "kafka_topics") if t["name"].endswith(".dlq")),
        "group": setting(app_vars, "footprint_kafka_group"),
    }


def revealed(params: dict[str, Any]) -> dict[str, Any]:
    """Client keyword arguments with the secrets' text (only ever passed straight to a client)."""
    return {k: v.reveal() if isinstance(v, Secret) else v for k, v in params.items()}


def bearer(key: Secret) -> dict[str, str]:
    return {"Authorization": f"Bearer {key.reveal()}"}


def pg_rows(ep: dict[str, Any], where: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
    with psycopg.connect(**revealed(ep["pg"]), connect_timeout=5, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute(f"SELECT * FROM events WHERE {where} ORDER BY event_id", params).fetchall()


def ch_rows(ep: dict[str, Any], where: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    client = clickhouse_connect.get_client(**revealed(ep["ch"]), connect_timeout=5)
    try:
        res = client.query(f"SELECT * FROM events FINAL WHERE {where} ORDER BY event_id", parameters=params)
        return list(res.named_results())
    finally:
        client.close()


def kafka_positions(ep: dict[str, Any]) -> tuple[int, int, int]:
    """(sum of high watermarks of the events topic, of committed offsets, DLQ high watermark)."""
    consumer = Consumer({"bootstrap.servers": ep["kafka"], "group.id": ep["group"], "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(timeout=10)
        parts = [TopicPartition(ep["topic"], p) for p in meta.topics[ep["topic"]].partitions]
        high = sum(consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in parts)
        committed = sum(max(tp.offset, 0) for tp in consumer.committed(parts, timeout=10))
        dlq = sum(
            consumer.get_watermark_offsets(TopicPartition(ep["dlq"], p), timeout=10)[1]
            for p in meta.topics[ep["dlq"]].partitions
        )
        return high, committed, dlq
    finally:
        consumer.close()


@pytest.fixture(scope="module")
def probe(endpoints: dict[str, Any]) -> dict[str, Any]:
    """Send the synthetic events once; the tests below check where they landed."""
    ep = endpoints
    marker = uuid.uuid4().hex
    when = (datetime.now(UTC) - timedelta(minutes=3)).replace(microsecond=123456)
    props = {"footprint_probe": True, "probe_id": marker, "nested": {"depth": 2, "list": [1, "two"]}}
    batch = [
        {"type": "track", "event": "Probe Tracked", "userId": f"u-{marker}", "properties": props,
         "timestamp": when.isoformat(), "messageId": f"{marker}-track"},
        {"type": "identify", "userId": f"u-{marker}", "traits": {"footprint_probe": True, "plan": "smoke"},
         "timestamp": when.isoformat(), "messageId": f"{marker}-identify"},
        {"type": "group", "anonymousId": f"a-{marker}", "groupId": f"g-{marker}",
         "traits": {"footprint_probe": True, "name": "Smoke Co"}, "timestamp": when.isoformat(),
         "messageId": f"{marker}-group"},
        {"type": "page", "anonymousId": f"a-{marker}", "name": f"/probe-page/{marker}",
         "properties": {"footprint_probe": True, "path": f"/probe-page/{marker}"},
         "timestamp": when.isoformat(), "messageId": f"{marker}-page"},
    ]
    before = kafka_positions(ep)
    with httpx.Client(timeout=10) as http:
        marked = {"X-Footprint-Probe": "1", "X-Footprint-Anonymous-Id": f"probe-{marker}"}
        http.get(f"{ep['collector']}/probe/{marker}", headers=marked)  # any path: the middleware records it
        # the probe's own request is marked too: the middleware records a page event for it
        res = http.post(f"{ep['collector']}/v1/events", json={"batch": batch},
                        headers={**bearer(ep["api_key"]), **marked})
    assert res.status_code == 202, res.text
    return {"marker": marker, "when": when, "batch": batch, "ids": res.json()["event_ids"],
            "before": before}


def test_api_batch_reaches_postgresql(endpoints: dict[str, Any], probe: dict[str, Any]) -> None:
    ids = probe["ids"]
    rows = wait_for("API events in PostgreSQL",
                    lambda: (r := pg_rows(endpoints, "event_id = ANY(%s)", (ids,))) and len(r) == len(ids) and r)
    check_fields({str(r["event_id"]): r for r in rows}, probe, decode=lambda v: v)


def test_api_batch_reaches_clickhouse(endpoints: dict[str, Any], probe: dict[str, Any]) -> None:
    ids = probe["ids"]
    rows = wait_for("API events in ClickHouse",
                    lambda: (r := ch_rows(endpoints, "event_id IN {ids:Array(UUID)}", {"ids": ids}))
                    and len(r) == len(ids) and r)
    check_fields({str(r["event_id"]): r for r in rows}, probe, decode=json.loads)


def check_fields(rows: dict[str, dict[str, Any]], probe: dict[str, Any], decode: Callable[[Any], Any]) -> None:
    for event_id, sent in zip(probe["ids"], probe["batch"], strict=True):
        row = rows[event_id]
        assert row["type"] == sent["type"]
        assert row["event"] == sent.get("event", sent.get("name", ""))  # a page's name is its event
        assert row["link"] == sent.get("properties", {}).get("path", "")
        assert row["user_id"] == sent.get("userId", "")
        assert row["anonymous_id"] == sent.get("anonymousId", "")
        assert row["group_id"] == sent.get("groupId", "")
        assert decode(row["properties"]) == sent.get("properties", {})
        assert decode(row["traits"]) == sent.get("traits", {})
        stored = row["footprint_time"]
        stored = stored if stored.tzinfo else stored.replace(tzinfo=UTC)
        assert stored == probe["when"], (stored, probe["when"])
        assert row["synthetic"] is True
        assert row["received_at"] is not None


def test_middleware_page_event_reaches_both_stores(endpoints: dict[str, Any], probe: dict[str, Any]) -> None:
    link = f"/probe/{probe['marker']}"
    pg = wait_for("middleware page event in PostgreSQL", lambda: pg_rows(endpoints, "link = %s", (link,)))
    ch = wait_for("middleware page event in ClickHouse", lambda: ch_rows(endpoints, "link = {l:String}", {"l": link}))
    assert len(pg) == len(ch) == 1
    assert str(pg[0]["event_id"]) == str(ch[0]["event_id"])
    for row in (pg[0], ch[0]):
        assert (row["type"], row["method"], row["link"], row["synthetic"]) == ("page", "GET", link, True)


def test_consumer_lag_returns_to_zero_and_nothing_dead_lettered(endpoints: dict[str, Any], probe: dict[str, Any]) -> None:
    def caught_up() -> tuple[int, int, int] | None:
        high, committed, dlq = kafka_positions(endpoints)
        return (high, committed, dlq) if high == committed and high >= probe["before"][0] + 5 else None

    _, _, dlq = wait_for("consumer lag 0", caught_up)
    assert dlq == probe["before"][2], "the dead-letter topic received messages during the probe"


def test_smoke_probe_leaves_the_stats_untouched(endpoints: dict[str, Any], probe: dict[str, Any]) -> None:
    """Every event the probe's requests caused is synthetic; the API call itself is no page view."""
    anon = f"probe-{probe['marker']}"
    wait_for("consumer lag 0", lambda: (p := kafka_positions(endpoints))[0] == p[1] and p[0] >= probe["before"][0] + 5)
    rows = pg_rows(endpoints, "anonymous_id = %s AND type = 'page' AND event = ''", (anon,))
    assert [r["link"] for r in rows] == [f"/probe/{probe['marker']}"]  # no page view of /v1/events
    assert [r["link"] for r in rows if not r["synthetic"]] == []


def test_synthetic_events_stay_out_of_the_rollup(endpoints: dict[str, Any], probe: dict[str, Any]) -> None:
    link = f"/probe/{probe['marker']}"
    wait_for("middleware page event in ClickHouse", lambda: ch_rows(endpoints, "link = {l:String}", {"l": link}))
    client = clickhouse_connect.get_client(**revealed(endpoints["ch"]))
    try:
        n = client.command("SELECT count() FROM link_hourly WHERE link = {l:String}", parameters={"l": link})
    finally:
        client.close()
    assert int(str(n)) == 0


@pytest.mark.destructive  # a real (non-synthetic) page view: it shows in the stats, so never in smoke
def test_real_page_view_fills_the_rollup(endpoints: dict[str, Any], probe: dict[str, Any]) -> None:
    link = f"/rollup-check/{probe['marker']}"
    event = {"type": "page", "anonymousId": f"a-{probe['marker']}", "name": link, "properties": {"path": link},
             "messageId": f"{probe['marker']}-rollup"}
    with httpx.Client(timeout=10) as http:
        res = http.post(f"{endpoints['collector']}/v1/events", json={"batch": [event]},
                        headers=bearer(endpoints["api_key"]))
    assert res.status_code == 202, res.text
    client = clickhouse_connect.get_client(**revealed(endpoints["ch"]))
    try:
        def views() -> int:
            return int(str(client.command(
                "SELECT uniqExactMerge(views) FROM link_hourly WHERE link = {l:String}", parameters={"l": link})))
        assert wait_for("the page view in the ClickHouse rollup", views) == 1
    finally:
        client.close()
