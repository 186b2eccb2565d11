"""Dashboard queries on BOTH stores, results and timings side by side.

One definition of every statistic, for ``footprint stats`` and the dashboard alike: a ``Filter``
(UTC days, an event type, a link prefix, and the audience: referrer host, device class, browser, OS)
-> one PostgreSQL and one ClickHouse query per statistic.
Every statistic counts human events: synthetic ones (smoke-check probes, the consumer's canary) never,
bots (stored and flagged by the collector's enrichment) only in ``bots_per_day``.
PostgreSQL reads the raw table; ClickHouse reads the hourly rollup ``stats_hourly`` (counts and
visitor sets per hour, type, link, method and event name; migration 0003, bots left out since 0004),
and the raw table (``FINAL``) for the last hour's events per minute and the breakdowns by referrer,
UTM source / medium / campaign, browser, OS and device. The rollup holds no audience columns: a filter
on the audience makes ClickHouse build the rollup's rows of those events from the raw table instead
(the same query over them), so every statistic takes every filter in both stores.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import Any

from footprint.schema import EVENT_TYPES, SHORT_MAX_CHARS
from footprint.settings import Settings
from footprint.stores import ch_client, pg_connect

Rows = list[tuple[Any, ...]]
LIVE_MINUTES = 60
# The end of the days a statistic can cover. The contract takes times up to 2199 and the raw tables hold
# them exactly, but the ClickHouse rollups keep the hour as a DateTime (32-bit seconds, up to
# 2106-02-07 06:28:15 UTC), where a later event's hour saturates. A filter ending on this day leaves those
# events out of both stores alike.
ROLLUP_END = date(2106, 2, 7)
# the filter's audience fields -> the enrichment column each matches exactly ("" = nothing known: no referrer,
# no user agent); None, the default, matches every value
AUDIENCE = {"source": "referrer_host", "device": "device", "browser": "browser", "os": "os"}


@dataclass(frozen=True)
class Filter:
    since: date = date(1970, 1, 1)  # first UTC day
    until: date = date(2100, 1, 1)  # end UTC day, exclusive
    type: str = "page"  # one of schema.EVENT_TYPES, or "" for every type
    link: str = ""  # a link prefix, "" for every link
    top: int = 10
    source: str | None = None  # a referrer host ("" = none: direct traffic)
    device: str | None = None  # a device class (footprint.enrich: desktop, mobile, tablet, other, bot; "")
    browser: str | None = None
    os: str | None = None

    def audience(self) -> dict[str, str]:
        """The audience conditions set: enrichment column -> the value it must have."""
        return {column: value for name, column in AUDIENCE.items() if (value := getattr(self, name)) is not None}

    def __post_init__(self) -> None:
        if self.type and self.type not in EVENT_TYPES:
            raise ValueError(f"type: one of {', '.join(EVENT_TYPES)} (or empty for all)")
        if self.until > ROLLUP_END:
            raise ValueError(f"until: {ROLLUP_END} at the latest (the hourly rollups end there)")
        for name in AUDIENCE:  # the columns hold short texts (schema's "short" kind), never a NUL
            value = getattr(self, name)
            if value is not None and (len(value) > SHORT_MAX_CHARS or "\x00" in value):
                raise ValueError(f"{name}: a value of at most {SHORT_MAX_CHARS} characters")


def _audience(f: Filter) -> tuple[list[str], list[str]]:
    """The filter's audience conditions in each store's dialect (the values are bound by name)."""
    columns = f.audience()
    return [f"{c} = %({c})s" for c in columns], [f"{c} = {{{c}:String}}" for c in columns]


def _where(f: Filter, time_pg: str, time_ch: str, bots: bool = False, raw: bool = True) -> tuple[str, str]:
    """The WHERE clauses of one filter in each store's dialect. ``time_ch`` carries what ClickHouse
    needs besides the filter: the rollup holds neither synthetic events nor bots, the raw table does.
    ``raw=False``: ClickHouse reads the rollup's rows, whose audience ``_rollup`` has chosen."""
    pg, ch = ["NOT synthetic", "bot" if bots else "NOT bot", time_pg], [time_ch]
    if f.type:  # a literal (validated against EVENT_TYPES): PostgreSQL's partial index matches it
        pg.append(f"type = '{f.type}'")
        ch.append(f"type = '{f.type}'")
    if f.link:
        pg.append("starts_with(link, %(link)s)")
        ch.append("startsWith(link, {link:String})")
    audience_pg, audience_ch = _audience(f)
    pg += audience_pg
    if raw:
        ch += audience_ch
    return " AND ".join(pg), " AND ".join(ch)


def _rollup(f: Filter) -> str:
    """What ClickHouse reads the rollup's rows from: ``stats_hourly``, or, for a filter on the audience
    (columns the rollup does not keep), the same rows built from those raw events of the filter's days."""
    audience = _audience(f)[1]
    if not audience:
        return "stats_hourly"
    return ("(SELECT toStartOfHour(footprint_time) AS hour, type, link, method, event, count() AS events,"
            " uniqExactState(visitor_id) AS visitors FROM events FINAL WHERE NOT synthetic AND NOT bot"
            " AND footprint_time >= {since:DateTime} AND footprint_time < {until:DateTime}"
            f" AND {' AND '.join(audience)} GROUP BY hour, type, link, method, event)")


def _days(f: Filter) -> tuple[str, str]:
    return _where(f, "footprint_time >= %(since)s AND footprint_time < %(until)s",
                  "hour >= {since:DateTime} AND hour < {until:DateTime}", raw=False)


def _per_day(pg_value: str, ch_value: str) -> Callable[[Filter], tuple[str, str]]:
    def build(f: Filter) -> tuple[str, str]:
        pg, ch = _days(f)
        return (f"SELECT footprint_time::date AS day, {pg_value} FROM events WHERE {pg} GROUP BY 1 ORDER BY 1",
                f"SELECT toDate(hour) AS day, {ch_value} FROM {_rollup(f)} WHERE {ch} GROUP BY day ORDER BY day")
    return build


def _top_links(f: Filter) -> tuple[str, str]:
    pg, ch = _days(f)
    return (f"SELECT link, count(*) AS views, count(DISTINCT visitor_id) FROM events WHERE {pg}"
            ' GROUP BY link ORDER BY views DESC, link COLLATE "C" LIMIT %(top)s',
            f"SELECT link, sum(events) AS v, uniqExactMerge(visitors) FROM {_rollup(f)} WHERE {ch}"
            " GROUP BY link ORDER BY v DESC, link LIMIT {top:UInt32}")


def _counted_by(column: str, top: bool) -> Callable[[Filter], tuple[str, str]]:
    limit_pg, limit_ch = (" LIMIT %(top)s", " LIMIT {top:UInt32}") if top else ("", "")

    def build(f: Filter) -> tuple[str, str]:
        pg, ch = _days(f)
        return (f"SELECT {column}, count(*) AS n FROM events WHERE {pg}"
                f' GROUP BY {column} ORDER BY n DESC, {column} COLLATE "C"{limit_pg}',
                f"SELECT {column}, sum(events) AS n FROM {_rollup(f)} WHERE {ch}"
                f" GROUP BY {column} ORDER BY n DESC, {column}{limit_ch}")
    return build


def _hourly(f: Filter) -> tuple[str, str]:
    pg, ch = _days(f)
    return (f"SELECT extract(hour FROM footprint_time)::int AS h, count(*) FROM events WHERE {pg}"
            " GROUP BY 1 ORDER BY 1",
            f"SELECT toHour(hour) AS h, sum(events) FROM {_rollup(f)} WHERE {ch} GROUP BY h ORDER BY h")


def _live(f: Filter) -> tuple[str, str]:
    """Events per minute of the last hour, [``live_since``, ``live_until``) (not bounded by the filter's
    days; an event timestamped in the future is not live): the raw tables (minutes), ClickHouse's read
    limited by its sort key (type, synthetic, hour) to that hour."""
    pg, ch = _where(f, "footprint_time >= %(live_since)s AND footprint_time < %(live_until)s",
                    "NOT synthetic AND NOT bot AND footprint_time >= {live_since:DateTime}"
                    " AND footprint_time < {live_until:DateTime}")
    return (f"SELECT date_trunc('minute', footprint_time) AS m, count(*) FROM events WHERE {pg}"
            " GROUP BY 1 ORDER BY 1",
            f"SELECT toStartOfMinute(footprint_time) AS m, count() FROM events FINAL WHERE {ch}"
            " GROUP BY m ORDER BY m")


def _raw_days(f: Filter, bots: bool = False) -> tuple[str, str]:
    """The filter on the raw tables in both stores (what the rollup does not hold)."""
    return _where(f, "footprint_time >= %(since)s AND footprint_time < %(until)s",
                  f"NOT synthetic AND {'bot' if bots else 'NOT bot'}"
                  " AND footprint_time >= {since:DateTime} AND footprint_time < {until:DateTime}", bots=bots)


def _breakdown(column: str, bots: bool = False) -> Callable[[Filter], tuple[str, str]]:
    """Events per value of an enrichment column (\"\" where nothing was known), most first (``bots``: the
    bots' events, which every other statistic leaves out)."""
    def build(f: Filter) -> tuple[str, str]:
        pg, ch = _raw_days(f, bots=bots)
        return (f"SELECT {column}, count(*) AS n FROM events WHERE {pg}"
                f' GROUP BY {column} ORDER BY n DESC, {column} COLLATE "C" LIMIT %(top)s',
                f"SELECT {column}, count() AS n FROM events FINAL WHERE {ch}"
                f" GROUP BY {column} ORDER BY n DESC, {column} LIMIT {{top:UInt32}}")
    return build


def _bots_per_day(f: Filter) -> tuple[str, str]:
    pg, ch = _raw_days(f, bots=True)
    return (f"SELECT footprint_time::date AS day, count(*) FROM events WHERE {pg} GROUP BY 1 ORDER BY 1",
            f"SELECT toDate(footprint_time) AS day, count() FROM events FINAL WHERE {ch} GROUP BY day ORDER BY day")


# name -> builder; the order is the order of `footprint stats` and of the dashboard's stores panel
QUERIES: dict[str, Callable[[Filter], tuple[str, str]]] = {
    "views_per_day": _per_day("count(*)", "sum(events)"),
    "unique_visitors_per_day": _per_day("count(DISTINCT visitor_id)", "uniqExactMerge(visitors)"),
    "top_links": _top_links,
    "methods": _counted_by("method", top=False),
    "top_events": _counted_by("event", top=True),
    "hourly_traffic": _hourly,
    "live_per_minute": _live,
    "referrers": _breakdown("referrer_host"),
    "utm_sources": _breakdown("utm_source"),
    "utm_mediums": _breakdown("utm_medium"),
    "utm_campaigns": _breakdown("utm_campaign"),
    "browsers": _breakdown("browser"),
    "operating_systems": _breakdown("os"),
    "devices": _breakdown("device"),
    "bots_per_day": _bots_per_day,
    "bot_agents": _breakdown("browser", bots=True),
}


@dataclass
class QueryResult:
    name: str
    pg_rows: Rows
    ch_rows: Rows
    pg_ms: float
    ch_ms: float

    @property
    def same(self) -> bool:
        return self.pg_rows == self.ch_rows


@dataclass
class Params:
    """The values every query of one filter binds (both dialects)."""

    pg: dict[str, Any] = field(default_factory=dict)
    ch: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, f: Filter, now: datetime | None = None) -> Params:
        now = now or datetime.now(UTC)
        live_since = (now - timedelta(minutes=LIVE_MINUTES - 1)).replace(second=0, microsecond=0)
        common = {"top": f.top, "link": f.link, "live_since": live_since,
                  "live_until": live_since + timedelta(minutes=LIVE_MINUTES),  # the minute after now's
                  **f.audience()}
        return cls(pg={**common, "since": f.since, "until": f.until},
                   ch={**common, "since": datetime.combine(f.since, dtime(), UTC),
                       "until": datetime.combine(f.until, dtime(), UTC)})


def normalize(rows: Any) -> Rows:
    """Plain comparable values: days as ISO dates, minutes as ``YYYY-MM-DDTHH:MM`` (UTC), numbers as int."""
    out = []
    for row in rows:
        vals: list[Any] = []
        for v in row:
            if isinstance(v, datetime):
                v = v.astimezone(UTC) if v.tzinfo else v
                vals.append(v.strftime("%Y-%m-%dT%H:%M"))
            elif isinstance(v, date):
                vals.append(v.isoformat())
            elif isinstance(v, bool | str) or v is None:
                vals.append(v)
            else:
                vals.append(int(v))
        out.append(tuple(vals))
    return out


def run_stats(settings: Settings, since: date, until: date, top: int = 10, *, f: Filter | None = None,
              names: tuple[str, ...] | None = None) -> list[QueryResult]:
    """Every query (or ``names``) of filter ``f`` (default: page events of [since, until)) on both stores."""
    f = f or Filter(since=since, until=until, top=top)
    params = Params.of(f)
    results = []
    with pg_connect(settings.pg_reader_dsn.get_secret_value(), "reader") as conn:
        client = ch_client(settings, "reader")
        try:
            for name in names or tuple(QUERIES):
                pg_sql, ch_sql = QUERIES[name](f)
                t0 = time.perf_counter()
                pg_rows = conn.execute(pg_sql, params.pg).fetchall()
                t1 = time.perf_counter()
                ch_rows = client.query(ch_sql, parameters=params.ch).result_rows
                t2 = time.perf_counter()
                pg_ms, ch_ms = (t1 - t0) * 1000, (t2 - t1) * 1000
                results.append(QueryResult(name, normalize(pg_rows), normalize(ch_rows), pg_ms, ch_ms))
            conn.rollback()
        finally:
            client.close()
    return results


def run_clickhouse(settings: Settings, f: Filter, names: tuple[str, ...]) -> dict[str, Rows]:
    """``names`` of filter ``f`` on ClickHouse alone (the dashboard's live chart, refreshed often)."""
    params = Params.of(f)
    client = ch_client(settings, "reader")
    try:
        return {name: normalize(client.query(QUERIES[name](f)[1], parameters=params.ch).result_rows)
                for name in names}
    finally:
        client.close()


def render(results: list[QueryResult], limit: int = 12) -> str:
    lines = []
    for r in results:
        mark = "same" if r.same else "DIFFERENT"
        lines.append(f"== {r.name}: postgres {r.pg_ms:8.1f} ms | clickhouse {r.ch_ms:8.1f} ms | answers {mark}")
        width = max((len(str(x)) for x in r.pg_rows[:limit]), default=10)
        n = max(len(r.pg_rows), len(r.ch_rows))
        for i in range(min(n, limit)):
            a = str(r.pg_rows[i]) if i < len(r.pg_rows) else "-"
            b = str(r.ch_rows[i]) if i < len(r.ch_rows) else "-"
            lines.append(f"   {a:<{width}} | {b}")
        if n > limit:
            lines.append(f"   ... {n - limit} more rows")
    return "\n".join(lines)
