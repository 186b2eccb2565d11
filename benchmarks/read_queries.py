#!/usr/bin/env python3
"""Benchmark (read side): every dashboard query on both stores, and the read API's queries, at each size.

Generated events (benchmarks' usual traffic: 85 % page events over the --days days up to now) are written straight
into both stores with the consumer's own sinks (PostgreSQL COPY, ClickHouse JSONEachRow) up to each
size. Then, REPEAT times each, median printed:

- the charts the page draws from an estimate (``footprint.stats.APPROXIMATE``: the visitors per day from daily
  HyperLogLog sketches) beside ClickHouse's exact answer: both times and the relative error per row;
- the charts the page asks for fewer columns than their statistic has (``footprint.stats.DRAWN``: the top links'
  and the countries' views without their visitor counts) beside the whole statistic: both times, and whether the
  page's rows are the statistic's rows with those columns;
- the visits, entry and exit pages on ClickHouse before and after ``footprint close-visits`` stored the visits of
  the days that ended, and that run's time and the stored visits' size on disk;
- every ``footprint.stats`` query (the dashboard's charts and stores panel) on PostgreSQL and
  ClickHouse, for three filters the dashboard offers: 30 days of page events, the same under a link
  prefix, and 30 days of track events (ClickHouse reads its rollup for page events, ``events FINAL``
  otherwise);
- the goals and funnels (``footprint.goalstats``: three goals, two funnels, within a visit and a day) on both
  stores, 30 days, and charts under the goal filter (only the visitors who reached a goal: ClickHouse builds the
  rollup's rows from the raw events, so a goal-filtered chart reads ``events``);
- the read API's ClickHouse queries as ``GET /v1/events`` builds them (newest 100, by userId, by a
  property, the second page by cursor) and a ``POST /v1/queries`` example, on ClickHouse (the API
  reads ClickHouse only).

  python benchmarks/read_queries.py [--sizes 1000000,10000000] [--repeat 5] [--days 30] [--only visits]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cpu import cpu_shares
from _figures import record
from _generated import chunks
from _services import admin_query, machine, services


def load(settings: Any, start: datetime, days: int, frm: int, to: int) -> float:
    """Events [frm, to) of the generated stream into both stores; seconds taken."""
    from footprint.sinks import ClickHouseSink, PostgresSink

    pg, ch = PostgresSink(settings.pg_dsn.get_secret_value()), ClickHouseSink(settings)
    t0 = time.perf_counter()
    for _, docs in chunks(start, days, frm, to):
        pg.write(docs)
        ch.write(docs)
    pg.close()
    ch.close()
    import psycopg

    with psycopg.connect(settings.pg_owner_dsn.get_secret_value(), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE events")  # planner statistics and the visibility map, as autovacuum would
    return time.perf_counter() - t0


def reads(ch_sql: str) -> str:
    """What a ClickHouse query of the dashboard reads, from its SQL: the part of its work that grows with
    the events (named under make bench's table when its figure misses the target)."""
    raw = "FROM events" in ch_sql
    parts = ["the raw events of the window (no rollup serves this filter or figure)" if raw else
             "a rollup (rows per hour or day and value, not per event)"]
    if "ROW_NUMBER" in ch_sql.upper() or "lagInFrame" in ch_sql or "OVER (" in ch_sql.upper():
        parts.append("window functions ordering each visitor's events")
    if "visits_closed" in ch_sql:
        parts.append("the stored visits of the days footprint close-visits closed, counted per entry, exit and"
                     " audience; the raw events of the days after them (today's: not closed yet)")
    if "arraySplit" in ch_sql:
        parts.append("each visitor's events of those days gathered and sorted into visits")
    if "uniqExact" in ch_sql:
        parts.append("exact sets of distinct visitors (they grow with the visitors)")
    return "reads " + "; ".join(parts)


def profile(settings: Any, planned: Any) -> str:
    """A missed query's profile: it runs on ClickHouse alone, again and again for at least 2 s, while /proc is
    sampled (``_cpu``); the stand-in's CPU per run beside the wall time, and how busy the machine was, say whether
    the cores limit it (they do when the query keeps them nearly all busy) and how much less CPU 100 ms would take."""
    from footprint.stats import run_plan_clickhouse

    cores, runs, t0 = os.cpu_count() or 1, 0, time.perf_counter()
    with cpu_shares() as shares:
        while runs == 0 or time.perf_counter() - t0 < 2.0:
            run_plan_clickhouse(settings, [planned])
            runs += 1
    wall = (time.perf_counter() - t0) / runs
    cpu = shares.seconds()
    ch, machine_busy = cpu["ClickHouse stand-in"] / runs, sum(cpu.values()) / runs / (wall * cores)
    bound = (f"the cores limit it: 100 ms needs {wall / 0.1:.1f}x less CPU per query (or as many times the cores,"
             " if it spread over them)" if machine_busy >= 0.8 else
             "the cores do not limit it: it waits (disk, locks, the network)")
    return (f"profile ({runs} run{'s' if runs > 1 else ''}): {1000 * wall:,.0f} ms a query; ClickHouse's process"
            f" {1000 * ch:,.0f} CPU-ms ({ch / wall:.1f} of {cores} cores), the machine {machine_busy:.0%} busy: {bound}")


def limit(settings: Any, planned: Any, ms: float, what: str) -> str:
    """What limits a dashboard query that misses its 100 ms: ``what`` it reads, and its profile."""
    return f"{what}; {profile(settings, planned)}" if ms > 100 else what


def planned_stat(settings: Any, f: Any, name: str, page: bool = False) -> Any:
    """Statistic ``name`` of filter ``f`` as the stores panel runs it (``stats.plan``; ``page``: as the page asks)."""
    from footprint.stats import Params, plan

    return plan(f, (name,), Params.of(f, session_timeout_minutes=settings.session_timeout_minutes), page)[0]


def timed(fn: Callable[[], Any], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t0) * 1000)
    return statistics.median(runs)


def dashboard(settings: Any, today: datetime, repeat: int, size: int) -> None:
    from footprint.stats import Filter, run_stats

    since = (today - timedelta(days=29)).date()
    until = (today + timedelta(days=1)).date()
    filters = {
        "page, 30 days": Filter(since=since, until=until),
        "page, 30 days, link /blog": Filter(since=since, until=until, link="/blog"),
        "track, 30 days": Filter(since=since, until=until, type="track"),
    }
    for label, f in filters.items():
        run_stats(settings, since, until, f=f)  # warm
        runs = [run_stats(settings, since, until, f=f) for _ in range(repeat)]
        print(f"\n### dashboard queries: {label}")
        print(f"{'query':<26}{'postgres ms':>14}{'clickhouse ms':>16}{'answers':>10}")
        for i, r in enumerate(runs[0]):
            pg = statistics.median(run[i].pg_ms for run in runs)
            ch = statistics.median(run[i].ch_ms for run in runs)
            same = all(run[i].same for run in runs)
            print(f"{r.name:<26}{pg:>14.1f}{ch:>16.1f}{'same' if same else 'DIFFERENT':>10}")
            if label == "page, 30 days":  # the dashboard's view; the target is set at 10M events
                record(f"dashboard {r.name}, ClickHouse ({size:,} events)", ch, "ms", target=100, better="lower",
                       note="" if same else "the stores' answers DIFFER",
                       limit=limit(settings, (p := planned_stat(settings, f, r.name)), ch, reads(p.ch_sql)))
        if label == "page, 30 days":
            estimates(settings, f, {r.name: r.ch_rows for r in runs[0]}, repeat, size)
            drawn(settings, f, {r.name: r.ch_rows for r in runs[0]}, repeat, size)


def estimates(settings: Any, f: Any, exact: dict[str, list[Any]], repeat: int, size: int) -> None:
    """The charts the page draws from an estimate (``stats.APPROXIMATE``) beside ClickHouse's exact answer: the time
    of each and how far apart they are (relative error per row: the largest and the mean)."""
    from footprint.stats import APPROXIMATE, approximated, run_clickhouse

    print(f"\n### the page's estimates beside the exact answers (ClickHouse)\n{'query':<26}{'exact ms':>10}"
          f"{'estimate ms':>13}{'rows':>6}{'max error':>11}{'mean error':>12}  bound")
    bounds = approximated(f, tuple(APPROXIMATE))
    for name, bound in bounds.items():
        ms = timed(partial(run_clickhouse, settings, f, (name,), page=True), repeat)
        exact_ms = timed(partial(run_clickhouse, settings, f, (name,)), repeat)
        rows = run_clickhouse(settings, f, (name,), page=True)[name]
        truth = {row[0]: row[-1] for row in exact[name]}
        errors = [abs(row[-1] - truth[row[0]]) / truth[row[0]] for row in rows if truth.get(row[0])]
        worst, mean = (max(errors), sum(errors) / len(errors)) if errors else (0.0, 0.0)
        same_keys = {row[0] for row in rows} == set(truth)
        print(f"{name:<26}{exact_ms:>10.1f}{ms:>13.1f}{len(rows):>6}{worst:>10.2%}{mean:>11.2%}   {bound}"
              f"{'' if same_keys else '  (the rows differ)'}")
        record(f"dashboard {name}, the page's estimate ({bound}), ClickHouse ({size:,} events)", ms, "ms",
               target=100, better="lower", note=f"largest error {worst:.2%}, mean {mean:.2%}",
               limit=limit(settings, planned_stat(settings, f, name, page=True), ms, "reads daily sketches"))


def drawn(settings: Any, f: Any, whole: dict[str, list[Any]], repeat: int, size: int) -> None:
    """The charts whose page query has only the columns drawn (``stats.DRAWN``) beside the whole statistic on
    ClickHouse: both times, and whether the page's rows are the whole rows' first columns (they must be: exact)."""
    from footprint.stats import DRAWN, run_clickhouse

    print(f"\n### the page's charts with only the columns they draw, beside the whole statistic (ClickHouse)\n"
          f"{'query':<26}{'whole ms':>10}{'page ms':>10}{'rows':>6}  the page's rows")
    for name in DRAWN:
        ms = timed(partial(run_clickhouse, settings, f, (name,), page=True), repeat)
        whole_ms = timed(partial(run_clickhouse, settings, f, (name,)), repeat)
        rows = run_clickhouse(settings, f, (name,), page=True)[name]
        same = rows == [r[:len(rows[0])] for r in whole[name]] if rows else not whole[name]
        print(f"{name:<26}{whole_ms:>10.1f}{ms:>10.1f}{len(rows):>6}  {'the same' if same else 'DIFFERENT'}")
        page = planned_stat(settings, f, name, page=True)
        record(f"dashboard {name}, the page's chart (its drawn columns, exact), ClickHouse ({size:,} events)", ms,
               "ms", target=100, better="lower", note="" if same else "the page's rows DIFFER from the statistic's",
               limit=limit(settings, page, ms, reads(page.ch_sql)))


VISIT_STATS = ("visits", "entry_pages", "exit_pages")


def closed_visits(settings: Any, today: datetime, repeat: int, size: int) -> None:
    """``footprint close-visits`` (``footprint.visitcloser``) on the loaded events: the visits, entry and exit pages
    of 30 days of page events on ClickHouse before it (every day made of the raw events: a size loaded after a
    smaller one's run changed every day) and after it (the closed days' stored visits, today's made of the raw
    events), both times and whether the answers are the same; the run's time (making the days, then verifying
    them) and the stored visits' size on disk beside the raw events'. The dashboard's queries that follow read
    the stored visits, compared with PostgreSQL there."""
    from footprint.stats import Filter, run_clickhouse, run_stats
    from footprint.visitcloser import close_visits

    f = Filter(since=(today - timedelta(days=29)).date(), until=(today + timedelta(days=1)).date())
    raw = run_clickhouse(settings, f, VISIT_STATS)
    raw_ms = {name: timed(partial(run_clickhouse, settings, f, (name,)), repeat) for name in VISIT_STATS}
    runs = []
    for _ in range(2):  # the first run makes the days, the second verifies them
        t0 = time.perf_counter()
        report = close_visits(settings, under_way=timedelta(0))  # the load has returned: no insert is under way
        runs.append((time.perf_counter() - t0, report))
    stored = run_clickhouse(settings, f, VISIT_STATS)
    stored_ms = {name: timed(partial(run_clickhouse, settings, f, (name,)), repeat) for name in VISIT_STATS}
    compared = {r.name: r for r in run_stats(settings, f.since, f.until, f=f, names=VISIT_STATS)}  # PostgreSQL too
    parts = admin_query("SELECT table, sum(bytes_on_disk) FROM system.parts WHERE active"
                        f" AND database = '{settings.ch_database}'"
                        " AND table IN ('events', 'visits_closed', 'visits_days') GROUP BY table")
    disk = {table: int(n) for table, n in (line.split("\t") for line in parts.splitlines() if line)}
    print(f"\n### closed visits (footprint close-visits), page events, 30 days, ClickHouse\n{'query':<26}"
          f"{'raw ms':>10}{'stored ms':>11}  answers (raw, stored; PostgreSQL's)")
    for name in VISIT_STATS:
        same = raw[name] == stored[name] == compared[name].pg_rows == compared[name].ch_rows
        print(f"{name:<26}{raw_ms[name]:>10.1f}{stored_ms[name]:>11.1f}  {'the same' if same else 'DIFFERENT'}"
              f" (PostgreSQL {compared[name].pg_ms:,.0f} ms)")
        record(f"dashboard {name} from the raw events alone, ClickHouse ({size:,} events)", raw_ms[name], "ms",
               note="before footprint close-visits: every day made of the raw events")
    for (secs, report), what in zip(runs, ("makes the days", "verifies them"), strict=True):
        print(f"close-visits {what}: {secs:.1f} s, {report.line()}")
        record(f"footprint close-visits, a run that {what} ({size:,} events)", secs, "s",
               note=report.line())
    stored_bytes = disk.get("visits_closed", 0) + disk.get("visits_days", 0)
    print(f"on disk: the stored visits {stored_bytes / 2**20:.1f} MiB, the raw events "
          f"{disk.get('events', 0) / 2**20:.1f} MiB ({stored_bytes / max(disk.get('events', 1), 1):.1%})")


def goals(settings: Any, today: datetime, repeat: int, size: int) -> None:
    """The goals and funnels and three charts under the goal filter, 30 days, on both stores."""
    from footprint import goalstats
    from footprint.goals import Definitions, Funnel, Goal
    from footprint.stats import Filter, Params, run_stats

    since, until = (today - timedelta(days=29)).date(), (today + timedelta(days=1)).date()
    signed = Goal(name="Signed up", event="Signed Up")
    defined = Definitions.merged(((Goal(name="Pricing", page="/pricing*"), signed, Goal(name="Blog", page="/blog*")),
                                  (Funnel(name="Trial", steps=("Pricing", "Signed up")),
                                   Funnel(name="Reading", steps=("Blog", "Pricing", "Signed up"), within="day"))),
                                 ((), ()))
    f = Filter(since=since, until=until)
    by_goal = Filter(since=since, until=until, goal=signed.name, goal_definition=signed)
    cases: dict[str, Callable[[], list[Any]]] = {
        "goals, funnels": lambda: goalstats.run_both(settings, f, defined),
        "goal filter (Signed up)": lambda: run_stats(settings, since, until, f=by_goal,
                                                     names=("views_per_day", "top_links", "visits")),
    }
    params = Params.of(f, session_timeout_minutes=settings.session_timeout_minutes)
    planned = {p.name: p for p in goalstats.planned(f, defined, params)}
    print(f"\n### goals and funnels, 30 days\n{'query':<44}{'postgres ms':>14}{'clickhouse ms':>16}{'answers':>10}")
    for label, fn in cases.items():
        fn()  # warm
        runs = [fn() for _ in range(repeat)]
        for i, r in enumerate(runs[0]):
            pg = statistics.median(run[i].pg_ms for run in runs)
            ch = statistics.median(run[i].ch_ms for run in runs)
            same = all(run[i].same for run in runs)
            name = r.name if label.startswith("goals") else f"{r.name}, {label}"
            print(f"{name:<44}{pg:>14.1f}{ch:>16.1f}{'same' if same else 'DIFFERENT':>10}")
            record(f"dashboard {name}, ClickHouse ({size:,} events)", ch, "ms", target=100, better="lower",
                   note="" if same else "the stores' answers DIFFER",
                   limit=limit(settings, planned[r.name] if label.startswith("goals") else
                               planned_stat(settings, by_goal, r.name), ch,
                               "reads the raw events of the window: a goal is any event name or page pattern, defined"
                               " at any time, so no rollup holds it; funnels and visits order each visitor's events"))


def api(settings: Any, repeat: int) -> None:
    from footprint import query, sqlapi
    from footprint.auth import Signer
    from footprint.stores import ch_client

    signer = Signer(b"benchmark", "events-cursor")
    client = ch_client(settings, "reader")
    try:
        def run(sql: str, values: dict[str, Any]) -> Any:
            return client.query(sql, parameters=values, settings=sqlapi.limits(settings)).result_rows

        def events(params: dict[str, str]) -> Callable[[], Any]:  # as the API runs it: the newest hour first
            q = query.parse(params, list(params), signer)
            return lambda: query.page_rows(q, datetime.now(UTC), run)

        first = query.parse({"limit": "100"}, ["limit"], signer)
        sql, values = query.to_sql(first)
        rows = client.query(sql, parameters=values).result_rows
        cursor = query.next_cursor(query.row_to_event(rows[99]), first, signer)
        cases = {
            "GET /v1/events (newest 100)": events({"limit": "100"}),
            "GET /v1/events?userId=": events({"userId": "user-7", "limit": "100"}),
            "GET /v1/events?type=track&properties.plan=pro": events({"type": "track", "properties.plan": "pro"}),
            "GET /v1/events (page 2, cursor)": events({"limit": "100", "cursor": cursor}),
            "POST /v1/queries (count by type)": lambda: sqlapi.run(
                client, "SELECT type, count() FROM events FINAL GROUP BY type", settings),
        }
        print(f"\n### read API (ClickHouse, reader user, the API's limits)\n{'query':<48}{'clickhouse ms':>16}")
        for label, fn in cases.items():
            fn()  # warm
            print(f"{label:<48}{timed(fn, repeat):>16.1f}")
    finally:
        client.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000000")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--days", type=int, default=30, help="the generated traffic spans this many days up to now")
    ap.add_argument("--only", choices=["all", "visits"], default="all",
                    help="visits: the closed visits' figures alone (footprint close-visits, before and after)")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    print(machine())
    now = datetime.now(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    start = now - timedelta(days=args.days)  # the traffic of the last --days days up to now (none yet to come)
    with services() as s:
        loaded = 0
        for size in sizes:
            secs = load(s, start, args.days, loaded, size)
            loaded = size
            print(f"\n## {size:,} events (written to both stores in {secs:.0f} s)")
            closed_visits(s, today, args.repeat, size)
            if args.only == "visits":
                continue
            dashboard(s, today, args.repeat, size)
            goals(s, today, args.repeat, size)
            api(s, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
