"""Visits (sessions, issue 35 item 3) on the real stores against a small reference in Python, property-based.

Generated traffic: a few visitors, each a run of events whose gaps lie around the timeout (29 min, 30 min, 30 min
and a microsecond, 31 min...), starting around midnight (runs that cross it), page and track events with bots'
and probes' events among them, some with a referrer; written to both stores in shuffled batches (events arrive
late and out of order) with replays. For a drawn filter (days, type, link prefix, source) both stores' visits,
entry and exit pages must equal each other and the reference, which splits each visitor's human events of the
type, in time order, wherever more than the timeout passes and at midnight, and keeps the visits that start in
the days and whose first event matches the link prefix and the source.

The stores are a database of the test's own (``services.OWN_DATABASES``); every example writes into days of its
own, so the examples never see each other's events.
"""

from __future__ import annotations

import itertools
import math
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from footprint.closedvisits import TYPES, bind
from footprint.contract import make_event
from footprint.settings import Settings
from footprint.stats import Filter, Params, run_stats
from footprint.stores import ch_client
from footprint.visitcloser import close_visits
from helpers import own_stores, write_batches

MINUTE = timedelta(minutes=1)
GAPS = [timedelta(0), MINUTE, 29 * MINUTE, 30 * MINUTE - timedelta(microseconds=1), 30 * MINUTE,
        30 * MINUTE + timedelta(microseconds=1), 31 * MINUTE, timedelta(hours=2)]
LINKS = ["/", "/blog", "/blog/kafka", "/pricing"]
REFERRER = "news.example"
FIRST_DAY = datetime(2030, 1, 1, tzinfo=UTC)
BLOCK = timedelta(days=4)  # every example writes into 4 days of its own (its events: from the first day's end on)
blocks = itertools.count()


@dataclass(frozen=True)
class Hit:
    visitor: str
    time: datetime
    event_id: str
    link: str
    kind: str  # page or track
    left_out: str  # "", "bot" or "synthetic"
    referrer: str
    name: str | None = None  # a track event's name (None: the contract's default)

    def event(self) -> dict[str, Any]:
        return make_event(type=self.kind, event_id=self.event_id, footprint_time=self.time,
                          received_at=datetime.now(UTC), anonymous_id=self.visitor, link=self.link,
                          event=self.name if self.kind == "track" else None,
                          method="GET" if self.kind == "page" else None, synthetic=self.left_out == "synthetic",
                          enriched={"bot": self.left_out == "bot", "device": "bot" if self.left_out == "bot" else "",
                                    "referrer_host": self.referrer})


@st.composite
def runs(draw: st.DrawFn, visitor: str, first: datetime) -> list[Hit]:
    """One visitor's events: from around the midnight that starts the block's second or third day (``first``:
    the block's first), gaps around the timeout."""
    midnight = first + timedelta(days=draw(st.integers(1, 2)))
    when = midnight + draw(st.integers(-35, 5)) * MINUTE + timedelta(microseconds=draw(st.integers(0, 60 * 10**6)))
    out = []
    for gap in [timedelta(0), *draw(st.lists(st.sampled_from(GAPS), min_size=1, max_size=5))]:
        when += gap
        out.append(Hit(visitor, when, str(uuid.uuid4()),  # never drawn: an id is stored once, by its first write
                       draw(st.sampled_from(LINKS)), draw(st.sampled_from(["page"] * 4 + ["track"])),
                       draw(st.sampled_from([""] * 8 + ["bot", "synthetic"])),
                       draw(st.sampled_from(["", "", REFERRER]))))
    return out


@st.composite
def traffic(draw: st.DrawFn) -> tuple[list[Hit], list[list[Hit]], list[Filter]]:
    """The block's events, the batches they are written in (shuffled, some twice) and the filters to ask: the
    second day and the third (page events, from midnight to midnight), then the second day and all three with a
    drawn type, link prefix and source."""
    first = FIRST_DAY + next(blocks) * BLOCK
    hits = [hit for v in range(draw(st.integers(2, 5))) for hit in draw(runs(f"v{v}-{first:%Y%m%d}", first))]
    order = draw(st.permutations(hits))
    cut = draw(st.integers(0, len(order)))
    replayed = draw(st.lists(st.sampled_from(hits), max_size=3))
    asked = {"type": draw(st.sampled_from(["page", "page", ""])), "link": draw(st.sampled_from(["", "", "/blog"])),
             "source": draw(st.sampled_from([None, None, REFERRER, ""]))}
    day = first.date()
    filters = [Filter(since=day + timedelta(days=1), until=day + timedelta(days=2)),
               Filter(since=day + timedelta(days=2), until=day + timedelta(days=3)),
               Filter(since=day + timedelta(days=1), until=day + timedelta(days=2), **asked),
               Filter(since=day, until=day + timedelta(days=3), **asked)]
    return hits, [order[:cut], order[cut:] + replayed], filters


def _half_up(value: Fraction) -> int:
    return math.floor(value + Fraction(1, 2))


def reference(hits: list[Hit], f: Filter, timeout: timedelta) -> dict[str, list[tuple[Any, ...]]]:
    """The visits of ``f`` in plain Python: each visitor's human events of the type, in the order of their
    time, split wherever more than ``timeout`` passes and at midnight (UTC); those starting in the days whose
    first event matches."""
    since, until = (datetime.combine(day, dtime(), UTC) for day in (f.since, f.until))
    human = sorted((h for h in hits if not h.left_out and (not f.type or h.kind == f.type)),
                   key=lambda h: (h.visitor, h.time, h.event_id))
    visits: list[list[Hit]] = []
    for _, theirs in itertools.groupby(human, key=lambda h: h.visitor):
        for h in theirs:
            last = visits[-1][-1] if visits else None
            if (last is None or last.visitor != h.visitor or h.time - last.time > timeout
                    or h.time.date() != last.time.date()):
                visits.append([])
            visits[-1].append(h)
    chosen = [v for v in visits if since <= v[0].time < until and v[0].link.startswith(f.link)
              and f.source in (None, v[0].referrer)]
    n = len(chosen)
    bounces = sum(len(v) == 1 for v in chosen)
    micros = sum((v[-1].time - v[0].time) // timedelta(microseconds=1) for v in chosen)
    figures = (n, bounces, _half_up(Fraction(100 * bounces, n)) if n else 0,
               _half_up(Fraction(micros, n * 10**6)) if n else 0,
               _half_up(Fraction(100 * sum(map(len, chosen)), n)) / 100 if n else 0)

    def most(links: Counter[str]) -> list[tuple[Any, ...]]:
        return sorted(links.items(), key=lambda item: (-item[1], item[0]))[:f.top]

    return {"visits": [figures], "entry_pages": most(Counter(v[0].link for v in chosen)),
            "exit_pages": most(Counter(v[-1].link for v in chosen))}


@pytest.fixture(scope="module")
def stores(base_settings: Settings, postgres: Any) -> Iterator[tuple[Settings, list[Any]]]:
    with own_stores(base_settings, postgres, "footprint_visits") as made:
        yield made


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn=traffic(), timeout=st.sampled_from([30, 31]))
def test_both_stores_count_the_visits_of_the_reference(stores: tuple[Settings, list[Any]],
                                                       drawn: tuple[list[Hit], list[list[Hit]], list[Filter]],
                                                       timeout: int) -> None:
    """``timeout``: FOOTPRINT_SESSION_TIMEOUT_MINUTES, the default or a minute more. A third of the events have a
    second row in ClickHouse (``_copy_rows``)."""
    s, sinks = stores
    s = s.model_copy(update={"session_timeout_minutes": timeout})
    hits, batches, filters = drawn
    write_batches(sinks, batches)
    _copy_rows(s, [h.event_id for h in hits[::3]])
    _same_as_the_reference(s, hits, filters)


def _copy_rows(s: Settings, ids: list[str]) -> None:
    """A second row of each of those events in ClickHouse's ``events`` (as a race past the consumer's id lookup
    would leave before a merge): the visits must count each event once all the same."""
    client = ch_client(s, "writer")
    try:
        client.command("INSERT INTO events SELECT * FROM events WHERE has({ids:Array(UUID)}, event_id)",
                       parameters={"ids": ids})
    finally:
        client.close()


def _same_as_the_reference(s: Settings, hits: list[Hit], filters: list[Filter]) -> None:
    for f in filters:
        expected = reference(hits, f, timedelta(minutes=s.session_timeout_minutes))
        for r in run_stats(s, f.since, f.until, f=f, names=tuple(expected)):
            assert r.pg_rows == r.ch_rows == expected[r.name], (r.name, f, r.pg_rows, r.ch_rows, expected[r.name],
                                                                hits)


def _closed_until(s: Settings, f: Filter) -> date:
    """The first day of ``f`` whose visits ClickHouse makes of the raw events (the days before: stored)."""
    client = ch_client(s, "reader")
    try:
        day = bind(client, f.type, Params.of(f, session_timeout_minutes=s.session_timeout_minutes).ch)["closed_until"]
    finally:
        client.close()
    return date(1970, 1, 1) + timedelta(days=day)


def _stored_until(f: Filter, settled: datetime, gap: timedelta) -> date:
    """``_closed_until`` once the block was closed as of ``settled``: its days before ``settled``'s are whole, that
    day is stored in part if a visit can have ended (its visits' last events more than ``gap`` before ``settled``),
    the days after it are left to the raw events."""
    day = settled.date()
    partial = day + timedelta(days=1) if settled - gap > datetime.combine(day, dtime(), UTC) else day
    return min(f.until, max(f.since, partial))


def _joining(hits: list[Hit], gap: timedelta, index: int) -> Hit:
    """One of the human events that join a visit (each type's together), by ``index``, or of all if none does: a
    run that takes its time for the end of the visits it stores cuts that visit."""
    human = sorted((h for h in hits if not h.left_out), key=lambda h: (h.visitor, h.time, h.event_id))
    joining = [b for a, b in itertools.pairwise(human) if a.visitor == b.visitor
               and b.time - a.time <= gap and a.time.date() == b.time.date()] or hits
    return joining[index % len(joining)]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn=traffic(), timeout=st.sampled_from([30, 31]),
       settled_at=st.one_of(st.none(), st.tuples(st.integers(0, 100), st.integers(-2, 1))))
def test_stored_visits_of_closed_days_give_the_same_answers_and_late_events_reopen_them(
        stores: tuple[Settings, list[Any]], drawn: tuple[list[Hit], list[list[Hit]], list[Filter]],
        timeout: int, settled_at: tuple[int, int] | None) -> None:
    """``footprint close-visits`` (visitcloser) stores the visits of the block's days once its first batch is
    written: ClickHouse then reads them (its stored days reach past the filters' first days), and every answer
    stays the reference's. ``settled_at`` (None: long after the block) chooses the time the run takes for now
    less ``SETTLE``: the timeout and a few minutes (the tuple's second) after an event that joins a visit
    (``_joining``, its first), so that the end of the visits the run stores may cut one. The day it falls in is
    stored in part (the visits that had ended then), the later days are not stored. The second batch (events
    late for those days, replays) is written after: the days it changes are read from the raw events again until
    the next run makes them again, and the answers stay the reference's throughout. The other timeout's stored
    visits are never read."""
    s, sinks = stores
    s = s.model_copy(update={"session_timeout_minutes": timeout})
    hits, batches, filters = drawn
    first = filters[-1].since
    block = (first, first + timedelta(days=4))
    gap = timedelta(minutes=timeout)
    # the block's days are in 2030: with settled_at None, settled as of ten years from now
    settled = (datetime.now(UTC) + timedelta(days=3650) if settled_at is None
               else _joining(hits, gap, settled_at[0]).time + gap + settled_at[1] * MINUTE)
    # (and every write below has returned before the run it precedes: no insert is under way)
    write_batches(sinks, batches[:1])
    written = {h.event_id for h in batches[0]}
    close_visits(s.model_copy(update={"session_timeout_minutes": 61 - timeout}), days=block, settled=settled,
                 under_way=timedelta(0))
    report = close_visits(s, days=block, settled=settled, under_way=timedelta(0))
    assert report.made + report.open == 4 * len(TYPES) and report.verified == 0, report
    for f in filters:
        assert _closed_until(s, f) == _stored_until(f, settled, gap), f  # the filter's stored days
    _same_as_the_reference(s, [h for h in hits if h.event_id in written], filters)
    write_batches(sinks, batches[1:])
    _same_as_the_reference(s, hits, filters)
    again = close_visits(s, days=block, settled=settled, under_way=timedelta(0))
    assert again.made + again.verified + again.open == 4 * len(TYPES), again
    late = {h for h in batches[1] if h.event_id not in written and not h.left_out}
    if settled_at is None:
        assert (again.made > 0) == bool(late), (again, late)  # a late human event makes its days again, only then
    for f in filters:
        assert _closed_until(s, f) == _stored_until(f, settled, gap), f
    _same_as_the_reference(s, hits, filters)
