"""End to end: events sent over HTTP reach PostgreSQL AND ClickHouse with every field intact.

Both ways in are probed: `POST /v1/events` (a Segment-style batch with track, identify, group and
page) and the browser snippet's `POST /v1/b` (a page view from one of `footprint_site_origins`,
enriched: referrer host, UTM, browser, device). A request to any other collector path is no page
view. Every probe is marked synthetic (property `footprint_probe`), so the stats exclude it; the
suite is safe to rerun against production as a smoke check. Addresses, ports and credentials are
the inventory's, resolved through Ansible (see conftest).
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
from conftest import Secret, address_of, kafka_client, pg_tls, secret, setting, web_scheme, web_verify

# The probe runs from the control node against the collector's host.
testinfra_hosts = ["ansible://app"]

DEADLINE_S = 90.0
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"


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
def endpoints(component: Callable[[str], tuple[str, dict[str, Any]]], hostvars: dict[str, Any]) -> dict[str, Any]:
    """endpoints_of the app host under test."""
    return endpoints_of(component, hostvars)


def endpoints_of(component: Callable[[str], tuple[str, dict[str, Any]]], hostvars: dict[str, Any]) -> dict[str, Any]:
    """Where every client listener is, from the resolved inventory: the collector of the app host of
    `hostvars` (each app host runs one), the stores of their groups' first hosts; passwords and the
    API key as Secret."""
    if "app" not in setting(hostvars, "group_names"):
        pytest.fail(f"{hostvars['inventory_hostname']} is not an app host: the delivery checks run on app hosts")
    app_addr, app_vars = address_of(hostvars), hostvars
    pg_addr, pg_vars = component("postgresql")
    ch_addr, ch_vars = component("clickhouse")
    _, kafka_vars = component("kafka")
    return {
        "collector": f"{web_scheme(app_vars)}://{app_addr}:{setting(app_vars, 'footprint_collector_port')}",
        "app_hosts": list(hostvars["groups"]["app"]),
        "verify": web_verify(app_vars),  # the deploy's CA when nginx terminates TLS
        "api_key": secret(app_vars, "footprint_api_keys"),
        "private_key": secret(app_vars, "footprint_private_keys"),  # the read API's, erasure's
        "pg": {
            "host": pg_addr,
            "port": setting(pg_vars, "postgresql_port"),
            "dbname": setting(pg_vars, "postgresql_database"),
            "user": setting(pg_vars, "postgresql_reader_user"),
            "password": secret(pg_vars, "postgresql_reader_password"),
            **pg_tls(pg_vars),
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
        "kafka_vars": kafka_vars,
        "topic": next(t["name"] for t in setting(kafka_vars, "kafka_topics") if not t["name"].endswith(".dlq")),
        "dlq": next(t["name"] for t in setting(kafka_vars, "kafka_topics") if t["name"].endswith(".dlq")),
        "group": setting(app_vars, "footprint_kafka_group"),
        "site_origins": setting(app_vars, "footprint_site_origins"),
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


def kafka_marks(ep: dict[str, Any]) -> tuple[dict[int, int], dict[int, int], int]:
    """The events topic's high watermark and the consumer group's committed offset of each partition,
    and the dead-letter topic's high watermarks summed."""
    consumer = Consumer(kafka_client(ep["kafka_vars"], ep["kafka"]) | {"group.id": ep["group"], "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(timeout=10)
        parts = [TopicPartition(ep["topic"], p) for p in meta.topics[ep["topic"]].partitions]
        high = {tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in parts}
        committed = {tp.partition: max(tp.offset, 0) for tp in consumer.committed(parts, timeout=10)}
        dlq = sum(
            consumer.get_watermark_offsets(TopicPartition(ep["dlq"], p), timeout=10)[1]
            for p in meta.topics[ep["dlq"]].partitions
        )
        return high, committed, dlq
    finally:
        consumer.close()


def kafka_positions(ep: dict[str, Any]) -> tuple[int, int, int]:
    """(sum of high watermarks of the events topic, of committed offsets, DLQ high watermark)."""
    high, committed, dlq = kafka_marks(ep)
    return sum(high.values()), sum(committed.values()), dlq


def caught_up_with(ep: dict[str, Any], marks: dict[int, int]) -> tuple[dict[int, int], int] | None:
    """The committed offsets and the DLQ's watermark once the group committed every partition up to
    `marks` (lag 0 at the moment the marks were read: traffic that keeps coming, such as the upgrade
    scenario's trickle, can keep the live lag above 0 however fast the consumer is), else None."""
    _, committed, dlq = kafka_marks(ep)
    return (committed, dlq) if all(committed.get(p, 0) >= mark for p, mark in marks.items()) else None


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
    # what the snippet sends from a page of the site (a page view with a referrer and UTM parameters)
    origin = ep["site_origins"][0] if ep["site_origins"] else "https://not-a-site-origin.example"
    snippet_page = {"type": "page", "properties": {"path": f"/probe/{marker}", "footprint_probe": True},
                    "context": {"page": {"referrer": "smoke.example", "search": "?utm_source=smoke&secret=1"}}}
    before = kafka_positions(ep)
    started = datetime.now(UTC)
    with httpx.Client(timeout=10, verify=ep["verify"]) as http:
        assert http.get(f"{ep['collector']}/probe-get/{marker}").status_code == 404  # no page view of it
        res = http.post(f"{ep['collector']}/v1/events", json={"batch": batch}, headers=bearer(ep["api_key"]))
        snippet = http.post(f"{ep['collector']}/v1/b", headers={"Origin": origin, "User-Agent": BROWSER,
                                                                 "Content-Type": "text/plain"},
                            content=json.dumps({"key": ep["api_key"].reveal(), "batch": [snippet_page]}))
    assert res.status_code == 202, res.text
    # the topic's partitions once the probe's events are in it (the API batch, and the snippet's page view
    # where it is allowed); other traffic may be in it too
    count = len(batch) + (snippet.status_code == 202)
    sent = wait_for("the probe's events in the events topic",
                    lambda: m if sum((m := kafka_marks(ep)[0]).values()) >= before[0] + count else None)
    return {"marker": marker, "when": when, "batch": batch, "ids": res.json()["event_ids"],
            "before": before, "sent": sent, "snippet": snippet.status_code,
            "origin_allowed": bool(ep["site_origins"]), "started": started}


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


def test_snippet_page_view_reaches_both_stores_enriched(endpoints: dict[str, Any], probe: dict[str, Any]) -> None:
    """With footprint_site_origins set, the snippet's endpoint takes a page view from the first origin;
    without, it refuses every origin (403) and produces nothing."""
    if not probe["origin_allowed"]:
        assert probe["snippet"] == 403
        return
    assert probe["snippet"] == 202
    link = f"/probe/{probe['marker']}"
    pg = wait_for("snippet page view in PostgreSQL", lambda: pg_rows(endpoints, "link = %s", (link,)))
    ch = wait_for("snippet page view in ClickHouse", lambda: ch_rows(endpoints, "link = {l:String}", {"l": link}))
    assert len(pg) == len(ch) == 1
    assert str(pg[0]["event_id"]) == str(ch[0]["event_id"])
    for row in (pg[0], ch[0]):
        assert (row["type"], row["link"], row["synthetic"]) == ("page", link, True)
        assert (row["referrer_host"], row["utm_source"]) == ("smoke.example", "smoke")
        assert (row["browser"], row["device"], row["bot"]) == ("Firefox", "desktop", False)


def test_consumer_lag_returns_to_zero_and_nothing_dead_lettered(endpoints: dict[str, Any], probe: dict[str, Any]) -> None:
    """The group commits everything the topic held once the probe's events were accepted (its lag at
    that moment back to 0), and the dead-letter topic received nothing meanwhile."""
    _, dlq = wait_for("consumer caught up with the probe's events (lag 0 at that point)",
                      lambda: caught_up_with(endpoints, probe["sent"]))
    assert dlq == probe["before"][2], "the dead-letter topic received messages during the probe"


def test_requests_to_the_collector_are_no_page_views(endpoints: dict[str, Any], probe: dict[str, Any]) -> None:
    """Only what clients send is recorded: not the probe's GET, not its API call, not the snippet call.
    (Received since the probe started: a release before 0.2.0 recorded API calls as page views.)"""
    wait_for("consumer caught up with the probe's events", lambda: caught_up_with(endpoints, probe["sent"]))
    marker = probe["marker"]
    rows = pg_rows(endpoints, "link IN (%s, '/v1/events', '/v1/b') AND received_at >= %s",
                   (f"/probe-get/{marker}", probe["started"] - timedelta(seconds=1)))
    assert rows == []


def test_synthetic_events_stay_out_of_the_rollup(endpoints: dict[str, Any], probe: dict[str, Any]) -> None:
    link = f"/probe-page/{probe['marker']}"  # the API's synthetic page view
    wait_for("the API's page view in ClickHouse", lambda: ch_rows(endpoints, "link = {l:String}", {"l": link}))
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
    with httpx.Client(timeout=10, verify=endpoints["verify"]) as http:
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


@pytest.mark.destructive  # a whole-store count: on a live production system, leave it to `footprint stats`
def test_clickhouse_holds_each_event_once_and_the_rollup_counts_each_once(
    endpoints: dict[str, Any], probe: dict[str, Any]
) -> None:
    """Rows as stored (no FINAL, every shard) and the rollup's sum against the distinct events it was
    fed from: checks that a duplicate insert cannot pass (tests/exactly_once.py)."""
    import exactly_once

    wait_for("API events in ClickHouse",
             lambda: len(ch_rows(endpoints, "event_id IN {ids:Array(UUID)}", {"ids": probe["ids"]})) == len(probe["ids"]))
    client = clickhouse_connect.get_client(**revealed(endpoints["ch"]))
    try:
        assert exactly_once.problems(client) == []
        counted, distinct = exactly_once.rollup_vs_events(client)
    finally:
        client.close()
    print(f"\nClickHouse: {distinct} distinct events, none stored twice; the rollup counts {counted}")


def test_one_visitor_has_one_id_across_every_collector_process_and_host(
    host: Any, hostvars: dict[str, Any], endpoints: dict[str, Any], component: Callable[[str], tuple[str, dict[str, Any]]],
    request: pytest.FixtureRequest,
) -> None:
    """The same browser's page views, each on a new connection (spread over the collector's workers)
    to every app host's collector, get one visitor id: the day's salt is shared (issue 28)."""
    from conftest import resolved

    apps = list(hostvars["groups"]["app"])
    if host.backend.get_hostname() != apps[0]:
        pytest.skip("runs once, through every app host's collector")
    if not endpoints["site_origins"]:
        pytest.skip("footprint_site_origins is empty: the snippet's endpoint refuses every page")
    marker = uuid.uuid4().hex
    origin = endpoints["site_origins"][0]
    for name in apps:
        ep = endpoints_of(component, resolved(request.config, name))
        for i in range(8):
            page = {"type": "page", "properties": {"path": f"/visitor-probe/{marker}/{name}/{i}", "footprint_probe": True}}
            r = httpx.post(f"{ep['collector']}/v1/b", timeout=10, verify=ep["verify"],
                           headers={"Origin": origin, "User-Agent": BROWSER, "Content-Type": "text/plain"},
                           content=json.dumps({"key": ep["api_key"].reveal(), "batch": [page]}))
            assert r.status_code == 202, r.text
    expected = 8 * len(apps)
    rows = wait_for("the visitor probes in PostgreSQL", lambda: (r := pg_rows(
        endpoints, "link LIKE %s", (f"/visitor-probe/{marker}/%",))) and len(r) == expected and r)
    ids = {row["anonymous_id"] for row in rows}
    assert len(ids) == 1, f"one browser got {len(ids)} visitor ids from {len(apps)} app host(s)' collectors"
