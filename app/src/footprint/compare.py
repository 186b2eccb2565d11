"""The previous period: every statistic of a filter beside the same statistic of the period of the same
length just before it (30 days -> the 30 days before them; the live hour -> the hour before it).

Computed the same way in both stores: the previous period's queries are the statistics' own (``stats.QUERIES``)
on the shifted filter, so the stores panel compares their exact answers too. Series (per day, per hour, per
minute) are aligned by their place in the period (a day of the previous period is shown at the day one
period later). A top list (top links, referrers, entry pages, ...) asks the previous period for the values of
the rows the current period shows, whatever their rank was then (the previous top 10 may hold other rows):
its query without the top's limit, kept to those labels. The goals and funnels (``goalstats``) are asked of the
previous period with the same definitions, each row beside the row of the same goal (funnel step) then. The change
in per cent is worked out here, from each store's own rows, with exact fractions: the same rows give the same
figures.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from fractions import Fraction
from typing import Any

from footprint.settings import Settings
from footprint.stats import (
    LIVE_MINUTES,
    QUERIES,
    Filter,
    Params,
    Planned,
    QueryResult,
    Rows,
    clickhouse_sql,
    plan,
    run_plan,
    run_plan_clickhouse,
)

EPOCH = date(1970, 1, 1)
NO_LIMIT = 2**31 - 1  # the top's limit of a restricted query: its labels keep it short
# a top list's label column (the first of its rows): the previous period is asked for these values only
LABELS = {"top_links": "link", "top_events": "event", "referrers": "referrer_host", "utm_sources": "utm_source",
          "utm_mediums": "utm_medium", "utm_campaigns": "utm_campaign", "browsers": "browser",
          "operating_systems": "os", "devices": "device", "countries": "country", "bot_agents": "browser",
          "entry_pages": "entry_link", "exit_pages": "exit_link"}
DAY_SERIES = ("views_per_day", "unique_visitors_per_day", "bots_per_day")
FIGURES = ("visits", "bounces", "bounce_rate_percent", "average_duration_seconds", "pages_per_visit")
# the goals' and funnels' rows (goalstats): how many first columns name the row (a goal; a funnel, its step and
# goal), and which of the others are rates (per cent), whose change is the difference in percentage points
KEYED: dict[str, tuple[int, tuple[int, ...]]] = {"goals": (1, (4,)), "funnels": (3, (4, 5))}


class NoPreviousPeriod(ValueError):
    """The filter's period has no previous period the stores can hold (it starts in 1970: "all time")."""


@dataclass(frozen=True)
class Periods:
    """A filter and the filter of its previous period, with the moment both are asked at (the live hour)."""

    current: Filter
    previous: Filter
    now: datetime

    @classmethod
    def of(cls, f: Filter, now: datetime) -> Periods:
        length = f.until - f.since
        if f.since - EPOCH < length:
            raise NoPreviousPeriod(
                f"the period {f.since} .. {f.until} has no previous period of the same length after {EPOCH}:"
                " choose a range of days (not all time) to compare")
        return cls(f, replace(f, since=f.since - length, until=f.since), now)

    @property
    def length(self) -> timedelta:
        return self.current.until - self.current.since

    def describe(self) -> dict[str, str]:
        return {"since": self.previous.since.isoformat(), "until": self.previous.until.isoformat()}


def previous_plan(periods: Periods, names: tuple[str, ...], timeout_minutes: int,
                  current: Mapping[str, tuple[Rows, Rows]], page: bool = False) -> list[Planned]:
    """The previous period's query of each of ``names``; ``current``: each name's current rows in each store
    (PostgreSQL's, ClickHouse's), whose labels a top list's previous query is kept to; ``page``: ClickHouse's
    queries as the page asks them (as the current period's chart: ``stats.clickhouse_sql``)."""
    f = periods.previous
    out = []
    for name in names:
        live = name == "live_per_minute"  # the hour before the live hour, whatever the days
        params = Params.of(f, periods.now - timedelta(minutes=LIVE_MINUTES) if live else periods.now, timeout_minutes)
        column = LABELS.get(name)
        pg_sql, ch_sql = QUERIES[name](f)[0], clickhouse_sql(name, f, page)
        if column is None:
            out.append(Planned(name, pg_sql, ch_sql, params))
            continue
        pg_rows, ch_rows = current[name]
        params = Params(pg={**params.pg, "top": NO_LIMIT, "labels": [r[0] for r in pg_rows]},
                        ch={**params.ch, "top": NO_LIMIT, "labels": [r[0] for r in ch_rows]})
        out.append(Planned(name, f"SELECT * FROM ({pg_sql}) AS q WHERE {column} = ANY(%(labels)s)"
                                 f' ORDER BY {column} COLLATE "C"',
                           f"SELECT * FROM ({ch_sql}) WHERE {column} IN {{labels:Array(String)}} ORDER BY {column}",
                           params))
    return out


def change(value: Any, previous: Any) -> float | None:
    """The change from ``previous`` to ``value`` in per cent, one decimal (half to even, exact), None where
    the previous period had none (no ratio)."""
    if not previous:
        return None
    return float(round((Fraction(value) - Fraction(previous)) * 100 / Fraction(previous), 1))


def points(value: Any, previous: Any) -> float:
    """The change of a rate (per cent) from ``previous`` to ``value`` in percentage points, exact to the decimal."""
    return float(Fraction(str(value)) - Fraction(str(previous)))


def _keyed(name: str, rows: Rows, previous: Rows) -> Rows:
    """Each row of a goal or funnel step: its names, then each figure, its previous value and its change (per cent,
    or points for a rate); 0 before where the previous period has no such row."""
    keys, rates = KEYED[name]
    earlier = {tuple(r[:keys]): r[keys:] for r in previous}
    out = []
    for r in rows:
        before = earlier.get(tuple(r[:keys]), (0,) * (len(r) - keys))
        cells = list(r[:keys])
        for i, (value, was) in enumerate(zip(r[keys:], before, strict=True), start=keys):
            cells += [value, was, points(value, was) if i in rates else change(value, was)]
        out.append(tuple(cells))
    return out


def _later(key: Any, name: str, length: timedelta) -> Any:
    """A previous period's series key at its place in the current period."""
    if name in DAY_SERIES:
        return (date.fromisoformat(key) + length).isoformat()
    if name == "live_per_minute":
        moment = datetime.strptime(key, "%Y-%m-%dT%H:%M") + timedelta(minutes=LIVE_MINUTES)
        return moment.strftime("%Y-%m-%dT%H:%M")
    return key  # hours of the day: the same hour


def compared(name: str, rows: Rows, previous: Rows, length: timedelta) -> Rows:
    """The comparison of one statistic: ``[key, value, previous value, change %]`` per row. Series: every key
    of either period (the previous one's moved one period later), 0 where a period has none; top lists and
    breakdowns: the current rows; the visits: one row per figure (``FIGURES``); goals and funnels: ``_keyed``."""
    if name in KEYED:
        return _keyed(name, rows, previous)
    if name == "visits":
        now, before = (rows or [(0,) * len(FIGURES)])[0], (previous or [(0,) * len(FIGURES)])[0]
        return [(figure, now[i], before[i], change(now[i], before[i])) for i, figure in enumerate(FIGURES)]
    earlier = {r[0]: r[1] for r in previous}
    if name in LABELS or name == "methods":
        return [(r[0], r[1], earlier.get(r[0], 0), change(r[1], earlier.get(r[0], 0))) for r in rows]
    moved = {_later(key, name, length): value for key, value in earlier.items()}
    values = {r[0]: r[1] for r in rows}
    return [(key, values.get(key, 0), moved.get(key, 0), change(values.get(key, 0), moved.get(key, 0)))
            for key in sorted({*values, *moved}, key=str)]


def compared_results(periods: Periods, current: list[QueryResult], previous: list[QueryResult]
                     ) -> dict[str, dict[str, Any]]:
    """For ``footprint stats --json --compare``: each statistic's previous period in both stores (rows, timings,
    the same or not) and the comparison each store's rows give."""
    now = {r.name: r for r in current}
    out = {}
    for r in previous:
        pg, ch = r.pg_rows, r.ch_rows
        out[r.name] = {
            **periods.describe(), "same": r.same, "postgres_ms": round(r.pg_ms, 2),
            "clickhouse_ms": round(r.ch_ms, 2), "postgres": pg, "clickhouse": ch,
            "compared": {"postgres": compared(r.name, now[r.name].pg_rows, pg, periods.length),
                         "clickhouse": compared(r.name, now[r.name].ch_rows, ch, periods.length)}}
    return out


def run_both(settings: Settings, periods: Periods, names: tuple[str, ...]
             ) -> tuple[list[QueryResult], list[QueryResult]]:
    """``names`` of the current period and then of the previous one, on both stores."""
    timeout = settings.session_timeout_minutes
    current = run_plan(settings, plan(periods.current, names, Params.of(periods.current, periods.now, timeout)))
    rows = {r.name: (r.pg_rows, r.ch_rows) for r in current}
    return current, run_plan(settings, previous_plan(periods, names, timeout, rows))


def clickhouse_compared(settings: Settings, periods: Periods, current: Mapping[str, Rows], page: bool = False
                        ) -> dict[str, Rows]:
    """The comparison of each statistic of ``current`` (ClickHouse's rows of the current period, the dashboard's
    charts; ``page``: asked as the page asks them) with the previous period on ClickHouse."""
    names = tuple(current)
    planned = previous_plan(periods, names, settings.session_timeout_minutes,
                            {name: ([], rows) for name, rows in current.items()}, page)
    previous = run_plan_clickhouse(settings, planned)
    return {name: compared(name, current[name], previous[name], periods.length) for name in names}
