"""Dashboard queries on BOTH stores, results and timings side by side.

One definition of every statistic, for ``footprint stats`` and the dashboard alike: a ``Filter`` (UTC days, an event
type, a link prefix, the audience: referrer host, device class, browser, OS, country, and a goal: only the visitors
who reached it in those days) -> one PostgreSQL and one ClickHouse query per statistic. Every statistic counts human
events: synthetic ones (smoke-check probes, the consumer's canary) never, bots (stored and flagged by the
collector's enrichment) only in ``bots_per_day``. PostgreSQL reads the raw table; ClickHouse reads the hourly rollup
``stats_hourly`` (counts and visitor sets per hour, type, link, method and event name; migration 0003, bots left out
since 0004), the daily rollup ``breakdowns_daily`` (migration 0008) for the breakdowns by referrer, UTM source /
medium / campaign, browser, OS, device and country, the bots' and the visitors per day (``by_day``), the daily
rollup ``links_daily`` (migration 0009) for the top links and, under a link prefix, the visitors per day
(``by_link_day``), and the raw table (``FINAL``) for the last hour's events per minute. The dashboard's chart of the
visitors per day draws an estimate (``APPROXIMATE``: the daily HyperLogLog sketches of ``visitors_daily``, migration
0010), which every other reader of these statistics (the stores panel, ``footprint stats``, the CSV exports) counts
exactly; its charts of the top links and the countries ask for the views alone, which they draw (``DRAWN``: exact,
without merging visitor sets). The rollup holds no audience columns and no visitor's goals: a filter on the audience
or a goal makes ClickHouse build the rollup's rows of those events from the raw table instead (the same query over
them), so every statistic takes every filter in both stores. The visits (sessions: a visitor's events of one UTC
day at most ``session_timeout_minutes`` apart) come from the raw tables in both, in the order of the events' own
time: window functions over each visitor's events in PostgreSQL, each visitor's events as one sorted array split
at the gaps in ClickHouse (``_visits``), which reads the visits that have ended from those ``footprint
close-visits`` stored where they still stand (``closedvisits``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from typing import Any

from footprint.closedvisits import DAY_US, bind, day_number, micros, raw_values, stored_visits, type_condition
from footprint.contract import EVENT_TYPES, SHORT_MAX_CHARS
from footprint.goals import Goal
from footprint.settings import SESSION_TIMEOUT_MINUTES, Settings
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
AUDIENCE = {"source": "referrer_host", "device": "device", "browser": "browser", "os": "os", "country": "country"}


@dataclass(frozen=True)
class Filter:
    since: date = date(1970, 1, 1)  # first UTC day
    until: date = date(2100, 1, 1)  # end UTC day, exclusive
    type: str = "page"  # one of contract.EVENT_TYPES, or "" for every type
    link: str = ""  # a link prefix, "" for every link
    top: int = 10
    source: str | None = None  # a referrer host ("" = none: direct traffic)
    device: str | None = None  # a device class (footprint.enrich: desktop, mobile, tablet, other, bot; "")
    browser: str | None = None
    os: str | None = None
    country: str | None = None  # an ISO 3166-1 alpha-2 code (footprint.countries; "" = not known)
    # a goal's name: only the events of the visitors who reached it in the filter's days (``_goal``); None: everyone
    goal: str | None = None
    goal_definition: Goal | None = None  # that goal (goals.Definitions.goal), given with ``goal``

    def audience(self) -> dict[str, str]:
        """The audience conditions set: enrichment column -> the value it must have."""
        return {column: value for name, column in AUDIENCE.items() if (value := getattr(self, name)) is not None}

    def __post_init__(self) -> None:
        if self.type and self.type not in EVENT_TYPES:
            raise ValueError(f"type: one of {', '.join(EVENT_TYPES)} (or empty for all)")
        if (self.goal_definition.name if self.goal_definition else None) != self.goal:
            raise ValueError("goal: give the goal's name with its definition (goals.Definitions.goal)")
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


def _goal(f: Filter, bots: bool = False) -> tuple[list[str], list[str]]:
    """The filter's goal in each store's dialect (none: no condition): the event's visitor reached the goal in the
    filter's days, by an event of its own (never synthetic; a bot's for the bots' statistics, else a human's),
    whatever the filter's type, link prefix and audience. Its value is bound as ``goal``."""
    if f.goal_definition is None:
        return [], []
    match_pg, match_ch = f.goal_definition.condition("goal")
    flag = "bot" if bots else "NOT bot"
    return ([f"visitor_id IN (SELECT visitor_id FROM events WHERE NOT synthetic AND {flag}"
             f" AND footprint_time >= %(since)s AND footprint_time < %(until)s AND {match_pg})"],
            # GLOBAL: on a cluster a visitor's events lie on every shard (a plain IN over the Distributed table is
            # refused); no FINAL: a copy is no other visitor
            [f"visitor_id GLOBAL IN (SELECT visitor_id FROM events WHERE NOT synthetic AND {flag}"
             " AND footprint_time >= {since:DateTime} AND footprint_time < {until:DateTime}"
             f" AND {match_ch})"])


def _where(f: Filter, time_pg: str, time_ch: str, bots: bool = False, raw: bool = True) -> tuple[str, str]:
    """The WHERE clauses of one filter in each store's dialect. ``time_ch`` carries what ClickHouse
    needs besides the filter: the rollup holds neither synthetic events nor bots, the raw table does.
    ``raw=False``: ClickHouse reads the rollup's rows, whose audience and goal ``_rollup`` has chosen."""
    pg, ch = ["NOT synthetic", "bot" if bots else "NOT bot", time_pg], [time_ch]
    if f.type:  # a literal (validated against EVENT_TYPES): PostgreSQL's partial index matches it
        pg.append(f"type = '{f.type}'")
        ch.append(f"type = '{f.type}'")
    link_pg, link_ch = _link(f)
    audience_pg, audience_ch = _audience(f)
    goal_pg, goal_ch = _goal(f, bots)
    pg += link_pg + audience_pg + goal_pg
    ch += link_ch + (audience_ch + goal_ch if raw else [])
    return " AND ".join(pg), " AND ".join(ch)


def _link(f: Filter) -> tuple[list[str], list[str]]:
    """The filter's link prefix in each store's dialect (none: every link)."""
    return (["starts_with(link, %(link)s)"], ["startsWith(link, {link:String})"]) if f.link else ([], [])


def _rollup(f: Filter) -> str:
    """What ClickHouse reads the rollup's rows from: ``stats_hourly``, or, for a filter on the audience or a goal
    (what the rollup does not keep), the same rows built from those raw events of the filter's days."""
    audience = _audience(f)[1] + _goal(f)[1]
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


def _link_rows(f: Filter) -> tuple[str, str, str]:
    """Where the top links come from: PostgreSQL's filter on the raw events, ClickHouse's rows (``LINKS``, or the
    hourly rollup's, built from the raw events for an audience or a goal) and their filter."""
    pg, ch = _days(f)
    if by_link_day(f):
        return pg, LINKS, _link_days(f)[1]
    return pg, _rollup(f), ch


def _top_links(f: Filter) -> tuple[str, str]:
    """Events and exact visitors per link, most events first: ClickHouse merges each link's daily visitor sets of
    ``LINKS``, or the hourly rollup's rows (built from the raw events for an audience or a goal)."""
    pg, rows, ch = _link_rows(f)
    return (f"SELECT link, count(*) AS views, count(DISTINCT visitor_id) FROM events WHERE {pg}"
            ' GROUP BY link ORDER BY views DESC, link COLLATE "C" LIMIT %(top)s',
            f"SELECT link, sum(events) AS v, uniqExactMerge(visitors) FROM {rows} WHERE {ch}"
            " GROUP BY link ORDER BY v DESC, link LIMIT {top:UInt32}")


def _top_links_drawn(f: Filter) -> str:
    """The page's chart of the top links: the views alone, which it draws (the same rows as ``_top_links``, exact,
    without its visitor column: no visitor set is merged)."""
    _, rows, ch = _link_rows(f)
    return (f"SELECT link, sum(events) AS v FROM {rows} WHERE {ch}"
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


def raw_days(f: Filter, bots: bool = False) -> tuple[str, str]:
    """The filter on the raw tables in both stores (what the rollup does not hold)."""
    return _where(f, "footprint_time >= %(since)s AND footprint_time < %(until)s",
                  f"NOT synthetic AND {'bot' if bots else 'NOT bot'}"
                  " AND footprint_time >= {since:DateTime} AND footprint_time < {until:DateTime}", bots=bots)


# The daily rollup of the breakdowns (migration 0008): rows per UTC day, type, bot flag, dimension (an enrichment
# column's name) and value, each event counted once in every dimension's rows; visitor sets for the countries
BREAKDOWNS = "breakdowns_daily"
# The daily rollup of the links (migration 0009): rows per UTC day, type and link of the human events, their count
# and exact visitor set
LINKS = "links_daily"
# the filter's days in a daily rollup (whole UTC days, as the filter's)
_DAYS = ("day >= toDate32(toTimeZone({since:DateTime}, 'UTC'))"
         " AND day < toDate32(toTimeZone({until:DateTime}, 'UTC'))")


def by_link_day(f: Filter) -> bool:
    """Whether ClickHouse reads the filter's top links (and, under a link prefix, visitors per day) from ``LINKS``:
    it keeps the link, but neither the audience nor which goal an event reached."""
    return not f.audience() and f.goal is None


def by_day(f: Filter) -> bool:
    """Whether ClickHouse reads the filter's breakdowns from ``BREAKDOWNS``: it keeps neither the link, nor the
    audience, nor which goal an event reached, so a filter on any of them reads the raw events."""
    return not f.link and by_link_day(f)


def _link_days(f: Filter) -> tuple[str, str]:
    """The filter in both stores for ``LINKS``: PostgreSQL's raw events, ClickHouse's rollup rows (``by_link_day``
    must hold)."""
    return _where(f, "footprint_time >= %(since)s AND footprint_time < %(until)s", _DAYS, raw=False)


def _breakdown_days(f: Filter, dimension: str, bots: bool = False) -> tuple[str, str]:
    """The filter in both stores for one breakdown: PostgreSQL's raw events, ClickHouse's rows of ``dimension``
    in ``BREAKDOWNS`` (``by_day`` must hold)."""
    return _where(f, "footprint_time >= %(since)s AND footprint_time < %(until)s",
                  f"dimension = '{dimension}' AND {'bot' if bots else 'NOT bot'} AND {_DAYS}", bots=bots, raw=False)


def _breakdown(column: str, bots: bool = False) -> Callable[[Filter], tuple[str, str]]:
    """Events per value of an enrichment column (\"\" where nothing was known), most first (``bots``: the
    bots' events, which every other statistic leaves out)."""
    def build(f: Filter) -> tuple[str, str]:
        if by_day(f):
            pg, ch = _breakdown_days(f, column, bots=bots)
            return _most(column, f"events WHERE {pg}", f"{BREAKDOWNS} WHERE {ch}", ch_count="sum(events)",
                         ch_column=f"value AS {column}")
        pg, ch = raw_days(f, bots=bots)
        return _most(column, f"events WHERE {pg}", f"events FINAL WHERE {ch}")
    return build


def _most(column: str, pg_rows: str, ch_rows: str, ch_count: str = "count()", ch_column: str = "") -> tuple[str, str]:
    """Rows per value of ``column``, most first, the filter's top: read from ``pg_rows`` / ``ch_rows`` (a table
    and its WHERE, or a subquery; ``ch_count``, ``ch_column``: how ClickHouse's rows count and name the value)."""
    return (f'SELECT {column}, count(*) AS n FROM {pg_rows} GROUP BY {column} ORDER BY n DESC, {column} COLLATE "C"'
            " LIMIT %(top)s",
            f"SELECT {ch_column or column}, {ch_count} AS n FROM {ch_rows} GROUP BY {column} ORDER BY n DESC, {column}"
            " LIMIT {top:UInt32}")


def _countries(f: Filter) -> tuple[str, str]:
    """Events (page views, for page events) and visitors per country (\"\" where it is not known), most events
    first: ClickHouse's daily rollup (its exact visitor sets of each day merged), or its raw events."""
    if by_day(f):
        pg, ch = _breakdown_days(f, "country")
        rows, n, visitors, country = f"{BREAKDOWNS} WHERE {ch}", "sum(events)", "uniqExactMerge(visitors)", "value"
    else:
        pg, ch = raw_days(f)
        rows, n, visitors, country = f"events FINAL WHERE {ch}", "count()", "uniqExact(visitor_id)", "country"
    return ("SELECT country, count(*) AS n, count(DISTINCT visitor_id) FROM events"
            f' WHERE {pg} GROUP BY country ORDER BY n DESC, country COLLATE "C" LIMIT %(top)s',
            f"SELECT {country} AS country, {n} AS n, {visitors} FROM {rows}"
            " GROUP BY country ORDER BY n DESC, country LIMIT {top:UInt32}")


_VISITORS_PER_HOUR = _per_day("count(DISTINCT visitor_id)", "uniqExactMerge(visitors)")


def _visitors_per_day(f: Filter) -> tuple[str, str]:
    """Distinct visitors per day. ClickHouse merges the visitor sets of the daily rollup's country rows: every human
    event is in one, so their union over a day is exactly its visitors, from fewer and smaller sets than the hours'
    (a visitor of many hours is one member of the day's set); under a link prefix those of the links' daily rows;
    ``stats_hourly``'s for a filter neither can answer."""
    pg, ch = _VISITORS_PER_HOUR(f)
    if by_day(f):
        ch = (f"SELECT day, uniqExactMerge(visitors) FROM {BREAKDOWNS} WHERE {_breakdown_days(f, 'country')[1]}"
              " GROUP BY day ORDER BY day")
    elif by_link_day(f):
        ch = f"SELECT day, uniqExactMerge(visitors) FROM {LINKS} WHERE {_link_days(f)[1]} GROUP BY day ORDER BY day"
    return pg, ch


def _bots_per_day(f: Filter) -> tuple[str, str]:
    """The bots' events per day: ClickHouse counts one dimension's rows of the daily rollup (every event has one
    there), or its raw events."""
    if by_day(f):
        pg, ch = _breakdown_days(f, "device", bots=True)
        days = f"SELECT day, sum(events) FROM {BREAKDOWNS} WHERE {ch} GROUP BY day ORDER BY day"
    else:
        pg, ch = raw_days(f, bots=True)
        days = f"SELECT toDate(footprint_time) AS day, count() FROM events FINAL WHERE {ch} GROUP BY day ORDER BY day"
    return f"SELECT footprint_time::date AS day, count(*) FROM events WHERE {pg} GROUP BY 1 ORDER BY 1", days


# a visit's order: each event's time in microseconds since 1970 (UTC) and its id, the same in both stores
VISIT_ORDER = ("(extract(epoch FROM footprint_time) * 1000000)::bigint AS us, event_id::text AS id",
               "toUnixTimestamp64Micro(footprint_time) AS us, toString(event_id) AS id")


def numbered_visits(rows: str) -> str:
    """PostgreSQL: each row of ``rows`` (a SELECT of ``visitor_id``, ``us``, ``id`` and more, one event each) with
    ``starts`` and ``ends`` (its visit's first, last event) and ``visit`` (its number in the visitor's visits):
    the visitor's events of one UTC day in the order of ``us``, then ``id``, each at most ``visit_gap_us`` after
    the one before make one visit. (ClickHouse: ``visitors_events``, ``visit_starts``.)"""
    return ("(SELECT *, count(*) FILTER (WHERE starts) OVER (PARTITION BY visitor_id ORDER BY us, id"
            " ROWS UNBOUNDED PRECEDING) AS visit"
            " FROM (SELECT *, coalesce(us - lag(us) OVER w > %(visit_gap_us)s"
            f" OR us / {DAY_US} <> lag(us) OVER w / {DAY_US}, true) AS starts,"
            f" coalesce(lead(us) OVER w - us > %(visit_gap_us)s OR lead(us) OVER w / {DAY_US} <> us / {DAY_US}, true)"
            f" AS ends FROM ({rows}) e WINDOW w AS (PARTITION BY visitor_id ORDER BY us, id)) g) n")


def visits_of_visitors(rows: str, columns: list[str]) -> str:
    """ClickHouse's visits of ``rows`` (a SELECT of ``visitor_id``, ``us``, ``id`` and ``columns``, ``link`` first,
    one event each), one row each: ``visitor_id``, ``start_us``, ``duration_us``, ``pages``, ``exit_link`` and
    ``columns`` as they are on the visit's first event. Each visitor's events become one array, sorted by (``us``,
    ``id``, ...), split before each event more than ``visit_gap_us`` after the one before or on another day
    (``visit_starts``): the visits PostgreSQL's ``numbered_visits`` numbers, from one GROUP BY that runs on every
    core instead of a sort of all the rows for window functions (~1.5x faster; benchmarks/RESULTS.md, section
    23)."""
    first = ", ".join(f"tupleElement(v[1], {i}) AS {c}" for i, c in enumerate(columns, start=3))
    return ("SELECT visitor_id, tupleElement(v[1], 1) AS start_us, tupleElement(v[-1], 1) - start_us AS duration_us,"
            f" length(v) AS pages, tupleElement(v[-1], 3) AS exit_link, {first}"
            f" FROM (SELECT visitor_id, arrayJoin(arraySplit((e, s) -> s, evs, {visit_starts('evs')})) AS v"
            f" FROM ({visitors_events(rows, columns)}))")


def visitors_events(rows: str, columns: list[str]) -> str:
    """ClickHouse: one row per visitor of ``rows`` (a SELECT of ``visitor_id``, ``us``, ``id`` and ``columns``):
    ``visitor_id`` and ``evs``, the visitor's events as tuples (``us``, ``id``, ``columns``...; elements 1, 2,
    3...) in the order of their own time, then their id, each id once: ``rows`` may read ``events`` without
    ``FINAL`` (which costs 10x the read itself at 10M events; a copy of an event, which the consumer's id lookup
    does not let in, sorts beside it and is dropped here)."""
    events = ", ".join(["us", "id", *columns])
    return (f"SELECT visitor_id, arrayFilter((e, i) -> i = 1 OR e.2 != sorted[i - 1].2, sorted,"
            f" arrayEnumerate(sorted)) AS evs FROM (SELECT visitor_id, arraySort(groupArray(tuple({events})))"
            f" AS sorted FROM ({rows}) GROUP BY visitor_id)")


def visit_starts(events: str) -> str:
    """ClickHouse: for each event of the array ``events`` (``visitors_events``' tuples), whether it starts a visit:
    the first, each more than ``visit_gap_us`` after the one before, and each on another UTC day than it."""
    return (f"arrayMap((d, k, i) -> i = 1 OR d > {{visit_gap_us:Int64}} OR k != 0,"
            f" arrayDifference(arrayMap(e -> e.1, {events})),"
            f" arrayDifference(arrayMap(e -> intDiv(e.1, {DAY_US}), {events})), arrayEnumerate({events}))")


def visit_rows(f: Filter, columns: list[str] | None = None,
               from_ch: str = "footprint_time >= {visits_from:DateTime64(6, 'UTC')}") -> tuple[str, str, list[str]]:
    """The events the filter's visits are made of, one row each, in each store's dialect (``visitor_id``, ``us``,
    ``id`` and the columns last), and those columns: the link and the audience's, which the conditions on a visit's
    first event read (or ``columns``, ``link`` first). The filter's type, human events only, the goal's visitors
    whole; of the filter's days (ClickHouse: from ``from_ch``, within them)."""
    kind = type_condition(f.type)  # validated against EVENT_TYPES (as in _where)
    goal_pg, goal_ch = ("".join(f" AND {c}" for c in conditions) for conditions in _goal(f))  # whole visitors
    columns = columns or ["link", *f.audience()]
    return (f"SELECT visitor_id, {VISIT_ORDER[0]}, {', '.join(columns)} FROM events"
            f" WHERE NOT synthetic AND NOT bot{kind}{goal_pg}"
            " AND footprint_time >= %(visits_from)s AND footprint_time < %(visits_to)s",
            f"SELECT visitor_id, {VISIT_ORDER[1]}, {', '.join(columns)} FROM events"  # each id once: visitors_events
            f" WHERE NOT synthetic AND NOT bot{kind}{goal_ch} AND {from_ch}"
            " AND footprint_time < {visits_to:DateTime64(6, 'UTC')}",
            columns)


# the raw events of the visits not stored (``closedvisits.raw_values``): from the midnight before the stored visits'
# end; on that day only a visitor's with an event since (GLOBAL: on a cluster the visitor's events are on every shard)
_RAW_FROM = ("footprint_time >= {{raw_from:DateTime64(6, 'UTC')}} AND (footprint_time >= {{raw_whole_from:DateTime64(6,"
             " 'UTC')}} OR visitor_id GLOBAL IN (SELECT visitor_id FROM events WHERE NOT synthetic AND NOT bot{kind}"
             " AND footprint_time >= {{raw_open:DateTime64(6, 'UTC')}}"
             " AND footprint_time < {{raw_whole_from:DateTime64(6, 'UTC')}}))")


def _visits(f: Filter) -> tuple[str, str]:
    """The filter's visits (sessions) as a subquery in each store's dialect. PostgreSQL: one row each,
    ``start_us``, ``duration_us`` (first to last event, microseconds), ``pages`` (its events), ``entry_link``,
    ``exit_link``. ClickHouse: rows of visits counted, ``visits``, ``bounces`` (of one event), ``duration_us`` and
    ``pages`` (their sums), ``entry_link``, ``exit_link`` (a visit made of the raw events: a row of its own).

    A visit is a visitor's run of the filter's events (its type; human, never synthetic) of one UTC day in the
    order of their own time (``footprint_time``, then ``event_id``: never the order they arrived in), each at most
    ``visit_gap_us`` after the one before (PostgreSQL: ``numbered_visits``; ClickHouse: ``visits_of_visitors``):
    midnight ends every visit (as it changes every anonymous visitor's id), so the filter's days hold their visits
    whole and read no event outside them. The link
    prefix and the audience choose visits by their first event: where the visit entered, from which referrer, on
    which device, browser and OS (only a visit's first page has a referrer: the site's own pages are no source). A
    goal chooses visitors (``_goal``), so their visits whole.

    Without a goal ClickHouse reads the stored visits of the filter's first days as far as they stand
    (``closedvisits``: the days ``footprint close-visits`` closed, unchanged since) and makes only the rest of the
    raw events."""
    rows_pg, rows_ch, columns = visit_rows(f)
    link, audience = _link(f), _audience(f)  # on a visit's first event (the row that starts it)
    chosen_pg = " AND ".join(["starts", *link[0], *audience[0]])
    named = ", ".join(["visits", "bounces", "duration_us", "pages", "exit_link", *columns])
    one_each = "1 AS visits, toUInt64(pages = 1) AS bounces, duration_us, pages, exit_link"  # a raw visit
    if f.goal is None:  # the stored visits of the days that stand, the rest made of the raw events
        raw = visits_of_visitors(visit_rows(f, from_ch=_RAW_FROM.format(kind=type_condition(f.type)))[1], columns)
        visits_ch = (f"SELECT {named} FROM ({stored_visits(f.type, columns)}) UNION ALL SELECT {one_each},"
                     f" {', '.join(columns)} FROM ({raw})"
                     " WHERE start_us + duration_us >= {raw_open_us:Int64} AND start_us < {until_us:Int64}")
    else:
        visits_ch = (f"SELECT {one_each}, {', '.join(columns)} FROM ({visits_of_visitors(rows_ch, columns)})"
                     " WHERE start_us >= {since_us:Int64} AND start_us < {until_us:Int64}")
    chosen_ch = " AND ".join(["true", *link[1], *audience[1]])
    numbered_pg = numbered_visits(rows_pg)
    return (
        "(SELECT min(us) AS start_us, max(us) - min(us) AS duration_us, count(*) AS pages,"
        " max(link) FILTER (WHERE starts) AS entry_link, max(link) FILTER (WHERE ends) AS exit_link"
        f" FROM {numbered_pg} GROUP BY visitor_id, visit"
        f" HAVING min(us) >= %(since_us)s AND min(us) < %(until_us)s AND bool_or({chosen_pg})) v",
        "(SELECT visits, bounces, duration_us, pages, link AS entry_link, exit_link"
        f" FROM ({visits_ch}) WHERE {chosen_ch})",
    )


def _visit_figures(f: Filter) -> tuple[str, str]:
    """One row: visits, bounces (visits of one event), bounce rate (per cent), the average visit's duration
    (seconds) and its events (pages per visit, two decimals); each rounded half up in integers, so that both
    stores give the same figure."""
    pg, ch = _visits(f)
    return ("SELECT count(*), count(*) FILTER (WHERE pages = 1),"
            " div(200 * count(*) FILTER (WHERE pages = 1) + count(*), 2 * greatest(count(*), 1)),"
            " div(2 * coalesce(sum(duration_us), 0) + 1000000 * count(*), 2000000 * greatest(count(*), 1)),"
            " round(div(200 * coalesce(sum(pages), 0) + count(*), 2 * greatest(count(*), 1)) / 100, 2)"
            f" FROM {pg}",
            "SELECT sum(visits) AS n, sum(bounces) AS b, intDiv(200 * b + n, 2 * greatest(n, 1)),"
            " intDiv(2 * sum(duration_us) + 1000000 * n, 2000000 * greatest(n, 1)),"
            " toDecimal64(intDiv(200 * sum(pages) + n, 2 * greatest(n, 1)), 2) / 100"
            f" FROM {ch}")


def _visit_pages(column: str) -> Callable[[Filter], tuple[str, str]]:
    """Visits per entry or exit page (``column``), most first."""
    def build(f: Filter) -> tuple[str, str]:
        return _most(column, *_visits(f), ch_count="sum(visits)")
    return build


# name -> builder; the order is the order of `footprint stats` and of the dashboard's stores panel
QUERIES: dict[str, Callable[[Filter], tuple[str, str]]] = {
    "views_per_day": _per_day("count(*)", "sum(events)"),
    "unique_visitors_per_day": _visitors_per_day,
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
    "countries": _countries,
    "bots_per_day": _bots_per_day,
    "bot_agents": _breakdown("browser", bots=True),
    "visits": _visit_figures,
    "entry_pages": _visit_pages("entry_link"),
    "exit_pages": _visit_pages("exit_link"),
}


# The daily sketches of the visitors (migration 0010): rows per UTC day and type of the human events, a HyperLogLog
# sketch of their visitors (uniqCombined64 with 2^12 cells), which merges in constant space
SKETCHES = "visitors_daily"
# what the page says beside a chart drawn from them: twice the sketch's relative standard error (1.04 / sqrt(2^12) =
# 1.6 %), within which about 95 % of the estimates fall (read_queries prints how far they were on its data)
APPROXIMATION = "±3.2 % (95 %)"


def _visitors_per_day_estimated(f: Filter) -> str | None:
    """The visitors per day estimated from ``SKETCHES`` (None: a filter on a link, the audience or a goal, which the
    sketches do not keep: the exact query serves it)."""
    if not by_day(f):
        return None
    return (f"SELECT day, uniqCombined64Merge(12)(visitors) FROM {SKETCHES} WHERE {_link_days(f)[1]}"
            " GROUP BY day ORDER BY day")


# The dashboard's estimates: name -> ClickHouse's SQL of a filter, drawn by the page's charts (``run_clickhouse``
# with ``page``) beside ``APPROXIMATION``; the stores panel, ``footprint stats`` and the CSV exports count
# exactly (``QUERIES``)
APPROXIMATE: dict[str, Callable[[Filter], str | None]] = {"unique_visitors_per_day": _visitors_per_day_estimated}


# The page's charts that draw fewer columns than their statistic has: name -> ClickHouse's SQL of a filter giving
# the statistic's rows with only the columns drawn, exact (the top links' and the countries' views, without the
# visitor counts the page does not draw; merging exact visitor sets is what made those charts slow at 10M events).
# The stores panel, ``footprint stats`` and the CSV exports keep every column (``QUERIES``).
DRAWN: dict[str, Callable[[Filter], str]] = {
    "top_links": _top_links_drawn,
    "countries": lambda f: _breakdown("country")(f)[1],
}


def clickhouse_sql(name: str, f: Filter, page: bool = False) -> str:
    """ClickHouse's query of statistic ``name`` for filter ``f``; with ``page``, the page's own: its estimate where
    one serves the filter (``APPROXIMATE``), else the columns its chart draws (``DRAWN``), else the exact query."""
    if page:
        estimate = APPROXIMATE[name](f) if name in APPROXIMATE else None
        if estimate:
            return estimate
        if name in DRAWN:
            return DRAWN[name](f)
    return QUERIES[name](f)[1]


def approximated(f: Filter, names: tuple[str, ...]) -> dict[str, str]:
    """Those of ``names`` that the page's queries estimate for filter ``f``, each with its error bound."""
    return {name: APPROXIMATION for name in names if name in APPROXIMATE and APPROXIMATE[name](f) is not None}


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
    def of(cls, f: Filter, now: datetime | None = None, session_timeout_minutes: int = SESSION_TIMEOUT_MINUTES
           ) -> Params:
        now = now or datetime.now(UTC)
        live_since = (now - timedelta(minutes=LIVE_MINUTES - 1)).replace(second=0, microsecond=0)
        since, until = datetime.combine(f.since, dtime(), UTC), datetime.combine(f.until, dtime(), UTC)
        gap = timedelta(minutes=session_timeout_minutes)
        common = {"top": f.top, "link": f.link, "live_since": live_since,
                  "live_until": live_since + timedelta(minutes=LIVE_MINUTES),  # the minute after now's
                  **f.audience(), **({"goal": f.goal_definition.bound()} if f.goal_definition else {}),
                  "visit_gap_us": gap // timedelta(microseconds=1),
                  "since_us": micros(since), "until_us": micros(until), "visits_from": since,
                  "visits_to": until}
        ch: dict[str, Any] = {**common, "since": since, "until": until, "visit_type": f.type}
        # no stored visits read (``closedvisits.bind`` finds those that stand when the query runs)
        return cls(pg={**common, "since": f.since, "until": f.until},
                   ch={**ch, **raw_values(micros(since), ch), "closed_until": day_number(f.since), "closed_days": [],
                       "closed_micros": []})


def bound(client: Any, planned: Planned, found: dict[tuple[Any, ...], dict[str, Any]]) -> dict[str, Any]:
    """The ClickHouse values of ``planned``, with the days of stored visits that stand (``closedvisits.bind``) if
    its query reads them; ``found``: those already found for the same filter (one look per filter and run)."""
    ch = planned.params.ch
    if "{closed_until:Int32}" not in planned.ch_sql:
        return ch
    key = (ch["visit_type"], ch["visit_gap_us"], ch["since"], ch["until"])
    if key not in found:
        found[key] = bind(client, ch["visit_type"], ch)
    return {**ch, **found[key]}


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
            elif isinstance(v, Decimal) and v != v.to_integral_value():
                vals.append(float(v))  # a figure with decimals (pages per visit), exact in both stores
            else:
                vals.append(int(v))
        out.append(tuple(vals))
    return out


@dataclass(frozen=True)
class Planned:
    """One statistic to run on both stores: its name, its SQL in each dialect and the values they bind."""

    name: str
    pg_sql: str
    ch_sql: str
    params: Params


def plan(f: Filter, names: tuple[str, ...], params: Params, page: bool = False) -> list[Planned]:
    """The queries ``names`` of filter ``f`` with ``params`` (``page``: ClickHouse's as the page asks them,
    ``clickhouse_sql``)."""
    return [Planned(name, QUERIES[name](f)[0], clickhouse_sql(name, f, page), params) for name in names]


def run_plan(settings: Settings, planned: list[Planned]) -> list[QueryResult]:
    """Each planned statistic on both stores (reader users), timed."""
    results = []
    with pg_connect(settings.pg_reader_dsn.get_secret_value(), "reader") as conn:
        client = ch_client(settings, "reader")
        try:
            found: dict[tuple[Any, ...], dict[str, Any]] = {}
            for p in planned:
                t0 = time.perf_counter()
                pg_rows = conn.execute(p.pg_sql, p.params.pg).fetchall()
                t1 = time.perf_counter()
                ch_rows = client.query(p.ch_sql, parameters=bound(client, p, found)).result_rows
                t2 = time.perf_counter()
                pg_ms, ch_ms = (t1 - t0) * 1000, (t2 - t1) * 1000
                results.append(QueryResult(p.name, normalize(pg_rows), normalize(ch_rows), pg_ms, ch_ms))
            conn.rollback()
        finally:
            client.close()
    return results


def run_plan_clickhouse(settings: Settings, planned: list[Planned]) -> dict[str, Rows]:
    """Each planned statistic on ClickHouse alone (the dashboard's charts)."""
    client = ch_client(settings, "reader")
    try:
        found: dict[tuple[Any, ...], dict[str, Any]] = {}
        return {p.name: normalize(client.query(p.ch_sql, parameters=bound(client, p, found)).result_rows)
                for p in planned}
    finally:
        client.close()


def run_stats(settings: Settings, since: date, until: date, top: int = 10, *, f: Filter | None = None,
              names: tuple[str, ...] | None = None) -> list[QueryResult]:
    """Every query (or ``names``) of filter ``f`` (default: page events of [since, until)) on both stores."""
    f = f or Filter(since=since, until=until, top=top)
    params = Params.of(f, session_timeout_minutes=settings.session_timeout_minutes)
    return run_plan(settings, plan(f, names or tuple(QUERIES), params))


def run_clickhouse(settings: Settings, f: Filter, names: tuple[str, ...], page: bool = False) -> dict[str, Rows]:
    """``names`` of filter ``f`` on ClickHouse alone (the dashboard's charts; ``page``: as the page asks them, its
    estimates and only the columns its charts draw, ``clickhouse_sql``)."""
    params = Params.of(f, session_timeout_minutes=settings.session_timeout_minutes)
    return run_plan_clickhouse(settings, plan(f, names, params, page))


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
