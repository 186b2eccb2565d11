"""Poison messages straight into the topic (not through the collector), interleaved with valid events:
the consumer commits past every one of them, dead-letters each with its reason, and stores every
valid event exactly once in both stores."""

from __future__ import annotations

import json
import uuid
from typing import Any

from confluent_kafka import Producer

from footprint.contract import MAX_DEPTH, encode_event
from footprint.settings import Settings
from footprint.sinks import ClickHouseSink
from helpers import RunningConsumer, caught_up, ch_client, ch_ids, gen_events, pg_ids, read_dlq, wait_for


def _raw(good: dict[str, Any], **changes: Any) -> bytes:
    d = dict(good, event_id=str(uuid.uuid4()))
    d.update(changes)
    return json.dumps(d, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _replace(good: dict[str, Any], old: bytes, new: bytes) -> bytes:
    raw = json.dumps(dict(good, event_id=str(uuid.uuid4()))).encode()
    assert old in raw
    return raw.replace(old, new, 1)


def poison_classes(good: dict[str, Any]) -> dict[str, tuple[bytes | None, str]]:
    """name -> (message value, a word the dead-letter reason must contain)."""
    props = b'"properties": {}'
    deep = b'{"a": ' * MAX_DEPTH + b"1" + b"}" * MAX_DEPTH
    return {
        "not utf-8": (b"\xff\xfe not json", "UTF-8"),
        "not json": (b"{nope", "JSON"),
        "json array": (b"[1, 2]", "object"),
        "json string": (b'"event"', "object"),
        "tombstone": (None, "tombstone"),
        "empty": (b"", "JSON"),
        "missing time": (_raw({k: v for k, v in good.items() if k != "footprint_time"}), "footprint_time"),
        "naive time": (_raw(good, footprint_time="2026-11-01T10:00:00"), "footprint_time"),
        "underscore time": (_raw(good, footprint_time="2027-01-05_10:00:00+00:00"), "RFC 3339"),
        "time before 2000": (_raw(good, footprint_time="1999-12-31T23:59:59Z"), "2000..2199"),
        "time year 1 overflow": (_raw(good, footprint_time="0001-01-01T00:00:00+01:00"), "2000..2199"),
        "time year 9999 overflow": (_raw(good, received_at="9999-12-31T23:59:59-01:00"), "2000..2199"),
        "bad type": (_raw(good, type="purchase"), "type"),
        "bad id": (_raw(good, event_id="not-a-uuid"), "event_id"),
        "unknown field": (_raw(good, colour="red"), "unknown field"),
        "schema v2": (_raw(good, schema_version=2), "schema_version"),
        "nul in link": (_raw(good, link="/x\x00y"), "NUL"),
        "nul in a property key": (_replace(good, props, b'"properties": {"a\\u0000": 1}'), "NUL"),
        "lone surrogate value": (_replace(good, props, b'"properties": {"k": "\\ud800"}'), "surrogate"),
        "lone surrogate key": (_replace(good, props, b'"properties": {"\\udc00": 1}'), "surrogate"),
        "number 1e400": (_replace(good, props, b'"properties": {"x": 1e400}'), "out of range"),
        "NaN": (_replace(good, props, b'"properties": {"x": NaN}'), "NaN"),
        "-Infinity": (_replace(good, props, b'"properties": {"x": -Infinity}'), "Infinity"),
        "too deep": (_replace(good, props, b'"properties": {"d": ' + deep + b"}"), "deeper"),
        "deep enough to crash a recursive parser": (
            _replace(good, props, b'"properties": {"d": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"), "deep"),
        "link over 2048 bytes": (_raw(good, link="/" + "€" * 2048), "link"),
        # just over the 1,000,000 bytes a default producer can send: it must still reach the DLQ
        "over a megabyte": (b"{" + b"x" * 1_040_000, "JSON"),
    }


def test_every_poison_message_is_dead_lettered_and_every_valid_event_stored_once(settings: Settings) -> None:
    good = gen_events(len(poison_classes(gen_events(1)[0])) * 3 + 30, seed=131)
    poison = poison_classes(good[0])
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "message.max.bytes": 2_000_000,
                         "enable.idempotence": True, "acks": "all"})
    for i, (value, _reason) in enumerate(poison.values()):  # each poison message between valid ones
        for ev in good[i * 3:i * 3 + 3]:
            producer.produce(settings.kafka_topic, value=encode_event(ev), key=ev["event_id"])
        producer.produce(settings.kafka_topic, value=value, key=f"poison-{i}")
    for ev in good[len(poison) * 3:]:
        producer.produce(settings.kafka_topic, value=encode_event(ev), key=ev["event_id"])
    assert producer.flush(60) == 0

    with RunningConsumer(settings):
        wait_for(lambda: caught_up(settings), timeout=120, what="committed past everything")
        dead = read_dlq(settings, len(poison))
    assert len(dead) == len(poison)
    by_key = {m.key().decode(): m for m in dead}
    for i, (name, (value, word)) in enumerate(poison.items()):
        m = by_key[f"poison-{i}"]
        headers = {k: v for k, v in m.headers()}
        assert word in headers["footprint.reason"].decode(), (name, headers["footprint.reason"])
        assert headers["footprint.source.topic"].decode() == settings.kafka_topic
        if value is not None and len(value) > settings.dlq_max_value_bytes:
            assert int(headers["footprint.truncated"]) == len(value)
            assert m.value() == value[: settings.dlq_max_value_bytes]
        else:
            assert m.value() == value, name
    ids = [e["event_id"] for e in good]
    assert pg_ids(settings, ids) == {i: 1 for i in ids}
    assert ch_ids(settings, ids) == {i: 1 for i in ids}


def test_values_in_other_spellings_are_stored_identically_in_both_stores(settings: Settings) -> None:
    """Each of these made the stores disagree or stalled the consumer when the stores parsed the raw text."""
    base = gen_events(1, seed=132)[0]
    cases = {
        "{f30f80e7-f4d8-442b-8881-3e167e3c04e0}": ("event_id", "f30f80e7-f4d8-442b-8881-3e167e3c04e0"),
        "2027-01-05T10:00:00+20:00": ("footprint_time", "2027-01-04 14:00:00"),
        "2027-01-05t10:00:00z": ("footprint_time", "2027-01-05 10:00:00"),
        "2026-11-01T10:59:59.9999999Z": ("footprint_time", "2026-11-01 10:59:59.999999"),
        "2026-12-31T23:59:59.999999999Z": ("footprint_time", "2026-12-31 23:59:59.999999"),
    }
    raws = []
    for given, (field, _stored) in cases.items():
        d = dict(base, event_id=str(uuid.uuid4()))
        d[field] = given
        raws.append(json.dumps(d).encode())
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    for raw in raws:
        producer.produce(settings.kafka_topic, value=raw, key=b"k")
    assert producer.flush(30) == 0
    ids = [json.loads(r)["event_id"].strip("{}") for r in raws]
    with RunningConsumer(settings):
        wait_for(lambda: caught_up(settings), what="all committed")
    assert pg_ids(settings, ids) == {i: 1 for i in ids} == ch_ids(settings, ids)
    c = ch_client(settings)
    try:
        ch = {r[0]: r[1] for r in c.query(
            "SELECT toString(event_id), toString(footprint_time) FROM events FINAL"
            " WHERE toString(event_id) IN {ids:Array(String)}", parameters={"ids": ids}).result_rows}
    finally:
        c.close()
    import psycopg

    with psycopg.connect(settings.pg_owner_dsn.get_secret_value()) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        pg = {r[0]: r[1] for r in conn.execute(
            "SELECT event_id::text, to_char(footprint_time, 'YYYY-MM-DD HH24:MI:SS.US') FROM events"
            " WHERE event_id::text = ANY(%s)", (ids,)).fetchall()}
    for event_id, (field, stored) in zip(ids, cases.values(), strict=True):
        if field == "footprint_time":
            assert ch[event_id].startswith(stored) and pg[event_id].startswith(stored), (stored, ch, pg)
        assert ch[event_id][:26] == pg[event_id][:26]


def test_a_store_refusing_one_event_while_healthy_is_data_decided_by_its_probe(settings: Settings) -> None:
    """Bypassing the contract: ClickHouse refuses an id in braces (code 376, on no list) while it takes
    its known-good probe event: only that event is rejected, the others are stored."""
    from footprint.storewrite import store

    events = gen_events(9, seed=133)
    docs = {e["event_id"]: encode_event(e) for e in events}
    bad_id = "{" + events[4]["event_id"] + "}"
    docs[bad_id] = docs.pop(events[4]["event_id"]).replace(events[4]["event_id"].encode(), bad_id.encode())
    sink = ClickHouseSink(settings)
    try:
        rejected = store(sink, docs)
    finally:
        sink.close()
    assert [key for key, _ in rejected] == [bad_id] and "clickhouse refused it" in rejected[0][1]
    stored = [e["event_id"] for i, e in enumerate(events) if i != 4]
    assert ch_ids(settings, stored) == {i: 1 for i in stored}
