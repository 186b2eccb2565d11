"""End to end against real Kafka 4.0, PostgreSQL and the ClickHouse engine."""

from __future__ import annotations

import json
import uuid
from datetime import date
from typing import Any

import psycopg
import pytest

from footprint.contract import message_id_uuid
from footprint.migrate import load, migrate_clickhouse, migrate_postgres
from footprint.settings import Settings
from helpers import (
    RunningConsumer,
    caught_up,
    ch_client,
    ch_ids,
    committed,
    end_offsets,
    gen_events,
    pg_ids,
    produce,
    read_dlq,
    wait_for,
)


def test_migrate_is_idempotent_and_roles_are_separated(base_settings: Settings) -> None:
    assert migrate_postgres(base_settings) == []
    assert migrate_clickhouse(base_settings) == []
    with (
        psycopg.connect(base_settings.pg_dsn.get_secret_value()) as writer,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        writer.execute("CREATE TABLE writer_may_not (x int)")
    with psycopg.connect(base_settings.pg_reader_dsn.get_secret_value()) as reader:
        assert reader.execute("SELECT count(*) >= 0 FROM events").fetchone() == (True,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute("INSERT INTO events (event_id, type, footprint_time, received_at, schema_version)"
                           " VALUES (gen_random_uuid(), 'page', now(), now(), 1)")
    with psycopg.connect(base_settings.pg_owner_dsn.get_secret_value()) as owner:
        versions = [r[0] for r in owner.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    assert versions == [m.version for m in load("postgres")]  # every migration applied, once


def test_every_event_lands_exactly_once_in_both_stores(settings: Settings) -> None:
    events = gen_events(3000, seed=11)
    ids = [e["event_id"] for e in events]
    produce(settings, events)
    with RunningConsumer(settings):
        wait_for(lambda: len(pg_ids(settings, ids)) == len(ids) and len(ch_ids(settings, ids)) == len(ids),
                 what="all events in both stores")
        wait_for(lambda: committed(settings) == end_offsets(settings), what="offsets committed to the end")
    assert set(pg_ids(settings, ids).values()) == {1}
    # not even a transient duplicate in ClickHouse: one insert per batch, each event once
    assert ch_ids(settings, ids, final=False) == {i: 1 for i in ids}


def test_replaying_the_same_messages_adds_nothing(settings: Settings) -> None:
    events = gen_events(1500, seed=12)
    ids = [e["event_id"] for e in events]
    produce(settings, events)
    produce(settings, events[:700])  # the same messages again (producer retry / replay)
    with RunningConsumer(settings):
        wait_for(lambda: committed(settings) == end_offsets(settings), what="all consumed")
    # and a full replay by a fresh consumer group from offset 0
    replay = settings.model_copy(update={"kafka_group": settings.kafka_group + "-replay"})
    with RunningConsumer(replay):
        wait_for(lambda: committed(replay) == end_offsets(replay), what="replay consumed")
    assert pg_ids(settings, ids) == {i: 1 for i in ids}
    assert ch_ids(settings, ids) == {i: 1 for i in ids}


def test_poison_messages_go_to_the_dead_letter_topic(settings: Settings) -> None:
    good = gen_events(50, seed=13)
    missing = dict(good[0], event_id=str(uuid.uuid4()))
    del missing["footprint_time"]
    naive = dict(good[1], event_id=str(uuid.uuid4()), footprint_time="2026-11-01T10:00:00")
    bad_type = dict(good[2], event_id=str(uuid.uuid4()), type="purchase")
    overflow = json.dumps(dict(good[3], event_id=str(uuid.uuid4()), properties={"x": 1})).encode() \
        .replace(b'"x": 1', b'"x": 1e1000000')  # valid JSON, but no store can hold the number
    poison = [b"\xff\xfe not json", json.dumps(missing).encode(), json.dumps(naive).encode(),
              json.dumps(bad_type).encode(), b"[]", overflow]
    produce(settings, poison, keys=[f"bad-{i}" for i in range(len(poison))])
    produce(settings, good)
    with RunningConsumer(settings):
        wait_for(lambda: committed(settings) == end_offsets(settings), what="all consumed")
        dead = read_dlq(settings, len(poison))
    assert len(dead) == len(poison)
    assert sorted(m.value() for m in dead) == sorted(poison)
    for m in dead:
        headers = {k: v.decode() for k, v in m.headers()}
        assert headers["footprint.source.topic"] == settings.kafka_topic
        assert int(headers["footprint.source.partition"]) in (0, 1, 2)
        assert int(headers["footprint.source.offset"]) >= 0
        assert headers["footprint.reason"]
    reasons = " | ".join(dict(m.headers())["footprint.reason"].decode() for m in dead)
    assert "footprint_time" in reasons and "type" in reasons and "out of range" in reasons
    ids = [e["event_id"] for e in good]
    assert pg_ids(settings, ids) == {i: 1 for i in ids}
    bad_ids = [missing["event_id"], naive["event_id"], bad_type["event_id"]]
    assert pg_ids(settings, bad_ids) == {} and ch_ids(settings, bad_ids) == {}


def test_rebalance_between_two_consumers_loses_nothing(settings: Settings) -> None:
    first = gen_events(4000, seed=14)
    second = gen_events(4000, seed=15)
    ids = [e["event_id"] for e in first + second]
    produce(settings, first)
    with RunningConsumer(settings):
        wait_for(lambda: len(pg_ids(settings, ids[:500])) > 0, what="first consumer working")
        with RunningConsumer(settings):  # joins the group -> rebalance mid-stream
            produce(settings, second)
            wait_for(lambda: committed(settings) == end_offsets(settings), timeout=90, what="all committed")
    assert pg_ids(settings, ids) == {i: 1 for i in ids}
    assert ch_ids(settings, ids) == {i: 1 for i in ids}


def test_tail_prints_events_as_they_arrive(settings: Settings) -> None:
    import io
    import threading

    from footprint.tail import tail

    events = gen_events(5, seed=16)
    produce(settings, events)
    out = io.StringIO()
    stop = threading.Event()
    n = tail(settings, stop, from_beginning=True, max_events=5, out=out)
    assert n == 5
    printed = {json.loads(line)["event_id"] for line in out.getvalue().splitlines()}
    assert printed == {e["event_id"] for e in events}


def _dict(rows: Any) -> dict[Any, Any]:
    return {r[0]: r[1] for r in rows}


def test_a_retry_that_differs_is_one_row_in_both_stores_and_the_first_wins(settings: Settings) -> None:
    """The same event_id (a client retry with the same messageId) with another type, hour and link:
    PostgreSQL and ClickHouse each keep exactly the first version, and no statistic counts the second."""
    from footprint.stats import run_stats

    first = gen_events(1, seed=51)[0]
    first.update(event_id=message_id_uuid(f"m-{uuid.uuid4()}"), type="track", event="Signed Up", method="", link="",
                 footprint_time="2026-11-03T10:15:00.000000Z")
    retry = dict(first, type="page", event="", method="GET", link=f"/retry-{uuid.uuid4().hex[:6]}",
                 footprint_time="2026-11-03T17:45:00.000000Z", properties={"second": True})
    produce(settings, [first])
    with RunningConsumer(settings):
        wait_for(lambda: caught_up(settings), what="first version committed")
    produce(settings, [retry])  # a later batch: the batch's own dedup cannot hide it
    with RunningConsumer(settings):
        wait_for(lambda: caught_up(settings), what="retry committed")
    key = [first["event_id"]]
    assert pg_ids(settings, key) == {first["event_id"]: 1}
    assert ch_ids(settings, key, final=False) == {first["event_id"]: 1}  # not even a row waiting for a merge
    with psycopg.connect(settings.pg_owner_dsn.get_secret_value()) as c:
        assert c.execute("SELECT type, link FROM events WHERE event_id = %s", key).fetchone() == ("track", "")
    ch = ch_client(settings)
    try:
        assert ch.query("SELECT type, link FROM events WHERE toString(event_id) = {i:String}",
                        parameters={"i": key[0]}).result_rows == [("track", "")]
        assert ch.command("SELECT count() FROM link_hourly WHERE link = {l:String}",
                          parameters={"l": retry["link"]}) == 0
    finally:
        ch.close()
    assert all(r.same for r in run_stats(settings, date(2026, 11, 3), date(2026, 11, 4)))
