"""The visits that have ended, as ClickHouse keeps them (migration 0011): which of a filter's days they
stand for, and the filter's visits read from them there (``footprint.stats._visits``).

``footprint close-visits`` (``footprint.visitcloser``) stores each day's visits, per event type (``''``:
every type together) and session timeout, once no event can join one of them any more: the visits
``stats.visits_of_visitors`` makes of the day's raw events, counted per entry page, exit page and the entry's
audience (``visits_closed``: visits, bounces, the sums of their durations and pages). A day's stored visits
**stand** while

- the day's newest row in ``visits_days`` (by ``verified_at``) has them closed (``closed_at`` after 1970) with the
  filter's type and timeout, and
- no human event of that type which could change them (its time from the day's start up to its ``reach_us``:
  a visit ends at midnight) was stored after that row was verified (``ingested_at``; migration 0011's index on
  it finds such events among the granules stored since).

The days before ClickHouse's first human event stand too: they have no visits. A filter's visits are the stored
visits of its days from its first up to the first day that does not stand or is stored only in part (today's:
its visits that had ended when it was stored), and the visits from there made of the raw events, as before: the
same visits as making all of them of the raw events (PostgreSQL's way; the stores panel compares the two). On a day
stored in part only the visitors with an event since its stored visits' end (``through``) have their events read:
their visits that had not ended then. ``bind`` finds those days before the query runs (two small queries), so that
the query itself reads them as constants.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from footprint.contract import EVENT_TYPES

VISITS = "visits_closed"
DAYS = "visits_days"
# the types whose visits are stored: each event type's, and every type's together ('')
TYPES = ("", *EVENT_TYPES)
# what a stored row keeps of its visits' first event besides the entry page (stats.AUDIENCE's columns)
AUDIENCE = ("referrer_host", "device", "browser", "os", "country")
DAY_US = 86_400_000_000
MINUTE_US = 60_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# the filter's days in visits_days and visits_closed
_DAYS = "day >= toDate32({since:DateTime}) AND day < toDate32({until:DateTime})"


def type_condition(kind: str) -> str:
    """`` AND type = ...`` for one event type (validated against EVENT_TYPES), nothing for ''."""
    if kind and kind not in EVENT_TYPES:
        raise ValueError(f"type: one of {', '.join(EVENT_TYPES)} (or empty for all)")
    return f" AND type = '{kind}'" if kind else ""


def micros(moment: datetime) -> int:
    """Microseconds since 1970 (UTC), as both stores count a visit's times."""
    return (moment - EPOCH) // timedelta(microseconds=1)


def day_number(day: date) -> int:
    """Days since 1970, as ``toInt32`` of a ``Date32`` counts them."""
    return (day - EPOCH.date()).days


@dataclass(frozen=True)
class Marker:
    """A day's newest row in ``visits_days`` (for one type and timeout)."""

    day: int  # days since 1970
    closed: datetime  # when its stored visits were made (1970: not closed)
    through: int  # microseconds since 1970: its visits whose last event is before it are stored (the day's end: all)
    reach: int  # microseconds since 1970: no later event can change them (the day's end, for a whole day)
    verified: datetime  # when its events were last found unchanged

    @property
    def whole(self) -> bool:
        """Whether every visit of the day is stored."""
        return self.through >= (self.day + 1) * DAY_US

    def changed_by(self, minute: int, stored: datetime) -> bool:
        """Whether an event of the minute starting at ``minute`` (microseconds), the last of them stored at
        ``stored``, may have changed the day's visits: stored after the day was verified, and timed from the day's
        start to its reach (the minutes start at whole minutes, as the days do)."""
        return stored > self.verified and self.day * DAY_US <= minute <= self.reach


def markers(client: Any, kind: str, gap_us: int, span: dict[str, Any]) -> tuple[list[Marker], int | None]:
    """Each day of ``span`` (``since``, ``until``: DateTimes at midnight) with a row in ``visits_days`` for type
    ``kind`` and the timeout, its newest row; and the day (as a number) of ClickHouse's first human event (None:
    there is none)."""
    type_condition(kind)
    first, rows = client.query(
        "SELECT (SELECT if(count() = 0, NULL, toInt32(min(day))) FROM visitors_daily),"
        " arraySort(groupArray((toInt32(day), closed, through, reach, verified))) FROM (SELECT day,"
        " argMax(closed_at, verified_at) AS closed, argMax(through_us, verified_at) AS through,"
        " argMax(reach_us, verified_at) AS reach,"
        f" max(verified_at) AS verified FROM {DAYS} WHERE type = {{kind:String}} AND gap_us = {{gap_us:Int64}}"
        f" AND {_DAYS} GROUP BY day)", parameters={**span, "kind": kind, "gap_us": gap_us}).result_rows[0]
    return [Marker(d, closed.replace(tzinfo=UTC), through, reach, verified.replace(tzinfo=UTC))
            for d, closed, through, reach, verified in rows], first


def standing(client: Any, kind: str, gap_us: int, span: dict[str, Any]) -> tuple[dict[int, Marker], int | None]:
    """The days of ``span`` whose stored visits of type ``kind`` stand (see the module), by number; and the day
    of ClickHouse's first human event (``markers``)."""
    rows, first = markers(client, kind, gap_us, span)
    # a day stored in part ends its stored visits the timeout before its reach (the first close-visits' rows did
    # not: their part was the visits that start before ``through``, which the raw part would count again)
    closed = [m for m in rows if m.closed > EPOCH and (m.whole or m.reach - m.through == gap_us)]
    if not closed:
        return {}, first
    late = client.query(
        f"SELECT intDiv(toUnixTimestamp64Micro(footprint_time), {MINUTE_US}) * {MINUTE_US} AS minute,"
        " max(ingested_at) FROM events WHERE ingested_at > {verified:DateTime64(6, 'UTC')}"
        f" AND NOT synthetic AND NOT bot{type_condition(kind)}"
        " AND footprint_time >= {start:DateTime64(6, 'UTC')} AND footprint_time <= {reach:DateTime64(6, 'UTC')}"
        " GROUP BY minute",
        parameters={"verified": min(m.verified for m in closed),
                    "start": _moment(closed[0].day * DAY_US),
                    "reach": _moment(max(m.reach for m in closed))}).result_rows
    return {m.day: m for m in closed
            if not any(m.changed_by(minute, stored.replace(tzinfo=UTC)) for minute, stored in late)}, first


def bind(client: Any, kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """For a filter's ClickHouse values ``params`` (``stats.Params``), the stored visits' own: ``closed_days`` and
    ``closed_micros`` (the standing days read from the stored visits, from the filter's first up to the first day
    that does not stand or is not whole, that one included if it stands: its visits stored so far; and their
    rows' ``closed_at``), ``closed_until`` (the day after the last of them, as a number) and the ``raw_values``
    of the visits made of the raw events."""
    since, until = day_number(params["since"].date()), day_number(params["until"].date())
    stand, first = standing(client, kind, params["visit_gap_us"], {"since": params["since"], "until": params["until"]})
    day = min(until, since if first is None else max(since, first))  # the days before the first event: no visits
    days: list[int] = []
    while day < until and day in stand:
        days.append(day)
        day += 1
        if not stand[day - 1].whole:
            break
    boundary = stand[days[-1]].through if days and not stand[days[-1]].whole else day * DAY_US
    return {**raw_values(boundary, params), "closed_until": day, "closed_days": days,
            "closed_micros": [micros(stand[d].closed) for d in days]}


def raw_values(boundary_us: int, params: dict[str, Any]) -> dict[str, Any]:
    """The values that make the visits made of the raw events those whose last event is at ``boundary_us``
    (microseconds since 1970) or later, or in the filter's days if they begin later (``raw_open_us``, ``raw_open``):
    the visits before it are the stored ones. Their events are read from the midnight before it (``raw_from``:
    midnight ends every visit); on that day, up to the next midnight (``raw_whole_from``; none if ``boundary_us``
    is a midnight), only a visitor's with an event since ``boundary_us``."""
    open_us = max(params["since_us"], boundary_us)
    day_us = open_us // DAY_US * DAY_US
    whole_us = day_us if open_us == day_us else day_us + DAY_US
    return {"raw_open_us": open_us, "raw_open": _moment(open_us), "raw_from": _moment(day_us),
            "raw_whole_from": _moment(whole_us)}


def _moment(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def stored_visits(kind: str, columns: list[str]) -> str:
    """ClickHouse: the stored visits of type ``kind`` of the filter's days before ``closed_until``, counted per
    ``columns`` (``link``: the entry page's) and exit page: ``visits``, ``bounces``, ``duration_us``, ``pages``
    (the sums of their durations and pages), ``exit_link`` and ``columns``."""
    type_condition(kind)
    chosen = ", ".join("entry_link AS link" if column == "link" else column for column in columns)
    return (f"SELECT visits, bounces, duration_us, pages, exit_link, {chosen} FROM {VISITS}"
            f" WHERE type = '{kind}' AND gap_us = {{visit_gap_us:Int64}} AND day >= toDate32({{since:DateTime}})"
            " AND toInt32(day) < {closed_until:Int32} AND toUnixTimestamp64Micro(closed_at)"
            " = transform(toInt32(day), {closed_days:Array(Int32)}, {closed_micros:Array(Int64)}, toInt64(0))")
