"""``footprint audit`` against real Kafka, PostgreSQL and the ClickHouse engine.

Events go the real way: the collector's producer (over HTTP, and ``EventProducer.deliver`` with an
earlier receive time for other hours), the real consumer into both stores. The audit then finds
them all; a row deleted from one store and a row stored twice in the other are named, exactly;
dead letters, events in flight, erased users and an id sent twice are accounted for; the consumer
group is never joined. The stores are a database of the test's own (``services.OWN_DATABASES``),
emptied before each test, so that only its events are in the hours audited.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from footprint.audit import run
from footprint.auditbook import STORES, Audit
from footprint.collector import create_app
from footprint.contract import encode_event, format_time, kafka_timestamp, make_event, parse_time
from footprint.erasure import Eraser
from footprint.metrics import CollectorMetrics
from footprint.migrate import migrate_clickhouse, migrate_postgres
from footprint.producer import EventProducer
from footprint.settings import Settings
from footprint.stores import ch_client, pg_connect
from helpers import RunningConsumer, caught_up, create_topics, own_database, settings_env, wait_for

DB = "footprint_audit"
FOOTPRINT = [sys.executable, "-m", "footprint.cli"]
HOUR = timedelta(hours=1)


@pytest.fixture(scope="module")
def own_stores(base_settings: Settings, postgres: Any) -> Settings:
    s = own_database(base_settings, postgres, DB)
    migrate_postgres(s)
    migrate_clickhouse(s)
    return s


@pytest.fixture
def s(own_stores: Settings, kafka: Any) -> Iterator[Settings]:
    """Empty stores, a fresh events topic (3 partitions), dead-letter topic and group."""
    with pg_connect(own_stores.pg_owner_dsn.get_secret_value(), "owner") as conn:
        conn.execute("TRUNCATE events, erasure_requests")
    ch = ch_client(own_stores, "owner")
    try:
        for table in ("events", "event_ids", "link_hourly", "stats_hourly"):
            ch.command(f"TRUNCATE TABLE {table}")
    finally:
        ch.close()
    name = f"audit-{uuid.uuid4().hex[:8]}"
    create_topics(kafka.bootstrap, [NewTopic(name, 3, 1), NewTopic(name + ".dlq", 1, 1)])
    yield own_stores.model_copy(update={"kafka_topic": name, "kafka_dlq_topic": name + ".dlq",
                                        "kafka_group": name + "-g"})


def _page(received: datetime, user: str = "", event_id: str | None = None) -> dict[str, Any]:
    return make_event(type="page", event_id=event_id, link="/audit", method="GET", anonymous_id="v1",
                      user_id=user or None, footprint_time=received, received_at=received)


def deliver(s: Settings, events: list[dict[str, Any]], received: datetime) -> None:
    """The collector's producer path, with ``received`` as the batch's receive time."""
    producer = EventProducer(s.kafka_bootstrap, s.kafka_topic, CollectorMetrics())
    producer.start()
    try:
        wire = [(e["event_id"], encode_event(e), e["type"]) for e in events]
        assert asyncio.run(producer.deliver(wire, 30, received)) is None
    finally:
        producer.close()


def post(s: Settings, n: int, user: str = "web") -> list[str]:
    """``n`` events over HTTP through the collector (received now); their ids."""
    batch = [{"type": "track", "event": "Audited", "userId": user, "messageId": str(uuid.uuid4())} for _ in range(n)]
    with TestClient(create_app(s)) as client:
        r = client.post("/v1/events", json={"batch": batch}, headers={"Authorization": "Bearer test-key"})
    assert r.status_code == 202, r.text
    return list(r.json()["event_ids"])


def consume_all(s: Settings) -> None:
    with RunningConsumer(s):
        wait_for(lambda: caught_up(s), what="consumer caught up")


def audit(s: Settings, since: timedelta = 4 * HOUR) -> Audit:
    return run(s, datetime.now(UTC) - since, None)


def hour_of(a: Audit, when: datetime) -> int:
    return max(i for i, b in enumerate(a.buckets) if b.start <= when)


def cli(s: Settings, *args: str, **overrides: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FOOTPRINT, "audit", *args], env=settings_env(s, log_level="WARNING", **overrides),
                          capture_output=True, text=True, timeout=120)


def test_nothing_lost_then_a_deleted_row_and_a_row_stored_twice_are_named(s: Settings, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    three, two = now - 3 * HOUR, now - 2 * HOUR
    earlier = [_page(three) for _ in range(40)]
    later = [_page(two) for _ in range(30)]
    deliver(s, earlier, three)
    deliver(s, later, two)
    posted = post(s, 25)
    consume_all(s)
    # every message's Kafka timestamp is its event's received_at (ms), HTTP or not: the same hour
    reader = Consumer({"bootstrap.servers": s.kafka_bootstrap, "group.id": "audit-probe"})
    try:
        reader.assign([TopicPartition(s.kafka_topic, p, 0) for p in range(3)])
        messages = [m for m in reader.consume(200, timeout=10) if m.error() is None]
    finally:
        reader.close()
    received = {json.loads(m.value())["event_id"]: parse_time(json.loads(m.value())["received_at"]).replace(tzinfo=UTC)
                for m in messages}
    assert len(messages) == 95
    assert all(m.timestamp()[1] == kafka_timestamp(received[json.loads(m.value())["event_id"]]) for m in messages)

    a = audit(s)
    t = a.totals
    assert t.ok and (t.accepted, t.in_flight, t.dead_letters) == (95, 0, 0)
    for store in STORES:
        st = t.stores[store]
        assert (st.stored, st.duplicates, st.missing, st.extra) == (95, 0, 0, 0), store
    assert {i: b.accepted for i, b in enumerate(a.buckets) if b.accepted} == \
        Counter(hour_of(a, at) for at in received.values())
    assert not any(b.read for b in a.buckets)  # everything balanced: no message read
    quiet = cli(s, "--since", "4h", "--quiet")  # as the timer runs it: nothing in the journal when ok
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")

    # one row gone from PostgreSQL, one event stored twice in ClickHouse (another link: never merged away)
    gone, doubled = later[7]["event_id"], posted[3]
    with pg_connect(s.pg_owner_dsn.get_secret_value(), "owner") as conn:
        assert conn.execute("DELETE FROM events WHERE event_id = %s", (gone,)).rowcount == 1
    ch = ch_client(s, "owner")
    try:
        ch.command("INSERT INTO events SELECT * REPLACE ('/twice' AS link) FROM events WHERE event_id = {id:UUID}",
                   parameters={"id": doubled})
    finally:
        ch.close()

    a = audit(s)
    t = a.totals
    assert not t.ok
    pg, chs = t.stores["postgresql"], t.stores["clickhouse"]
    assert (pg.stored, pg.missing, pg.duplicates, pg.extra) == (94, 1, 0, 0)
    assert (chs.stored, chs.missing, chs.duplicates, chs.extra) == (95, 0, 1, 0)
    hour = a.buckets[hour_of(a, two)]
    assert hour.read and hour.lost == {"postgresql": [gone]}
    assert a.buckets[hour_of(a, received[doubled])].stored["clickhouse"].duplicates == 1
    # the same findings when ClickHouse may answer only 7 rows a query (a deploy caps the reader's
    # profile at query_max_result_rows and throws beyond it): the hours read are read in pages
    paged = run(s.model_copy(update={"query_max_result_rows": 7}), a.since, None)
    assert paged.totals == t
    assert [(b.start, b.lost, b.stored) for b in paged.buckets] == [(b.start, b.lost, b.stored) for b in a.buckets]

    r = cli(s, "--since", "4h")
    print(r.stdout)
    assert r.returncode == 1 and "verdict: NOT OK" in r.stdout and f"postgresql does not hold: {gone}" in r.stdout
    quiet = cli(s, "--since", "4h", "--quiet")  # a difference is reported all the same
    assert quiet.returncode == 1 and f"postgresql does not hold: {gone}" in quiet.stdout
    textfile = tmp_path / "footprint_audit.prom"
    r = cli(s, "--since", "4h", "--json", "--textfile", str(textfile))
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    assert doc["ok"] is False and doc["totals"]["stores"]["postgresql"]["missing"] == 1
    samples = {(x.name, tuple(sorted(x.labels.items()))): x.value
               for family in text_string_to_metric_families(textfile.read_text()) for x in family.samples}
    assert samples[("footprint_audit_ok", ())] == 0
    assert samples[("footprint_audit_missing", (("store", "postgresql"),))] == 1
    assert samples[("footprint_audit_missing", (("store", "clickhouse"),))] == 0
    assert samples[("footprint_audit_duplicates", (("store", "clickhouse"),))] == 1
    assert samples[("footprint_audit_events", (("source", "accepted"),))] == 95
    assert samples[("footprint_audit_events", (("source", "dead_letter"),))] == 0
    assert samples[("footprint_audit_in_flight", ())] == 0
    assert {name for name, _ in samples} >= {
        "footprint_audit_last_run_timestamp_seconds", "footprint_audit_window_seconds",
        "footprint_kafka_group_committed_offset", "footprint_kafka_group_lag", "footprint_kafka_topic_end_offset"}
    lags = [v for (name, labels), v in samples.items() if name == "footprint_kafka_group_lag"]
    assert len(lags) == 3 and sum(lags) == 0


def test_dead_letters_and_events_in_flight_are_counted_and_the_group_left_alone(s: Settings, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    deliver(s, [_page(now - 2 * HOUR) for _ in range(20)], now - 2 * HOUR)
    bad_at = now - 90 * timedelta(minutes=1)
    bad = Producer({"bootstrap.servers": s.kafka_bootstrap})
    for value in [b"not json"] * 6 + [b'{"event_id": "nope"}'] * 4:  # dead letters to be
        bad.produce(s.kafka_topic, value=value, timestamp=kafka_timestamp(bad_at))
    assert bad.flush(30) == 0
    with RunningConsumer(s) as running:
        wait_for(lambda: caught_up(s), what="consumer caught up")
        members = _members(s)
        assigned = list(running.consumer.assigned)
        a = audit(s)
        assert _members(s) == members and running.consumer.assigned == assigned  # never joined, no rebalance
    t = a.totals
    assert t.ok and (t.accepted, t.dead_letters, t.in_flight) == (30, 10, 0)
    assert all(t.stores[x].stored == 20 for x in STORES)
    assert a.buckets[hour_of(a, bad_at)].dead_letters == 10  # the hour of the original messages
    dlq = Consumer({"bootstrap.servers": s.kafka_bootstrap, "group.id": "audit-dlq-probe"})
    try:
        dlq.assign([TopicPartition(s.kafka_dlq_topic, 0, 0)])
        letters = dlq.consume(10, timeout=10)
    finally:
        dlq.close()
    assert len(letters) == 10 and {m.timestamp()[1] for m in letters} == {kafka_timestamp(bad_at)}

    # the consumer stopped: what arrives now is in flight, no difference
    later = now - HOUR
    deliver(s, [_page(later) for _ in range(15)], later)
    a = audit(s)
    t = a.totals
    assert t.ok and (t.accepted, t.in_flight) == (45, 15)
    assert a.buckets[hour_of(a, later)].in_flight == 15
    textfile = tmp_path / "footprint_audit.prom"
    r = cli(s, "--since", "3h", "--textfile", str(textfile))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "verdict: ok" in r.stdout
    samples = {(x.name, tuple(sorted(x.labels.items()))): x.value
               for family in text_string_to_metric_families(textfile.read_text()) for x in family.samples}
    assert samples[("footprint_audit_in_flight", ())] == 15
    assert sum(v for (name, _), v in samples.items() if name == "footprint_kafka_group_lag") == 15
    assert samples[("footprint_kafka_topic_end_offset", (("partition", "0"), ("topic", s.kafka_dlq_topic)))] == 10


def _members(s: Settings) -> list[str]:
    admin = AdminClient({"bootstrap.servers": s.kafka_bootstrap})
    group = admin.describe_consumer_groups([s.kafka_group])[s.kafka_group].result(10)
    return sorted(f"{m.client_id}/{m.member_id}" for m in group.members)


def test_erased_users_and_an_id_sent_twice_are_explained(s: Settings) -> None:
    now = datetime.now(UTC)
    then = now - 2 * HOUR
    mine = [_page(then, user="erase-me") for _ in range(5)]
    others = [_page(then, user="stays") for _ in range(12)]
    deliver(s, mine + others, then)
    twice = _page(now - HOUR)
    deliver(s, [twice], now - HOUR)
    deliver(s, [dict(twice, received_at=format_time(now))], now)  # a client's retry, received later
    consume_all(s)
    eraser = Eraser(s, second_pass_after=0.1)
    eraser.request("erase-me")
    eraser.wait(60)

    a = audit(s)
    t = a.totals
    assert t.ok, a.notes
    for store in STORES:
        st = t.stores[store]
        assert (st.stored, st.missing, st.extra) == (13, 0, 0), store
        assert st.explained == {"erased": 5, "expired": 0, "repeated": 1}, store
    assert a.buckets[hour_of(a, then)].read and a.buckets[hour_of(a, now)].read


def test_usage_and_connection_errors_exit_2_naming_cause_and_fix(s: Settings) -> None:
    r = cli(s, "--since", "yesterday")
    assert r.returncode == 2 and "a span before now" in r.stderr
    r = cli(s, "--since", "1h", "--until", "3h")
    assert r.returncode == 2 and "window is empty" in r.stderr
    r = cli(s, "--textfile", "/tmp/audit.txt")
    assert r.returncode == 2 and "*.prom" in r.stderr
    r = cli(s, kafka_topic="no-such-topic")
    assert r.returncode == 2 and "no-such-topic" in r.stderr and "FOOTPRINT_KAFKA_TOPIC" in r.stderr
    r = cli(s, kafka_bootstrap="127.0.0.1:9", kafka_dlq_topic=s.kafka_dlq_topic)
    assert r.returncode == 2 and "FOOTPRINT_KAFKA_BOOTSTRAP" in r.stderr, r.stderr
    r = cli(s, pg_reader_dsn=s.pg_reader_dsn.get_secret_value().replace("reader-pw", "wrong"))
    assert r.returncode == 2 and "PostgreSQL (reader)" in r.stderr
    assert "Traceback" not in r.stderr
