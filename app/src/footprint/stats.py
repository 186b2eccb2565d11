"""Dashboard queries on BOTH stores, results and timings side by side."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from datetime import time as dtime
from typing import Any

from footprint.settings import Settings
from footprint.stores import ch_client, pg_connect

Rows = list[tuple[Any, ...]]

# Every query counts human page views in [since, until) (UTC days): page events that are neither
# synthetic (the smoke probes) nor from a known bot (stored and marked, counted by "bots" alone).
# PostgreSQL reads the raw table; ClickHouse reads the hourly rollup where it can, the raw
# table (FINAL: exact after replays) otherwise.
_PG_PAGES = "type = 'page' AND NOT synthetic AND footprint_time >= %(since)s AND footprint_time < %(until)s"
_CH_PAGES = (
    "type = 'page' AND NOT synthetic"
    " AND footprint_time >= {since:DateTime} AND footprint_time < {until:DateTime}"
)
_PG_WHERE = f"{_PG_PAGES} AND NOT bot"
_CH_WHERE = f"{_CH_PAGES} AND NOT bot"


def _breakdown(column: str) -> tuple[str, str]:
    """Human page views per value of ``column`` (\"\" where nothing was known), most first."""
    return (
        f"SELECT {column}, count(*) AS n FROM events WHERE {_PG_WHERE}"
        f' GROUP BY {column} ORDER BY n DESC, {column} COLLATE "C" LIMIT %(top)s',
        f"SELECT {column}, count() AS n FROM events FINAL WHERE {_CH_WHERE}"
        f" GROUP BY {column} ORDER BY n DESC, {column} LIMIT {{top:UInt32}}",
    )


_CH_ROLLUP = "hour >= {since:DateTime} AND hour < {until:DateTime}"

QUERIES: dict[str, tuple[str, str]] = {
    "views_per_day": (
        f"SELECT footprint_time::date AS day, count(*) FROM events WHERE {_PG_WHERE} GROUP BY 1 ORDER BY 1",
        f"SELECT toDate(hour) AS day, uniqExactMerge(views) FROM link_hourly WHERE {_CH_ROLLUP}"
        " GROUP BY day ORDER BY day",
    ),
    "top_links": (
        f"SELECT link, count(*) AS views, count(DISTINCT visitor_id) FROM events WHERE {_PG_WHERE}"
        ' GROUP BY link ORDER BY views DESC, link COLLATE "C" LIMIT %(top)s',
        "SELECT link, uniqExactMerge(views) AS v, uniqExactMerge(visitors) FROM link_hourly"
        f" WHERE {_CH_ROLLUP} GROUP BY link ORDER BY v DESC, link LIMIT {{top:UInt32}}",
    ),
    "methods": (
        f"SELECT method, count(*) AS n FROM events WHERE {_PG_WHERE}"
        ' GROUP BY method ORDER BY n DESC, method COLLATE "C"',
        f"SELECT method, count() AS n FROM events FINAL WHERE {_CH_WHERE} GROUP BY method ORDER BY n DESC, method",
    ),
    "hourly_traffic": (
        f"SELECT extract(hour FROM footprint_time)::int AS h, count(*) FROM events WHERE {_PG_WHERE}"
        " GROUP BY 1 ORDER BY 1",
        f"SELECT toHour(hour) AS h, uniqExactMerge(views) FROM link_hourly WHERE {_CH_ROLLUP}"
        " GROUP BY h ORDER BY h",
    ),
    "unique_visitors_per_day": (
        f"SELECT footprint_time::date AS day, count(DISTINCT visitor_id) FROM events WHERE {_PG_WHERE}"
        " GROUP BY 1 ORDER BY 1",
        f"SELECT toDate(hour) AS day, uniqExactMerge(visitors) FROM link_hourly WHERE {_CH_ROLLUP}"
        " GROUP BY day ORDER BY day",
    ),
    "referrers": _breakdown("referrer_host"),
    "browsers": _breakdown("browser"),
    "devices": _breakdown("device"),
    "bots_per_day": (
        f"SELECT footprint_time::date AS day, count(*) FROM events WHERE {_PG_PAGES} AND bot GROUP BY 1 ORDER BY 1",
        f"SELECT toDate(footprint_time) AS day, count() FROM events FINAL WHERE {_CH_PAGES} AND bot"
        " GROUP BY day ORDER BY day",
    ),
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


def normalize(rows: Any) -> Rows:
    """Plain comparable values: dates as ISO strings, numbers as int."""
    out = []
    for row in rows:
        vals: list[Any] = []
        for v in row:
            if isinstance(v, date):
                vals.append(v.isoformat())
            elif isinstance(v, bool | str) or v is None:
                vals.append(v)
            else:
                vals.append(int(v))
        out.append(tuple(vals))
    return out


def run_stats(settings: Settings, since: date, until: date, top: int = 10) -> list[QueryResult]:
    params = {"since": since, "until": until, "top": top}

    ch_params = {
        "since": datetime.combine(since, dtime(), UTC),
        "until": datetime.combine(until, dtime(), UTC),
        "top": top,
    }
    results = []
    with pg_connect(settings.pg_reader_dsn.get_secret_value(), "reader") as conn:
        client = ch_client(settings, "reader")
        try:
            for name, (pg_sql, ch_sql) in QUERIES.items():
                t0 = time.perf_counter()
                pg_rows = conn.execute(pg_sql, params).fetchall()
                t1 = time.perf_counter()
                ch_rows = client.query(ch_sql, parameters=ch_params).result_rows
                t2 = time.perf_counter()
                pg_ms, ch_ms = (t1 - t0) * 1000, (t2 - t1) * 1000
                results.append(QueryResult(name, normalize(pg_rows), normalize(ch_rows), pg_ms, ch_ms))
            conn.rollback()
        finally:
            client.close()
    return results


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
