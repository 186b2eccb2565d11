"""The visits of the days that ended, as ClickHouse keeps them (migration 0011): which of a filter's days they
stand for, and the filter's visits read from them there (``footprint.stats._visits``).

``footprint close-visits`` (``footprint.visitcloser``) stores each ended day's visits, per event type (``''``:
every type together) and session timeout, once no event can join one of them any more: the visits
``stats.visits_of_visitors`` makes of the day's raw events, with their first event's link and audience. A day's
stored visits **stand** for a filter while

- the day's newest row in ``visits_days`` (by ``verified_at``) has them closed (``closed_at`` after 1970) with the
  filter's type and timeout, and
- no human event of that type which could change them (its time from the timeout before the day up to the day's
  ``reach_us``) was stored after that row was verified (``ingested_at``; migration 0011's index on it finds such
  events among the granules stored since).

The days before ClickHouse's first human event stand too: they have no visits. A filter's visits are the stored
visits of its days from its first up to the first day that does not stand (``CLOSED_UNTIL``), and the visits of
the days from there made of the raw events, as before: the same visits as making all of them of the raw events
(PostgreSQL's way; the stores panel compares the two).
"""

from __future__ import annotations

from footprint.contract import EVENT_TYPES

VISITS = "visits_closed"
DAYS = "visits_days"
# the types whose visits are stored: each event type's, and every type's together ('')
TYPES = ("", *EVENT_TYPES)
DAY_US = 86_400_000_000
MINUTE_US = 60_000_000
# the filter's days as numbers (days since 1970, as toInt32 of a Date32 gives them)
SINCE = "toInt32(toDate32(toTimeZone({since:DateTime}, 'UTC')))"
UNTIL = "toInt32(toDate32(toTimeZone({until:DateTime}, 'UTC')))"


def type_condition(kind: str) -> str:
    """`` AND type = ...`` for one event type (validated against EVENT_TYPES by the caller), nothing for ''."""
    if kind and kind not in EVENT_TYPES:
        raise ValueError(f"type: one of {', '.join(EVENT_TYPES)} (or empty for all)")
    return f" AND type = '{kind}'" if kind else ""


def markers(kind: str, days: str) -> str:
    """``visits_days``' newest row of each day of ``days`` (a condition on ``day``) for type ``kind`` and the bound
    timeout (``visit_gap_us``): ``day``, ``closed``, ``reach``, ``verified``."""
    type_condition(kind)
    return ("SELECT day, argMax(closed_at, verified_at) AS closed, argMax(reach_us, verified_at) AS reach,"
            f" max(verified_at) AS verified FROM {DAYS} WHERE type = '{kind}' AND gap_us = {{visit_gap_us:Int64}}"
            f" AND {days} GROUP BY day")


def late_minutes(kind: str, rows: str) -> str:
    """A scalar subquery: the minutes (microseconds since 1970, each an event's time floored) of the human events
    of type ``kind`` stored after the oldest verification of ``rows`` (``markers``) and timed where one of them
    could hold them, each with when the last of them was stored: an array of (minute, stored)."""
    return ("(SELECT groupArray((minute, stored)) FROM (SELECT intDiv(toUnixTimestamp64Micro(footprint_time),"
            f" {MINUTE_US}) * {MINUTE_US} AS minute, max(ingested_at) AS stored FROM events"
            f" WHERE ingested_at > (SELECT min(verified) FROM ({rows})) AND NOT synthetic AND NOT bot"
            f"{type_condition(kind)}"
            f" AND footprint_time >= fromUnixTimestamp64Micro((SELECT min(toInt64(day)) FROM ({rows})) * {DAY_US}"
            f" - {{visit_gap_us:Int64}} - {MINUTE_US}, 'UTC')"
            f" AND footprint_time <= fromUnixTimestamp64Micro((SELECT max(reach) FROM ({rows})), 'UTC')"
            " GROUP BY minute))")


def standing(kind: str, days: str) -> str:
    """The days of ``days`` whose stored visits of type ``kind`` stand (see the module): ``day``, ``closed`` (the
    ``closed_at`` of their rows in ``visits_closed``). An event's minute is compared so that no event in a day's
    window is missed (a minute that starts before the window but ends in it counts)."""
    rows = markers(kind, days)
    return (f"SELECT day, closed FROM ({rows}) WHERE closed > toDateTime64(0, 6, 'UTC')"
            f" AND NOT arrayExists(e -> e.2 > verified AND e.1 + {MINUTE_US} > toInt64(day) * {DAY_US}"
            f" - {{visit_gap_us:Int64}} AND e.1 <= reach, {late_minutes(kind, rows)})")


def closed_days(kind: str) -> tuple[str, str]:
    """ClickHouse, for a filter of type ``kind``: two WITH expressions, ``stands`` (the standing days of the
    filter's days: two arrays, their numbers and their ``closed_at``) and ``closed_until`` (the first day, as a
    number, from the filter's first that does not stand; the filter's end at most). A day before ClickHouse's
    first human event stands, having none."""
    days = f"day >= toDate32({SINCE}) AND day < toDate32({UNTIL})"
    stands = (f"(SELECT (arrayMap(s -> s.1, sorted), arrayMap(s -> s.2, sorted)) FROM (SELECT"
              f" arraySort(groupArray((toInt32(day), closed))) AS sorted FROM ({standing(kind, days)}))) AS stands")
    first = f"(SELECT if(count() = 0, {UNTIL}, toInt32(min(day))) FROM visitors_daily)"
    until = (f"(WITH greatest({SINCE}, {first}) AS start, arrayFilter(d -> d >= start, stands.1) AS ds"
             f" SELECT least({UNTIL}, start + arrayFirstIndex((d, i) -> d != start + i,"
             " arrayPushBack(ds, toInt32(-2147483648)), range(length(ds) + 1)) - 1)) AS closed_until")
    return stands, until


def stored_visits(kind: str, columns: list[str]) -> str:
    """ClickHouse: the stored visits of type ``kind`` of the filter's days before ``closed_until``, one row each,
    the columns as ``stats.visits_of_visitors`` gives them (``start_us``, ``duration_us``, ``pages``,
    ``exit_link``, then ``columns``: ``link`` is the entry page's). Needs ``closed_days``' WITH expressions."""
    chosen = ", ".join("entry_link AS link" if column == "link" else column for column in columns)
    return (f"SELECT start_us, duration_us, pages, exit_link, {chosen} FROM {VISITS}"
            f" WHERE type = '{kind}' AND gap_us = {{visit_gap_us:Int64}} AND day >= toDate32({SINCE})"
            " AND toInt32(day) < closed_until AND closed_at = transform(toInt32(day), stands.1, stands.2,"
            " toDateTime64(0, 6, 'UTC'))")


def raw_from(column: str) -> str:
    """ClickHouse: where the raw events of the visits not stored begin (the timeout before ``closed_until``, or
    the filter's own start if later), as a condition on ``column``."""
    return (f"{column} >= greatest({{visits_from:DateTime64(6, 'UTC')}},"
            f" fromUnixTimestamp64Micro(closed_until * {DAY_US} - {{visit_gap_us:Int64}}, 'UTC'))")
