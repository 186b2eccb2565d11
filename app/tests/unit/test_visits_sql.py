"""Visits (issue 35 item 3): the timeout setting, the values every visit query binds, the SQL of both stores
(the filter on a visit's first event, the order by the event's own time) and the figures' normalized form."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from footprint.contract import EVENT_TYPES
from footprint.settings import Settings
from footprint.stats import QUERIES, Filter, Params, normalize

VISITS = ("visits", "entry_pages", "exit_pages")


def test_the_timeout_is_a_setting_of_30_minutes_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().session_timeout_minutes == 30
    monkeypatch.setenv("FOOTPRINT_SESSION_TIMEOUT_MINUTES", "45")
    assert Settings().session_timeout_minutes == 45
    monkeypatch.setenv("FOOTPRINT_SESSION_TIMEOUT_MINUTES", "0")
    with pytest.raises(ValidationError, match="session_timeout_minutes"):
        Settings()


@pytest.mark.parametrize("minutes", [30, 45])
def test_a_visit_is_read_within_the_days_midnight_ends_it(minutes: int) -> None:
    f = Filter(since=date(2026, 12, 1), until=date(2026, 12, 3))
    params = Params.of(f, session_timeout_minutes=minutes)
    since, until = datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 3, tzinfo=UTC)
    for bound in (params.pg, params.ch):
        assert bound["visit_gap_us"] == minutes * 60 * 10**6
        assert bound["since_us"] == 1_796_083_200 * 10**6 == int(since.timestamp()) * 10**6
        assert bound["until_us"] == int(until.timestamp()) * 10**6
        assert bound["visits_from"] == since and bound["visits_to"] == until
    assert Params.of(f).pg["visit_gap_us"] == 30 * 60 * 10**6  # the setting's default


def test_visits_follow_the_events_own_time_and_leave_bots_and_probes_out() -> None:
    for name in VISITS:
        pg, ch = QUERIES[name](Filter())
        assert "ORDER BY us, id" in pg, name  # ClickHouse: each visitor's events sorted by (us, id, ...)
        assert "arraySort(groupArray(tuple(us, id, link" in ch, name
        for sql in (pg, ch):
            assert "received_at" not in sql and "ingested_at" not in sql, name
            assert "NOT synthetic AND NOT bot AND type = 'page'" in sql, name
            assert "referrer_host" not in sql and "device" not in sql, name  # no audience asked: not read
        assert "FROM events WHERE" in pg and "FROM events WHERE" in ch and "FINAL" not in ch, name
        # ClickHouse reads without FINAL: each event id once in each visitor's sorted events
        assert "arrayFilter((e, i) -> i = 1 OR e.2 != sorted[i - 1].2, sorted, arrayEnumerate(sorted))" in ch, name
    every_type = QUERIES["visits"](Filter(type=""))
    # no event type chosen (ClickHouse reads the stored visits of every type together: type = '')
    assert not any(f"type = '{kind}'" in sql for kind in EVENT_TYPES for sql in every_type)


def test_the_link_prefix_and_the_audience_choose_visits_by_their_first_event() -> None:
    f = Filter(link="/blog", source="news.example.com", device="mobile")
    for name in VISITS:
        pg, ch = QUERIES[name](f)
        assert ("bool_or(starts AND starts_with(link, %(link)s) AND referrer_host = %(referrer_host)s"
                " AND device = %(device)s)") in pg, name
        assert ("tupleElement(v[1], 3) AS link, tupleElement(v[1], 4) AS referrer_host, tupleElement(v[1], 5) AS device"
                in ch), name  # the visit's first event's
        # the raw visits: those not stored, their events from the midnight before, that day's of the visitors since
        assert "WHERE start_us + duration_us >= {raw_open_us:Int64} AND start_us < {until_us:Int64}" in ch, name
        assert "OR visitor_id GLOBAL IN (SELECT visitor_id FROM events WHERE NOT synthetic AND NOT bot AND" in ch, name
        # the stored visits' rows keep the first event's: chosen as the raw visits, on the same columns
        assert "SELECT visits, bounces, duration_us, pages, exit_link, entry_link AS link, referrer_host, device" in ch
        assert ("WHERE true AND startsWith(link, {link:String}) AND referrer_host = {referrer_host:String}"
                " AND device = {device:String})") in ch, name
        for sql in (pg, ch):  # never on each event: a visit's later pages have no referrer
            assert sql.count("referrer_host =") == 1 and sql.count("device =") == 1, name
            assert "link, referrer_host, device FROM events" in sql, name


def test_the_figures_keep_their_decimals_and_whole_numbers_stay_integers() -> None:
    assert normalize([(5, 2, 40, 840, Decimal("1.80"))]) == [(5, 2, 40, 840, 1.8)]
    assert normalize([(1, 0, 0, Decimal("1800"), Decimal("2.00"))]) == [(1, 0, 0, 1800, 2)]
    assert isinstance(normalize([(Decimal("2.00"),)])[0][0], int)


def test_clickhouse_funnels_read_the_events_once_and_split_them_as_the_visits() -> None:
    from footprint.goals import Funnel, Goal
    from footprint.goalstats import _funnels
    from footprint.stats import visit_starts

    goals = (Goal(name="Pricing", page="/pricing*"), Goal(name="Signed up", event="Signed Up"))
    funnels = (Funnel(name="Trial", steps=("Pricing", "Signed up", "Pricing")),
               Funnel(name="Daily", steps=("Signed up", "Pricing"), within="day"))
    pg, ch = _funnels(Filter(), goals, funnels)
    assert ch.count("FROM events") == 1 and "JOIN" not in ch  # one pass, no join per step (PostgreSQL: joins)
    assert pg.count("INNER JOIN") == 3
    assert visit_starts("evs") in ch and "intDiv(e.1, 86400000000)" in ch  # within a visit, within a UTC day
    # a goal that comes back is the same flag at two steps, each step looked for after the one before (a fold over
    # the steps, not the events: its cost is not the longest visit's); each step's count in one row, in order
    assert "[tupleElement(e, 3), tupleElement(e, 4), tupleElement(e, 3)][k], arrayEnumerate(p), p)" in ch
    assert "range(1, 4)" in ch and "range(1, 3)" in ch
    assert all(f"countIf(r{j} >= {k})" in ch for j, n in ((0, 3), (1, 2)) for k in range(1, n + 1))


def test_clickhouse_goals_read_the_events_once() -> None:
    from footprint.goals import Goal
    from footprint.goalstats import _goals

    goals = (Goal(name="Pricing", page="/pricing*"), Goal(name="Signed up", event="Signed Up"),
             Goal(name="B", page="/b"))
    pg, ch = _goals(Filter(), goals)
    assert ch.count("FROM events") == 1 and "UNION" not in ch  # every goal counted in one pass
    assert pg.count("FROM events") == 4  # PostgreSQL: one read per goal and one for everyone
    assert all(f"uniqExactIf(visitor_id, {goal.condition(f'g{i}')[1]}) AS v{i}" in ch for i, goal in enumerate(goals))
    assert "[(0, {gn0:String}, v0, c0), (1, {gn1:String}, v1, c1), (2, {gn2:String}, v2, c2)]" in ch
