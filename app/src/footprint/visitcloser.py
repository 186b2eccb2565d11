"""``footprint close-visits``: the visits of the days that ended, stored in ClickHouse (``closedvisits``).

One run, for each type of ``closedvisits.TYPES`` and the configured session timeout, over the days from
ClickHouse's first human event up to yesterday (UTC):

- a day already closed whose stored visits still stand (no event that could change them stored since) is
  verified: it gets a new row in ``visits_days``, verified as of the run's start (less ``UNDER_WAY``, for an
  insert under way), so that readers look for late events among the granules stored since then only;
- any other day is made: its visits of the raw events (``stats.visits_of_visitors``, as the dashboard makes them)
  are stored with their first event's link and audience, and its row says so. A day is left to the raw events
  while a visit of it may still go on (its last event is not yet ``settle`` plus the timeout in the past), and for
  good if a visit of it goes on into the day after the next (events never further apart than the timeout for a
  day: the dashboard's visits follow one only as far as the filter's end plus a day).

Runs as the writer (INSERT and SELECT): a day made again leaves its older rows in ``visits_closed`` unread (a
day's row names the ``closed_at`` of its visits); retention drops them with their month. Several runs at once do
no harm: the newest row of a day names visits that were stored whole before it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from footprint.closedvisits import DAY_US, DAYS, TYPES, VISITS, markers, standing
from footprint.settings import Settings
from footprint.stats import Filter, Params, visit_rows, visits_of_visitors
from footprint.stores import ch_client

log = logging.getLogger("footprint.visitcloser")

# the audience columns a stored visit keeps of its first event (every filter's: stats.AUDIENCE)
COLUMNS = ["link", "referrer_host", "device", "browser", "os", "country"]
# a day's visits are closed once their last event plus the timeout is this far in the past (an event still on its
# way through Kafka is found later as a late one, and the day made again)
SETTLE = timedelta(minutes=15)
# an insert that began this long before a run may not be seen by it yet: its events count as stored after the run
UNDER_WAY = timedelta(minutes=1)
_DAY_ROWS = ("type", "gap_us", "day", "closed_at", "reach_us", "verified_at")


@dataclass
class Report:
    """What one run did, over every type."""

    made: int = 0  # days whose visits were stored
    verified: int = 0  # days found standing
    open: int = 0  # days left to the raw events (a visit may go on)
    visits: int = 0  # visits stored

    def line(self) -> str:
        return (f"close-visits: {self.made} day(s) made ({self.visits} visits), {self.verified} verified,"
                f" {self.open} left to the raw events")


def _day_visits(kind: str, day: date, timeout_minutes: int) -> tuple[str, dict[str, Any]]:
    """ClickHouse: the visits of type ``kind`` that start on ``day`` (``COLUMNS`` on their first event), and the
    values it binds."""
    f = Filter(since=day, until=day + timedelta(days=1), type=kind)
    sql = (f"SELECT * FROM ({visits_of_visitors(visit_rows(f, COLUMNS)[1], COLUMNS)})"
           " WHERE start_us >= {since_us:Int64} AND start_us < {until_us:Int64}")
    return sql, Params.of(f, session_timeout_minutes=timeout_minutes).ch


def _span(start: date, end: date) -> dict[str, Any]:
    return {"since": datetime.combine(start, datetime.min.time(), UTC),
            "until": datetime.combine(end, datetime.min.time(), UTC)}


def close_visits(settings: Settings, days: tuple[date, date] | None = None, settled: datetime | None = None,
                 under_way: timedelta = UNDER_WAY) -> Report:
    """One run (see the module) over ``days`` ([first, end), default: the first human event's day to today),
    closing the days whose visits end (their last event plus the timeout) before ``settled`` (default: ``SETTLE``
    before now); ``under_way``: how long an insert may take to be seen (tests that wrote before: none)."""
    timeout = settings.session_timeout_minutes
    gap_us = timeout * 60_000_000
    report = Report()
    client = ch_client(settings, "writer")
    try:
        now = client.query("SELECT now64(6, 'UTC')").result_rows[0][0].replace(tzinfo=UTC)
        verified_at = now - under_way
        if days is None:
            first = client.query("SELECT count(), min(day) FROM visitors_daily").result_rows[0]
            if not first[0]:
                return report
            days = (first[1], now.date())
        start, end = days
        span = {**_span(start, end), "visit_gap_us": gap_us}
        for kind in TYPES:
            stand = {row[0]: row[1] for row in client.query(
                standing(kind, "day >= toDate32({since:DateTime}) AND day < toDate32({until:DateTime})"),
                parameters=span).result_rows}
            reach = {row[0]: row[2] for row in client.query(
                markers(kind, "day >= toDate32({since:DateTime}) AND day < toDate32({until:DateTime})"),
                parameters=span).result_rows}
            rows = [(kind, gap_us, day, closed, reach[day], verified_at) for day, closed in stand.items()]
            report.verified += len(rows)
            day = start
            while day < end:
                if day not in stand:
                    made = _make(client, kind, day, timeout, settled or now - SETTLE, verified_at)
                    if made is None:
                        report.open += 1
                    else:
                        rows.append(made[0])
                        report.made += 1
                        report.visits += made[1]
                day += timedelta(days=1)
            if rows:
                client.insert(DAYS, rows, column_names=list(_DAY_ROWS), settings=_FOREGROUND)
    finally:
        client.close()
    log.info("visits closed", extra={"made": report.made, "verified": report.verified, "open": report.open,
                                     "visits": report.visits})
    return report


# a cluster's Distributed tables write to every shard before the insert returns (the day's row after its visits)
_FOREGROUND = {"distributed_foreground_insert": 1}


def _make(client: Any, kind: str, day: date, timeout: int, settled: datetime, verified_at: datetime
          ) -> tuple[tuple[Any, ...], int] | None:
    """Store the visits of type ``kind`` of ``day`` if no event can join them any more (its row in
    ``visits_days`` and how many visits), else None."""
    sql, params = _day_visits(kind, day, timeout)
    n, last = client.query(f"SELECT count(), max(start_us + duration_us) FROM ({sql})", parameters=params
                           ).result_rows[0]
    gap_us = params["visit_gap_us"]
    end_us = params["until_us"]
    reach = max(end_us, last + gap_us) if n else end_us
    settled_us = (settled - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    if reach > settled_us or (n and last >= end_us + DAY_US - gap_us):
        return None  # a visit may still go on, or goes on past the day the dashboard follows it to
    closed_at = verified_at
    if n:
        client.command(
            f"INSERT INTO {VISITS} (type, gap_us, day, closed_at, visitor_id, start_us, duration_us, pages,"
            f" exit_link, entry_link, {', '.join(COLUMNS[1:])}) SELECT {{kind:String}}, {{visit_gap_us:Int64}},"
            " toDate32({since:DateTime}), {closed_at:DateTime64(6, 'UTC')}, *"
            f" FROM ({sql})", parameters={**params, "kind": kind, "closed_at": closed_at}, settings=_FOREGROUND)
    return (kind, gap_us, day, closed_at, reach, verified_at), n
