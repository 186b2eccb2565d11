"""Property-based, end to end: events generated from the contract (edge values included) go through
the real collector and Kafka; whatever the collector accepts, both stores end up holding identical
values; whatever it refuses, nothing is produced."""

from __future__ import annotations

import dataclasses
import json
import os
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from footprint.collector import create_app
from footprint.contract import COLUMNS, MAX_DEPTH, Column, column_disagreements, loads, validate_batch
from footprint.metrics import CollectorMetrics
from footprint.producer import EventProducer
from footprint.settings import Settings
from helpers import RunningConsumer, ch_client, wait_for

EXAMPLES = int(os.environ.get("FOOTPRINT_PROPERTY_EXAMPLES", "150"))
AUTH = {"Authorization": "Bearer test-key", "Content-Type": "application/json"}
settings_for_examples = settings(
    max_examples=EXAMPLES, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)

edge_text = st.sampled_from(["", "a", "\x00", "x\x00y", "\ud800", "\udc00x", "\ud83d\ude00", "€" * 90, "é",
                             "\u2028", "\t\n", "\\u0000", "'; DROP TABLE events; --", "😀" * 60, " "])
text = st.one_of(edge_text, st.text(st.characters(codec=None), max_size=30))
numbers = st.one_of(st.integers(min_value=-(10**40), max_value=10**40),
                    st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0.1, -0.0, 1e308, 5e-324, 2**53 + 1, 10**20, 1.5e-10]))
leaf = st.one_of(st.none(), st.booleans(), numbers, text)
json_value = st.recursive(leaf, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                        st.dictionaries(text, inner, max_size=3)),
                          max_leaves=10)


@st.composite
def deep(draw: st.DrawFn) -> dict[str, Any]:
    value: Any = draw(leaf)
    for _ in range(draw(st.integers(min_value=1, max_value=MAX_DEPTH + 1))):
        value = {"d": value}
    return dict(value) if isinstance(value, dict) else {"d": value}


@st.composite
def timestamp(draw: st.DrawFn) -> str:
    local = draw(st.datetimes(min_value=datetime(1998, 1, 1), max_value=datetime(2201, 12, 31)))
    minutes = draw(st.integers(min_value=-(24 * 60), max_value=24 * 60))
    digits = draw(st.integers(min_value=0, max_value=9))
    sep = draw(st.sampled_from("TTTt _"))
    fraction = ("." + f"{local.microsecond:06d}{draw(st.integers(0, 999)):03d}"[:digits]) if digits else ""
    if draw(st.booleans()):
        zone = draw(st.sampled_from("Zz"))
    else:
        zone = f"{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return local.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + fraction + zone


@st.composite
def inbound_event(draw: st.DrawFn) -> dict[str, Any]:
    type_ = draw(st.sampled_from(["page", "track", "identify", "group"]))
    ev: dict[str, Any] = {"type": type_}
    ident = draw(st.sampled_from(["userId", "anonymousId", "both"]))
    for key in ("userId", "anonymousId"):
        if ident in (key, "both"):
            ev[key] = draw(st.one_of(st.just("visitor-1"), text))
    if draw(st.booleans()):
        ev["timestamp"] = draw(st.one_of(timestamp(), st.sampled_from([
            "2028-02-29T23:59:59.9999999+00:00", "2026-03-29T02:30:00+02:00", "2026-10-25T02:30:00+01:00",
            "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2026-11-01T10:00:00", "nope"])))
    if draw(st.booleans()):
        ev["messageId"] = draw(st.one_of(st.uuids().map(str), text))
    obj = st.one_of(st.dictionaries(text, json_value, max_size=4), deep())
    if type_ == "track":
        ev["event"] = draw(st.one_of(st.just("Signed Up"), text))
        ev["properties"] = draw(obj)
    elif type_ == "page":
        ev["properties"] = {"path": draw(st.one_of(st.just("/pricing"), text)), **draw(obj)}
    elif type_ == "group":
        ev["groupId"] = draw(st.one_of(st.just("acme"), text))
        ev["traits"] = draw(obj)
    else:
        ev["traits"] = draw(obj)
    return ev


def _dec(text: str) -> Any:
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


def _pg_value(col: Column) -> str:
    if col.pg_type == "timestamptz":
        return f"to_char({col.name} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"
    return f"{col.name}::text" if col.pg_type in ("uuid", "jsonb") else col.name


def _ch_value(col: Column) -> str:
    return f"toString({col.name})" if col.ch_type == "UUID" or col.kind == "time" else col.name


def _rows(settings: Settings, ids: list[str]) -> tuple[dict[str, tuple[Any, ...]], dict[str, tuple[Any, ...]]]:
    with psycopg.connect(settings.pg_owner_dsn.get_secret_value()) as conn:
        pg = {r[0]: r for r in conn.execute(
            f"SELECT {', '.join(_pg_value(c) for c in COLUMNS)} FROM events WHERE event_id::text = ANY(%s)",
            (ids,)).fetchall()}
    c = ch_client(settings)
    try:
        ch = {r[0]: r for r in c.query(
            f"SELECT {', '.join(_ch_value(c) for c in COLUMNS)} FROM events FINAL"
            " WHERE toString(event_id) IN {ids:Array(String)}", parameters={"ids": ids}).result_rows}
    finally:
        c.close()
    return pg, ch


def _comparable(col: Column, value: Any) -> Any:
    if col.kind == "object":
        return _dec(value) if isinstance(value, str) else value
    if col.kind == "time" and isinstance(value, str):
        return value[:26]
    return value


def test_whatever_the_collector_accepts_both_stores_hold_identically(settings: Settings) -> None:
    producer = EventProducer(settings.kafka_bootstrap, settings.kafka_topic, CollectorMetrics())
    producer.start()
    expected: dict[str, dict[str, Any]] = {}
    counts = {"accepted": 0, "refused": 0}

    def produced() -> float:
        return sum(s.value for s in producer.metrics.enqueued.collect()[0].samples if s.name.endswith("_total"))

    try:
        with TestClient(create_app(settings, producer)) as client:

            @settings_for_examples
            @given(batch=st.lists(inbound_event(), min_size=1, max_size=4))
            def post(batch: list[dict[str, Any]]) -> None:
                body = json.dumps({"batch": batch}).encode()  # lone surrogates travel as \\ud800 escapes
                before = produced()
                r = client.post("/v1/events", content=body, headers=AUTH)
                assert r.status_code in (202, 400), (r.status_code, r.text)
                if r.status_code == 400:
                    counts["refused"] += 1
                    assert produced() == before, "a refused batch produced events"
                    return
                counts["accepted"] += 1
                ids = r.json()["event_ids"]
                assert produced() == before + len(batch)
                mine = validate_batch(loads(body), datetime.now(UTC), 500)  # same rules, same canonical values
                for event_id, want, given_ in zip(ids, mine, batch, strict=True):
                    want = dict(want, event_id=event_id)
                    if "timestamp" not in given_:
                        want.pop("footprint_time")
                    want.pop("received_at")
                    expected.setdefault(event_id, want)  # first write wins (a repeated messageId)

            post()
    finally:
        assert producer.close(timeout=30) == 0
    assert counts["accepted"] >= EXAMPLES // 10 and counts["refused"] >= EXAMPLES // 10, counts

    ids = list(expected)
    with RunningConsumer(settings):
        wait_for(lambda: [len(x) for x in _rows(settings, ids)] == [len(ids)] * 2, timeout=120,
                 what="every accepted event in both stores")
    pg, ch = _rows(settings, ids)
    for event_id, want in expected.items():
        for i, col in enumerate(COLUMNS):
            a, b = _comparable(col, pg[event_id][i]), _comparable(col, ch[event_id][i])
            assert a == b, (col.name, a, b)
            if col.name in want:
                w = want[col.name]
                w = _dec(json.dumps(w)) if col.kind == "object" else w
                w = w.replace("T", " ").rstrip("Z") if col.kind == "time" else w
                assert a == w, (col.name, a, w)


# PostgreSQL's names of the field table's types (format_type spells timestamptz out)
_PG_TYPE_NAMES = {"timestamp with time zone": "timestamptz"}


def test_the_migrated_stores_hold_exactly_the_field_tables_columns(base_settings: Settings) -> None:
    """Both stores' events tables after every migration (as the fixtures applied them): the field table's
    columns, in its order and of its types (``tests/unit/test_contract_migrations.py`` reads the SQL)."""
    with psycopg.connect(base_settings.pg_owner_dsn.get_secret_value()) as c:
        pg = [(name, _PG_TYPE_NAMES.get(type_, type_)) for name, type_ in c.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = 'events'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum").fetchall()]
    ch_conn = ch_client(base_settings)
    try:
        ch = [(r[0], r[1]) for r in ch_conn.query(
            "SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = 'events'"
            " ORDER BY position").result_rows]
    finally:
        ch_conn.close()
    assert column_disagreements(pg, "postgres") == []
    assert column_disagreements(ch, "clickhouse") == []
    altered = [dataclasses.replace(c, ch_type="String") if c.name == "browser" else c for c in COLUMNS]
    assert column_disagreements(ch, "clickhouse", altered) == [  # and it can fail here too
        "clickhouse: column browser is LowCardinality(String) in the store, String in the field table"]

