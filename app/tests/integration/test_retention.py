"""Retention on the real stores: months leave both stores whole, the rollups outlive the raw events,
the id lookup forgets an id with its event, and an install of the previous release moves over to the
partitioned table with every row as it was.

Each test has databases of its own (``services.OWN_DATABASES``): the job drops months, and the other
tests' events must not be among them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from footprint import retention
from footprint.contract import dumps, make_event, message_id_uuid
from footprint.migrate import load, migrate_clickhouse, migrate_postgres
from footprint.pgrows import COPY_STAGE, INSERT_FROM_STAGE, STAGE_TABLE, STAGE_TYPES, rows
from footprint.retention import month_start
from footprint.settings import Settings
from footprint.sinks import ClickHouseSink, PostgresSink
from footprint.stores import ch_client, pg_connect
from helpers import own_database


def _page(when: datetime, event_id: str | None = None) -> tuple[str, bytes]:
    event = make_event(type="page", event_id=event_id, link=f"/m/{when:%Y-%m}", method="GET",
                       anonymous_id=f"v-{uuid.uuid4().hex[:6]}", footprint_time=when, received_at=when)
    return event["event_id"], dumps(event)


def _write(settings: Settings, docs: dict[str, bytes]) -> tuple[int, int]:
    pg, ch = PostgresSink(settings.pg_dsn.get_secret_value()), ClickHouseSink(settings)
    try:
        return pg.write(docs), ch.write(docs)
    finally:
        pg.close()
        ch.close()


def _per_month(settings: Settings) -> tuple[dict[str, int], dict[str, int], dict[str, int], dict[str, int]]:
    """Raw events per month in PostgreSQL and ClickHouse, ClickHouse's rollup and id lookup per month."""
    with pg_connect(settings.pg_reader_dsn.get_secret_value(), "reader") as conn:
        pg = dict(conn.execute("SELECT to_char(footprint_time, 'YYYY-MM'), count(*) FROM events"
                               " WHERE NOT synthetic GROUP BY 1").fetchall())
    ch = ch_client(settings, "reader")
    try:
        raw = dict(ch.query("SELECT formatDateTime(footprint_time, '%Y-%m'), count() FROM events FINAL"
                            " WHERE NOT synthetic GROUP BY 1").result_rows)
        rollup = dict(ch.query("SELECT formatDateTime(hour, '%Y-%m'), sum(events) FROM stats_hourly"
                               " GROUP BY 1").result_rows)
        # the daily breakdowns keep the same months (every event counted once per dimension: here the devices)
        daily = dict(ch.query("SELECT formatDateTime(day, '%Y-%m'), sum(events) FROM breakdowns_daily"
                              " WHERE dimension = 'device' AND NOT bot GROUP BY 1").result_rows)
        assert daily == rollup, (daily, rollup)
        links = dict(ch.query("SELECT formatDateTime(day, '%Y-%m'), sum(events) FROM links_daily"
                              " GROUP BY 1").result_rows)
        assert links == rollup, (links, rollup)  # and the daily links
        sketched = {m for (m,) in ch.query("SELECT DISTINCT formatDateTime(day, '%Y-%m') FROM visitors_daily")
                    .result_rows}
        assert sketched == set(rollup), (sketched, rollup)  # and the visitors' daily sketches
        ids = dict(ch.query("SELECT formatDateTime(footprint_time, '%Y-%m'), count() FROM event_ids FINAL"
                            " WHERE event_id != toUUID('00000000-0000-4000-8000-00000000ca9a') GROUP BY 1").result_rows)
    finally:
        ch.close()
    return pg, {k: int(v) for k, v in raw.items()}, {k: int(v) for k, v in rollup.items()}, \
        {k: int(v) for k, v in ids.items()}


def _partitions(settings: Settings) -> list[str]:
    with pg_connect(settings.pg_owner_dsn.get_secret_value(), "owner") as conn:
        return [name for name, _low, _end in retention.pg_partitions(conn)]


def _label(day: date, months: int) -> str:
    return f"{month_start(day, months):%Y-%m}"


def test_months_leave_both_stores_whole_and_the_rollups_keep_them(base_settings: Settings, postgres: Any) -> None:
    s = own_database(base_settings, postgres, "footprint_retention", retention_months=2, rollup_retention_months=4)
    migrate_postgres(s)
    migrate_clickhouse(s)
    today = datetime.now(UTC).date()
    months = range(-6, 2)  # six months back to next month, three events each
    docs = dict(_page(datetime.combine(month_start(today, k) + timedelta(days=9, hours=12), datetime.min.time(),
                                       UTC) + timedelta(minutes=i))
                for k in months for i in range(3))
    assert _write(s, docs) == (len(docs), len(docs))
    pg, ch, rollup, ids = _per_month(s)
    assert pg == ch == rollup == ids == {_label(today, k): 3 for k in months}

    report = retention.run(s, today=today)
    kept, rolled = [k for k in months if k >= -2], [k for k in months if k >= -4]
    pg, ch, rollup, ids = _per_month(s)
    assert pg == ch == ids == {_label(today, k): 3 for k in kept}, "the raw months past the retention are gone"
    assert rollup == {_label(today, k): 3 for k in rolled}, "the rollups keep their own, longer retention"
    # a fresh install's older months sat in the default partition: the kept ones now have partitions
    # of their own, the expired rows were deleted there (no partition held them)
    assert {f"events_{month_start(today, k):%Y_%m}" for k in (-2, -1)} <= set(report.pg_created)
    assert report.pg_default_deleted == 4 * 3 and report.pg_dropped == []
    assert {f"events:{month_start(today, k):%Y%m}" for k in (-6, -5, -4, -3)} <= set(report.ch_dropped)

    # a messageId stored two months ago and retried now with another time: one row, the first one
    message_id = f"retry-{uuid.uuid4()}"
    event_id = message_id_uuid(message_id)
    first = datetime.combine(month_start(today, -1), datetime.min.time(), UTC) + timedelta(days=3)
    assert _write(s, dict([_page(first, event_id)])) == (1, 1)
    assert _write(s, dict([_page(datetime.now(UTC), event_id)])) == (0, 0), "first write wins across partitions"

    # two months later the partitions of then-expired months are dropped as tables
    later = month_start(today, 2)
    report = retention.run(s, today=later)
    assert {f"events_{month_start(today, k):%Y_%m}" for k in (-2, -1)} <= set(report.pg_dropped)
    assert not {f"events_{month_start(today, k):%Y_%m}" for k in (-2, -1)} & set(_partitions(s))
    pg, ch, _rollup, ids = _per_month(s)
    assert pg == ch == ids == {_label(today, k): 3 for k in (0, 1)}
    assert report.ch_ids_deleted >= 2 * 3 + 1
    # the retried messageId's first write has left with its month: a retry now is stored again, in both
    assert _write(s, dict([_page(datetime.now(UTC), event_id)])) == (1, 1)

    again = retention.run(s, today=later)
    assert (again.pg_created, again.pg_dropped, again.ch_dropped, again.ch_ids_deleted, again.ch_ttl_set) == \
        ([], [], [], 0, []), "a second run finds nothing to do"
    owner = ch_client(s, "owner")
    try:
        create = str(owner.command("SHOW CREATE TABLE events"))
    finally:
        owner.close()
    assert retention.ttl_expression("footprint_time", 2) in create


def _add_later_columns(s: Settings) -> None:
    """The country column (postgres 0008, clickhouse 0007) on the previous release's tables: this test writes
    as the previous release did with this release's writers, which write every column of the contract (the
    migrations add it IF NOT EXISTS, so applying them later changes nothing)."""
    [pg] = [m.text for m in load("postgres") if m.name == "0008_country.sql"]
    [ch] = [m.text for m in load("clickhouse") if m.name == "0007_country.sql"]
    with pg_connect(s.pg_owner_dsn.get_secret_value(), "owner") as conn:
        conn.execute(pg)
    owner = ch_client(s, "owner")
    try:
        owner.command(ch.replace("{db}", s.ch_database))
    finally:
        owner.close()


def test_previous_release_table_moves_over_with_every_row(base_settings: Settings, postgres: Any) -> None:
    s = own_database(base_settings, postgres, "footprint_upgrade")
    migrate_postgres(s, until=5)
    migrate_clickhouse(s, until=4)
    _add_later_columns(s)
    now = datetime.now(UTC)
    times = [datetime(2024, 3, 1, tzinfo=UTC), now - timedelta(days=40), now,
             datetime.combine(month_start(now.date(), 1), datetime.min.time(), UTC) + timedelta(hours=1),
             datetime(2150, 6, 1, tzinfo=UTC)]
    docs = dict(_page(t) for t in times)
    retried = message_id_uuid(f"old-{uuid.uuid4()}")
    docs.update([_page(now - timedelta(days=400), retried)])
    # the previous release's writes: its staging insert (ON CONFLICT on the id alone), ClickHouse's insert
    old_insert = INSERT_FROM_STAGE[:INSERT_FROM_STAGE.index(" FROM events_copy")] + \
        " FROM events_copy ON CONFLICT (event_id) DO NOTHING"
    with pg_connect(s.pg_dsn.get_secret_value(), "writer") as conn:
        conn.execute(STAGE_TABLE)
        with conn.cursor() as cur:
            with cur.copy(COPY_STAGE) as copy:
                copy.set_types(STAGE_TYPES)
                for row in rows(docs.values()):
                    copy.write_row(row)
            cur.execute(old_insert)
    with pg_connect(s.pg_owner_dsn.get_secret_value(), "owner") as conn:
        before = conn.execute("SELECT e::text FROM events e ORDER BY event_id").fetchall()
    sink = ClickHouseSink(s)
    sink.connect()
    try:
        sink._insert(list(docs.values()))
    finally:
        sink.close()

    assert "0006_monthly_partitions.sql" in migrate_postgres(s)
    assert "0005_retention.sql" in migrate_clickhouse(s)
    with pg_connect(s.pg_owner_dsn.get_secret_value(), "owner") as conn:
        after = conn.execute("SELECT e::text FROM events e ORDER BY event_id").fetchall()
        where = dict(conn.execute("SELECT event_id::text, tableoid::regclass::text FROM events").fetchall())
        key = conn.execute("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'events_pkey'"
                           " AND conrelid = 'events'::regclass").fetchone()
    assert after == before, "every row exactly as it was"
    assert key == ("PRIMARY KEY (event_id, footprint_time)",)
    ids = list(docs)
    assert where[ids[0]] == where[ids[1]] == where[ids[2]] == "events_legacy"
    assert where[ids[3]] == f"events_{month_start(now.date(), 1):%Y_%m}"
    assert where[ids[4]] == "events_default"
    # the retried messageId, first stored by the previous release: still one row, in both stores
    assert _write(s, dict([_page(now, retried)])) == (0, 0)
    owner = ch_client(s, "owner")
    try:
        times_ch = dict(owner.query("SELECT toString(event_id), footprint_time FROM event_ids FINAL").result_rows)
    finally:
        owner.close()
    assert {k: v.year for k, v in times_ch.items() if k in docs} == \
        {k: t.year for k, t in zip(ids, [*times, now - timedelta(days=400)], strict=True)}, \
        "the ids stored before the migration have their events' times"

    # events_legacy leaves whole, when its newest month has expired: until then no raw month leaves
    # ClickHouse either (both stores hold the same); the rollups follow their own retention
    short = s.model_copy(update={"retention_months": 2, "rollup_retention_months": 4})
    report = retention.run(short)
    assert report.raw_held_until == month_start(now.date(), 3) and report.raw_cutoff is None
    assert report.pg_dropped == [] and not [p for p in report.ch_dropped if p.startswith("events")]
    assert "stats_hourly:202403" in report.ch_dropped
    with pg_connect(s.pg_owner_dsn.get_secret_value(), "owner") as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (len(docs),)
    later = retention.run(short, today=month_start(now.date(), 3))
    assert "events_legacy" in later.pg_dropped and later.raw_held_until is None
    assert f"events:{now:%Y%m}" in later.ch_dropped, later.ch_dropped


@pytest.mark.parametrize(("raw", "rollup", "ok"), [(13, 60, True), (0, 0, True), (13, 0, True), (6, 6, True),
                                                   (12, 6, False), (0, 60, False)])
def test_rollups_must_outlive_the_raw_events(raw: int, rollup: int, ok: bool) -> None:
    if ok:
        Settings(retention_months=raw, rollup_retention_months=rollup)
    else:
        with pytest.raises(ValueError, match="rollups outlive"):
            Settings(retention_months=raw, rollup_retention_months=rollup)
