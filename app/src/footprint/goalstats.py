"""Goals and funnels (``goals.py``) counted by one query each in both stores, beside the other statistics.

Both read the filter's human events of every type (a goal names its own: track events by name, page events by
path pattern) in the filter's days, with its link prefix and audience, from the raw tables.

* ``goals``, one row per goal in the order defined: ``[goal, visitors, conversions, visitors in the filter,
  conversion rate]``: the distinct visitors with an event reaching the goal, those events, the distinct visitors
  with any event of the filter, and the first over the third in per cent (one decimal, half up).
* ``funnels``, one row per funnel and step: ``[funnel, step (1..), goal, visitors, from the first step %, drop-off
  from the step before %]``. A visitor reaches step k when, within one of their visits (the filter's events at
  most ``session_timeout_minutes`` apart, as the Visits panel splits them, here over every type and cut at the
  filter's days) or one UTC day (the funnel's ``within``), an event reaches step 1, a later one step 2, ...,
  a later one step k; later: in the order of the events' own time, then their id (never the order they
  arrived in). Each step takes the earliest such event after the one before (which finds a way through
  whenever there is one); the rates are half up to one decimal.
"""

from __future__ import annotations

from dataclasses import replace

from footprint.closedvisits import DAY_US
from footprint.goals import Definitions, Funnel, Goal
from footprint.settings import Settings
from footprint.stats import (
    VISIT_ORDER,
    Filter,
    Params,
    Planned,
    QueryResult,
    Rows,
    numbered_visits,
    raw_days,
    run_plan,
    run_plan_clickhouse,
    visit_starts,
    visitors_events,
)

GOALS, FUNNELS = "goals", "funnels"
NEVER = 2**62  # a position past every part: once a step is not found, no later one is


def percent(part: str, whole: str) -> tuple[str, str]:
    """``part`` of ``whole`` in per cent, one decimal, rounded half up in integers (0 where ``whole`` is 0)."""
    tenths = f"2000 * ({part}) + ({whole}), 2 * greatest({whole}, 1)"
    return f"round(div({tenths}) / 10, 1)", f"toDecimal64(intDiv({tenths}), 1) / 10"


def _match(goal: Goal, i: int) -> tuple[str, str]:
    """Whether an event reaches goal ``i`` (its value bound as ``g<i>``)."""
    return goal.condition(f"g{i}")


def _goals(f: Filter, goals: tuple[Goal, ...]) -> tuple[str, str]:
    pg, ch = raw_days(replace(f, type=""))
    each_pg = " UNION ALL ".join(
        f"SELECT {i} AS i, %(gn{i})s::text AS goal, count(DISTINCT visitor_id) AS visitors, count(*) AS conversions"
        f" FROM events WHERE {pg} AND {_match(g, i)[0]}" for i, g in enumerate(goals))
    # ClickHouse: one pass over the events, every goal's visitors and conversions counted in one row, then
    # unfolded into the goals' rows (a read per goal, as PostgreSQL's, was 2.2x slower: RESULTS.md section 23)
    counted_ch = ", ".join(f"uniqExactIf(visitor_id, {_match(g, i)[1]}) AS v{i}, countIf({_match(g, i)[1]}) AS c{i}"
                           for i, g in enumerate(goals))
    unfolded_ch = ", ".join(f"({i}, {{gn{i}:String}}, v{i}, c{i})" for i in range(len(goals)))
    rate_pg, _ = percent("g.visitors", "t.visitors")
    _, rate_ch = percent("visitors", "everyone")
    return (f"SELECT g.goal, g.visitors, g.conversions, t.visitors, {rate_pg} FROM ({each_pg}) g"
            f" CROSS JOIN (SELECT count(DISTINCT visitor_id) AS visitors FROM events WHERE {pg}) t ORDER BY g.i",
            f"SELECT goal, visitors, conversions, everyone, {rate_ch}"
            " FROM (SELECT t.1 AS i, t.2 AS goal, t.3 AS visitors, t.4 AS conversions, everyone"
            f" FROM (SELECT arrayJoin([{unfolded_ch}]) AS t, everyone"
            f" FROM (SELECT {counted_ch}, uniqExact(visitor_id) AS everyone FROM events FINAL WHERE {ch})))"
            " ORDER BY i")


def _events_pg(f: Filter, goals: tuple[Goal, ...], used: list[int]) -> str:
    """PostgreSQL: the filter's events, one row each: the visitor, the visit and the day, ``key`` (its order: the
    time in microseconds, 20 digits, then its id; compared byte by byte) and ``m<i>``: whether it reaches goal i."""
    pg = raw_days(replace(f, type=""))[0]
    match = ", ".join(f"{_match(goals[i], i)[0]} AS m{i}" for i in used)
    ms = ", ".join(f"m{i}" for i in used)
    numbered = numbered_visits(f"SELECT visitor_id, {VISIT_ORDER[0]}, {match} FROM events WHERE {pg}")
    return (f"SELECT visitor_id, visit, div(us, {DAY_US}) AS day, (lpad(us::text, 20, '0') || id) COLLATE \"C\""
            f" AS key, {ms} FROM {numbered}")


def _steps_pg(j: int, funnel: Funnel, index: dict[str, int]) -> list[str]:
    """PostgreSQL: funnel ``j``'s steps as named subqueries ``f<j>s<k>``: per visitor and visit (or day) that
    reached step k, the key of the earliest event reaching it after step k-1's (``vid``, ``grp``, ``at``)."""
    within = funnel.within
    steps: list[str] = []
    for k, step in enumerate(funnel.steps):
        m = f"m{index[step]}"
        if k == 0:
            steps.append(f"f{j}s0 AS (SELECT visitor_id AS vid, {within} AS grp, min(key) AS at FROM e WHERE {m}"
                         f" GROUP BY visitor_id, {within})")
            continue
        steps.append(f"f{j}s{k} AS (SELECT e.visitor_id AS vid, e.{within} AS grp, min(e.key) AS at FROM e"
                     f" INNER JOIN f{j}s{k - 1} AS p ON e.visitor_id = p.vid AND e.{within} = p.grp WHERE e.{m}"
                     f" AND e.key > p.at COLLATE \"C\" GROUP BY e.visitor_id, e.{within})")
    return steps


def _funnels(f: Filter, goals: tuple[Goal, ...], funnels: tuple[Funnel, ...]) -> tuple[str, str]:
    index = {g.name: i for i, g in enumerate(goals)}
    used = sorted({index[step] for funnel in funnels for step in funnel.steps})
    named_pg, counted_pg = [f"e AS ({_events_pg(f, goals, used)})"], []
    for j, funnel in enumerate(funnels):
        named_pg += _steps_pg(j, funnel, index)
        for k, step in enumerate(funnel.steps):
            counted_pg.append(f"SELECT {j} AS fi, %(fn{j})s::text AS funnel, {k + 1} AS step, %(gn{index[step]})s::text"
                              f" AS goal, count(DISTINCT vid) AS visitors FROM f{j}s{k}")
    (first_pg, first_ch), (drop_pg, drop_ch) = percent("visitors", "first_step"), percent(
        "previous_step - visitors", "previous_step")  # of the columns first_step and previous_step, both stores
    return (f"WITH {', '.join(named_pg)} SELECT funnel, step, goal, visitors, {first_pg}, {drop_pg}"
            " FROM (SELECT *, first_value(visitors) OVER w AS first_step,"
            " coalesce(lag(visitors) OVER w, visitors) AS previous_step"
            f" FROM ({' UNION ALL '.join(counted_pg)}) u WINDOW w AS (PARTITION BY fi ORDER BY step)) c"
            " ORDER BY fi, step",
            _funnels_ch(f, goals, funnels, index, used, f"{first_ch}, {drop_ch}"))


def _funnels_ch(f: Filter, goals: tuple[Goal, ...], funnels: tuple[Funnel, ...], index: dict[str, int],
                used: list[int], rates: str) -> str:
    """ClickHouse's funnels in one pass over the filter's events: each visitor's events as one sorted array
    (``visitors_events``, with ``m<i>``: whether the event reaches goal i), split into visits (``visit_starts``)
    or UTC days, and in each part a fold over the funnel's steps that finds each step's event, the first after
    the last step's that reaches its goal (a fold over the events instead costs the longest part's length for
    every part: 43 s at 10M events, benchmarks/RESULTS.md section 23): the steps the visitor reached (``r<j>``,
    the most of any part). Then the visitors who reached each step, all counted in one row and unfolded into
    the funnels' rows. The same steps as PostgreSQL's joins (each the earliest event after the one before),
    without reading the events per step. ``rates``: the two rates' columns, of ``first_step`` and
    ``previous_step``."""
    ch = raw_days(replace(f, type=""))[1]
    match = ", ".join(f"{_match(goals[i], i)[1]} AS m{i}" for i in used)
    element = {i: n for n, i in enumerate(used, start=3)}  # goal i -> its flag's element in an event's tuple
    rows = f"SELECT visitor_id, {VISIT_ORDER[1]}, {match} FROM events FINAL WHERE {ch}"
    starts = {"visit": visit_starts("evs"),
              "day": f"arrayMap((d, i) -> i = 1 OR d != 0, arrayDifference(arrayMap(e -> intDiv(e.1, {DAY_US}), evs)),"
                     " arrayEnumerate(evs))"}
    reached, counts, unfolded = [], [], []
    for j, funnel in enumerate(funnels):
        steps = ", ".join(f"tupleElement(e, {element[index[step]]})" for step in funnel.steps)
        # step k's event in part p: the first after the last step's (acc.1) that reaches step k's goal (NULL: none)
        found = f"arrayFirstOrNull((i, e) -> i > acc.1 AND [{steps}][k], arrayEnumerate(p), p)"
        fold = (f"arrayFold((acc, k) -> (toInt64(ifNull({found}, {NEVER})), acc.2 + toInt64(isNotNull({found}))),"
                f" range(1, {len(funnel.steps) + 1}), (toInt64(0), toInt64(0))).2")  # the steps taken in part p
        parts = f"arraySplit((e, s) -> s, evs, {starts[funnel.within]})"
        reached.append(f"arrayMax(arrayMap(p -> {fold}, {parts})) AS r{j}")
        for k, step in enumerate(funnel.steps):
            counts.append(f"countIf(r{j} >= {k + 1}) AS c{j}_{k}")
            unfolded.append(f"({j}, {{fn{j}:String}}, {k + 1}, {{gn{index[step]}:String}}, c{j}_{k}, c{j}_0,"
                            f" c{j}_{max(k - 1, 0)})")
    return (f"SELECT funnel, step, goal, visitors, {rates}"
            " FROM (SELECT t.1 AS fi, t.2 AS funnel, t.3 AS step, t.4 AS goal, t.5 AS visitors, t.6 AS first_step,"
            f" t.7 AS previous_step FROM (SELECT arrayJoin([{', '.join(unfolded)}]) AS t"
            f" FROM (SELECT {', '.join(counts)} FROM (SELECT {', '.join(reached)}"
            f" FROM ({visitors_events(rows, [f'm{i}' for i in used])})))))"
            " ORDER BY fi, step")


def planned(f: Filter, definitions: Definitions, params: Params) -> list[Planned]:
    """``goals`` (where there are goals) and ``funnels`` (where there are funnels whose steps are all goals) of
    filter ``f``; ``params``: the filter's values (``Params.of``), the goals' and funnels' added."""
    goals, funnels = definitions.goals, definitions.counted_funnels()
    if not goals:
        return []
    values = {**{f"g{i}": g.bound() for i, g in enumerate(goals)},
              **{f"gn{i}": g.name for i, g in enumerate(goals)}, **{f"fn{j}": u.name for j, u in enumerate(funnels)}}
    bound = Params(pg={**params.pg, **values}, ch={**params.ch, **values})
    out = [Planned(GOALS, *_goals(f, goals), bound)]
    if funnels:
        out.append(Planned(FUNNELS, *_funnels(f, goals, funnels), bound))
    return out


def run_both(settings: Settings, f: Filter, definitions: Definitions) -> list[QueryResult]:
    """The goals and funnels of ``f`` on both stores, timed (``footprint stats``, the stores panel)."""
    params = Params.of(f, session_timeout_minutes=settings.session_timeout_minutes)
    chosen = planned(f, definitions, params)
    return run_plan(settings, chosen) if chosen else []


def run_clickhouse(settings: Settings, f: Filter, definitions: Definitions) -> dict[str, Rows]:
    """The goals and funnels of ``f`` on ClickHouse (the dashboard's panels)."""
    params = Params.of(f, session_timeout_minutes=settings.session_timeout_minutes)
    chosen = planned(f, definitions, params)
    return run_plan_clickhouse(settings, chosen) if chosen else {}
