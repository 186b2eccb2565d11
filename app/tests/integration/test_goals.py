"""Goals and funnels (issue 35 item 4) on the real stores against a small reference in Python, property-based.

Generated traffic as in ``test_visits.py``: a few visitors, each a run of page and track events whose gaps lie
around the visit timeout (ties of the same microsecond too), starting around midnight (visits and funnels that
cross it), bots' and probes' events among them, links holding ``%``, ``_`` and ``\\`` (which a page pattern must
match as themselves); written to both stores in shuffled batches (late, out of order) with replays. Drawn goals
(event names and page patterns) and funnels (2 to 4 steps, a goal may come back; within a visit or a day); for
drawn filters (days, link prefix, source) both stores' ``goals`` and ``funnels`` must equal each other and the
reference, which walks each visitor's events of a visit (or a day) in time order and takes each step at the
first event that reaches it after the step before. Drawn filters on a goal (the dashboard's ``goal=NAME``: only the
visitors who reached it in the filter's days) must give the reference's goals, funnels, views, visitors and visits of
those visitors alone, and every other statistic the same in both stores.
"""

from __future__ import annotations

import itertools
import math
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_visits import Hit
from test_visits import reference as visits_reference

from footprint.goals import Definitions, Funnel, Goal
from footprint.goalstats import run_both
from footprint.settings import Settings
from footprint.stats import QUERIES, Filter, run_stats
from helpers import own_stores, write_batches

MINUTE = timedelta(minutes=1)
GAPS = [timedelta(0), MINUTE, 29 * MINUTE, 30 * MINUTE, 30 * MINUTE + timedelta(microseconds=1), 31 * MINUTE,
        timedelta(hours=3)]
LINKS = ["/", "/blog", "/blog/kafka", "/pricing", "/a_b", "/a%b", "/axb", "/x\\y"]
NAMES = ["Signed Up", "Paid", "Search"]
GOALS = [Goal(name="signed up", event="Signed Up"), Goal(name="paid", event="Paid"),
         Goal(name="blog", page="/blog*"), Goal(name="kafka", page="*kafka"), Goal(name="pricing", page="/pricing"),
         Goal(name="a_b", page="/a_b"), Goal(name="a%b", page="/a%*"), Goal(name="slash", page="/x\\*"),
         Goal(name="any page", page="*")]
REFERRER = "news.example"
FIRST_DAY = datetime(2031, 1, 1, tzinfo=UTC)
BLOCK = timedelta(days=4)
blocks = itertools.count()


@st.composite
def runs(draw: st.DrawFn, visitor: str, first: datetime) -> list[Hit]:
    midnight = first + timedelta(days=draw(st.integers(1, 2)))
    when = midnight + draw(st.integers(-40, 10)) * MINUTE + timedelta(microseconds=draw(st.integers(0, 60 * 10**6)))
    out = []
    for gap in [timedelta(0), *draw(st.lists(st.sampled_from(GAPS), min_size=1, max_size=7))]:
        when += gap
        out.append(Hit(visitor, when, str(uuid.uuid4()), draw(st.sampled_from(LINKS)),
                       draw(st.sampled_from(["page", "page", "track"])),
                       draw(st.sampled_from([""] * 8 + ["bot", "synthetic"])),
                       draw(st.sampled_from(["", "", REFERRER])), draw(st.sampled_from(NAMES))))
    return out


@st.composite
def definitions(draw: st.DrawFn) -> Definitions:
    goals = tuple(draw(st.lists(st.sampled_from(GOALS), min_size=1, max_size=6, unique=True)))
    names = [g.name for g in goals]
    funnels = tuple(Funnel(name=f"funnel {i}", steps=tuple(draw(st.lists(st.sampled_from(names), min_size=2,
                                                                          max_size=4))),
                           within=draw(st.sampled_from(["visit", "day"]))) for i in range(draw(st.integers(0, 3))))
    return Definitions.merged((goals, funnels), ((), ()))


@st.composite
def traffic(draw: st.DrawFn) -> tuple[list[Hit], list[list[Hit]], list[Filter]]:
    first = FIRST_DAY + next(blocks) * BLOCK
    hits = [hit for v in range(draw(st.integers(2, 6))) for hit in draw(runs(f"v{v}-{first:%Y%m%d}", first))]
    order = draw(st.permutations(hits))
    cut = draw(st.integers(0, len(order)))
    replayed = draw(st.lists(st.sampled_from(hits), max_size=3))
    asked = {"link": draw(st.sampled_from(["", "", "/blog", "/a"])),
             "source": draw(st.sampled_from([None, None, REFERRER, ""]))}
    goal = draw(st.sampled_from(GOALS))
    day = first.date()
    filters = [Filter(since=day + timedelta(days=1), until=day + timedelta(days=2)),
               Filter(since=day, until=day + timedelta(days=4)),
               Filter(since=day + timedelta(days=2), until=day + timedelta(days=3), **asked),
               Filter(since=day, until=day + timedelta(days=4), **asked),
               Filter(since=day + timedelta(days=draw(st.integers(1, 2))), until=day + timedelta(days=3),
                      goal=goal.name, goal_definition=goal, **asked)]
    return hits, [order[:cut], order[cut:] + replayed], filters


def _tenths(part: int, whole: int) -> int | float:
    """``part`` of ``whole`` in per cent, one decimal, half up (as the stores give it: an int when whole)."""
    tenths = math.floor(Fraction(1000 * part, whole) + Fraction(1, 2)) if whole else 0
    return tenths // 10 if tenths % 10 == 0 else tenths / 10


def reaches(goal: Goal, h: Hit) -> bool:
    if goal.event is not None:
        return h.kind == "track" and h.name == goal.event
    assert goal.page is not None
    pattern = ".*".join(re.escape(part) for part in goal.page.split("*"))
    return h.kind == "page" and re.fullmatch(pattern, h.link, re.DOTALL) is not None


def _groups(events: list[Hit], within: str, timeout: timedelta) -> list[list[Hit]]:
    """Each visitor's events (in time order) in visits or days (midnight ends a visit too)."""
    groups: list[list[Hit]] = []
    for h in events:
        last = groups[-1][-1] if groups else None
        if (last is None or last.visitor != h.visitor or h.time.date() != last.time.date()
                or (within == "visit" and h.time - last.time > timeout)):
            groups.append([])
        groups[-1].append(h)
    return groups


def _of_goal(hits: list[Hit], f: Filter) -> list[Hit]:
    """The events of the visitors who reached the filter's goal in its days (a human event reaching it), or all."""
    if f.goal_definition is None:
        return hits
    since, until = (datetime.combine(day, dtime(), UTC) for day in (f.since, f.until))
    reached = {h.visitor for h in hits if not h.left_out and since <= h.time < until and reaches(f.goal_definition, h)}
    return [h for h in hits if h.visitor in reached]


def reference(hits: list[Hit], f: Filter, d: Definitions, timeout: timedelta) -> dict[str, list[tuple[Any, ...]]]:
    since, until = (datetime.combine(day, dtime(), UTC) for day in (f.since, f.until))
    events = sorted((h for h in _of_goal(hits, f) if not h.left_out and since <= h.time < until
                     and h.link.startswith(f.link) and f.source in (None, h.referrer)),
                    key=lambda h: (h.visitor, h.time, h.event_id))
    everyone = len({h.visitor for h in events})
    goals = []
    for goal in d.goals:
        reached = [h for h in events if reaches(goal, h)]
        visitors = len({h.visitor for h in reached})
        goals.append((goal.name, visitors, len(reached), everyone, _tenths(visitors, everyone)))
    by_name = {g.name: g for g in d.goals}
    funnels = []
    for funnel in d.funnels:
        at_step: list[set[str]] = [set() for _ in funnel.steps]
        for group in _groups(events, funnel.within, timeout):
            step = 0
            for h in group:
                if step < len(funnel.steps) and reaches(by_name[funnel.steps[step]], h):
                    at_step[step].add(h.visitor)
                    step += 1
        counts = [len(s) for s in at_step]
        for k, n in enumerate(counts):
            before = counts[k - 1] if k else n
            funnels.append((funnel.name, k + 1, funnel.steps[k], n, _tenths(n, counts[0]), _tenths(before - n, before)))
    return {"goals": goals, "funnels": funnels} if d.funnels else {"goals": goals}


def reference_of_goal(hits: list[Hit], f: Filter, timeout: timedelta) -> dict[str, list[tuple[Any, ...]]]:
    """Views and visitors per day and the visits of a goal's filter: those of its visitors' events alone."""
    since, until = (datetime.combine(day, dtime(), UTC) for day in (f.since, f.until))
    theirs = _of_goal(hits, f)
    views = [h for h in theirs if not h.left_out and h.kind == "page" and since <= h.time < until
             and h.link.startswith(f.link) and f.source in (None, h.referrer)]
    per_day = Counter(h.time.date().isoformat() for h in views)
    visitors = {day: len({h.visitor for h in views if h.time.date().isoformat() == day}) for day in per_day}
    return {"views_per_day": sorted(per_day.items()), "unique_visitors_per_day": sorted(visitors.items()),
            **visits_reference(theirs, replace(f, goal=None, goal_definition=None), timeout)}


@pytest.fixture(scope="module")
def stores(base_settings: Settings, postgres: Any) -> Iterator[tuple[Settings, list[Any]]]:
    with own_stores(base_settings, postgres, "footprint_goals") as made:
        yield made


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn=traffic(), defined=definitions(), timeout=st.sampled_from([30, 31]))
def test_both_stores_count_goals_and_funnels_as_the_reference(
        stores: tuple[Settings, list[Any]], drawn: tuple[list[Hit], list[list[Hit]], list[Filter]],
        defined: Definitions, timeout: int) -> None:
    s, sinks = stores
    s = s.model_copy(update={"session_timeout_minutes": timeout})
    hits, batches, filters = drawn
    write_batches(sinks, batches)
    for f in filters:
        expected = reference(hits, f, defined, timedelta(minutes=timeout))
        results = run_both(s, f, defined)
        assert {r.name for r in results} == set(expected)
        for r in results:
            assert r.pg_rows == r.ch_rows == expected[r.name], (r.name, f, r.pg_rows, r.ch_rows, expected[r.name],
                                                                defined, hits)
    f = filters[-1]  # a goal's: the other statistics of its visitors, the same in both stores
    expected = reference_of_goal(hits, f, timedelta(minutes=timeout))
    for r in run_stats(s, f.since, f.until, f=f, names=tuple(QUERIES)):
        assert r.pg_rows == r.ch_rows, (r.name, f, r.pg_rows, r.ch_rows, hits)
        assert r.name not in expected or r.pg_rows == expected[r.name], (r.name, f, r.pg_rows, expected[r.name])
