"""``footprint close-visits``: the visits that have ended, stored in ClickHouse (``closedvisits``).

One run, for each type of ``closedvisits.TYPES`` and the configured session timeout, over the days from
ClickHouse's first human event up to today (UTC):

- a day already closed whose stored visits still stand (no event that could change them stored since) is
  verified: it gets a new row in ``visits_days``, verified as of the run's start (less ``UNDER_WAY``, for an
  insert under way), so that readers look for late events among the granules stored since then only;
- any other day is made: its visits of the raw events (``stats.visits_of_visitors``, as the dashboard makes them)
  are stored, counted per entry page, exit page and the entry's audience, and its row says so. A day not over
  yet (today; yesterday for ``SETTLE`` after midnight, for an event on its way) is stored in part: its visits
  that have ended, whenever they started (their last event more than the timeout before ``SETTLE`` ago), made
  again at each run until the whole day is stored.

Runs as the writer (INSERT and SELECT): a day made again leaves its older rows in ``visits_closed`` unread (a
day's row names the ``closed_at`` of its visits); retention drops them with their month. Several runs at once do
no harm: the newest row of a day names visits that were stored whole before it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from footprint.closedvisits import AUDIENCE, DAYS, EPOCH, TYPES, VISITS, day_number, micros, standing
from footprint.settings import Settings
from footprint.stats import Filter, Params, visit_rows, visits_of_visitors
from footprint.stores import ch_client

log = logging.getLogger("footprint.visitcloser")

# what a stored row keeps of its visits' first event: the entry page and the audience
COLUMNS = ["link", *AUDIENCE]
# a day's visits are closed once their last event plus the timeout is this far in the past (an event still on its
# way through Kafka is found later as a late one, and the day made again)
SETTLE = timedelta(minutes=15)
# an insert that began this long before a run may not be seen by it yet: its events count as stored after the run
UNDER_WAY = timedelta(minutes=1)
_DAY_ROWS = ("type", "gap_us", "day", "closed_at", "through_us", "reach_us", "verified_at")
# a cluster's Distributed tables write to every shard before the insert returns (the day's row after its visits)
_FOREGROUND = {"distributed_foreground_insert": 1}


@dataclass
class Report:
    """What one run did, over every type."""

    made: int = 0  # days whose visits were stored
    verified: int = 0  # days found standing
    open: int = 0  # days left to the raw events (none of their visits has ended yet)
    visits: int = 0  # visits stored

    def line(self) -> str:
        return (f"{self.made} day(s) made ({self.visits} visits), {self.verified} verified, {self.open} left to the"
                " raw events")


def _day_visits(kind: str, day: date, timeout_minutes: int) -> tuple[str, dict[str, Any]]:
    """ClickHouse: the visits of type ``kind`` that start on ``day``, one row each (``COLUMNS`` on their first
    event), and the values it binds."""
    f = Filter(since=day, until=day + timedelta(days=1), type=kind)
    sql = (f"SELECT * FROM ({visits_of_visitors(visit_rows(f, COLUMNS)[1], COLUMNS)})"
           " WHERE start_us >= {since_us:Int64} AND start_us < {until_us:Int64}")
    return sql, Params.of(f, session_timeout_minutes=timeout_minutes).ch


def close_visits(settings: Settings, days: tuple[date, date] | None = None, settled: datetime | None = None,
                 under_way: timedelta = UNDER_WAY) -> Report:
    """One run (see the module) over ``days`` ([first, end); default: from the first human event's day, today
    included), storing the visits that end (their last event plus the timeout) before ``settled`` (default:
    ``SETTLE`` before now); ``under_way``: how long an insert may take to be seen (tests that wrote before: none)."""
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
            days = (first[1], now.date() + timedelta(days=1))  # today too: its visits that have ended
        start, end = days
        span = {"since": datetime.combine(start, datetime.min.time(), UTC),
                "until": datetime.combine(end, datetime.min.time(), UTC)}
        for kind in TYPES:
            stand, _ = standing(client, kind, gap_us, span)
            whole = {d: m for d, m in stand.items() if m.whole}
            rows = [(kind, gap_us, EPOCH.date() + timedelta(days=m.day), m.closed, m.through, m.reach, verified_at)
                    for m in whole.values()]
            report.verified += len(rows)
            day = start
            while day < end:
                if day_number(day) not in whole:  # a day stored in part: as far as it can be now
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


def _make(client: Any, kind: str, day: date, timeout: int, settled: datetime, verified_at: datetime
          ) -> tuple[tuple[Any, ...], int] | None:
    """Store the visits of type ``kind`` of ``day`` that no event can join any more: all of them once ``settled``
    is past the day (midnight ends every visit), else those whose last event is more than the timeout before it
    (its row in ``visits_days`` and how many visits); None while the day has none such yet."""
    sql, params = _day_visits(kind, day, timeout)
    since_us, end_us, settled_us = params["since_us"], params["until_us"], micros(settled)
    through = end_us if settled_us >= end_us else settled_us - params["visit_gap_us"]
    if through <= since_us:
        return None  # none of its visits can have ended yet
    # a whole day's visits end with it; a part's have all ended by ``settled`` (an event up to it could join one)
    reach = end_us if through == end_us else settled_us
    ended = f"SELECT * FROM ({sql}) WHERE start_us + duration_us < {through}"
    audience = ", ".join(AUDIENCE)
    stored = client.query(f"SELECT count() FROM ({ended})", parameters=params).result_rows[0][0]
    if stored:
        client.command(
            f"INSERT INTO {VISITS} (type, gap_us, day, closed_at, entry_link, exit_link, {audience}, visits,"
            " bounces, duration_us, pages) SELECT {kind:String}, {visit_gap_us:Int64}, toDate32({since:DateTime}),"
            f" {{closed_at:DateTime64(6, 'UTC')}}, link, exit_link, {audience}, count(), countIf(pages = 1),"
            f" sum(duration_us), sum(pages) FROM ({ended}) GROUP BY link, exit_link, {audience}",
            parameters={**params, "kind": kind, "closed_at": verified_at}, settings=_FOREGROUND)
    return (kind, params["visit_gap_us"], day, verified_at, through, reach, verified_at), stored
