#!/usr/bin/env python3
"""Where the time of the dashboard's visits goes on ClickHouse once ``footprint close-visits`` has run: each part
of one statistic's query timed alone (median of --repeat, after one warm run), at one size.

Generated events (``read_queries.load``: 30 days up to now) into throwaway stores, ``footprint close-visits``, then
for the visits and the entry pages of 30 days of page events:

  client     a new reader client (``run_clickhouse`` makes one per call; the dashboard one per page)
  round trip ``SELECT 1`` on a client kept open
  bind       ``closedvisits.bind``: which days' stored visits stand (two queries)
  query      the statistic's own query, its values bound, on a client kept open
  stored     its stored part alone: the rows of ``visits_closed`` it reads (count), and their sum
  raw        the query with no stored day: its raw part alone, from the first day not stored

and the raw part's values (where its events start; which visitors' events it reads) and ClickHouse's estimate of
the rows the query reads.

  python benchmarks/visits_parts.py [--size 1000000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _services import machine, services
from read_queries import load
from read_queries import timed as median_ms


def timed(fn: Callable[[], Any], repeat: int) -> float:
    """``read_queries.timed`` after one warm run."""
    fn()
    return median_ms(fn, repeat)


def measure(settings: Any, f: Any, name: str, repeat: int) -> tuple[list[float], str]:
    """The parts' times of statistic ``name`` of filter ``f`` (see the module), and a line on what it read."""
    from footprint.closedvisits import stored_visits
    from footprint.stats import Params, bound, plan
    from footprint.stores import ch_client

    planned = plan(f, (name,), Params.of(f))[0]
    client = ch_client(settings, "reader")
    try:
        values = bound(client, planned, {})
        stored_sql = f"SELECT count(), sum(visits) FROM ({stored_visits(f.type, ['link'])})"
        no_stored = {**values, "closed_days": [], "closed_micros": []}
        parts = [timed(lambda: ch_client(settings, "reader").close(), repeat),
                 timed(lambda: client.query("SELECT 1"), repeat),
                 timed(lambda: bound(client, planned, {}), repeat),
                 timed(lambda: client.query(planned.ch_sql, parameters=values), repeat),
                 timed(lambda: client.query(stored_sql, parameters=values), repeat),
                 timed(lambda: client.query(planned.ch_sql, parameters=no_stored), repeat)]
        rows = client.query(stored_sql, parameters=values).result_rows[0][0]
        estimate = client.query("EXPLAIN ESTIMATE " + planned.ch_sql, parameters=values).result_rows
    finally:
        client.close()
    raw = {k: str(v) for k, v in values.items() if k.startswith("raw_")}
    return parts, (f"{name}: {rows:,} stored rows read; the raw part {raw}; estimate (table, parts, rows, marks)"
                   f" {[tuple(r[1:]) for r in estimate]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    from footprint.stats import Filter
    from footprint.visitcloser import close_visits

    print(machine())
    now = datetime.now(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    with services() as s:
        print(f"{args.size:,} events written in {load(s, now - timedelta(days=30), 30, 0, args.size):.0f} s")
        print(close_visits(s, under_way=timedelta(0)).line())
        f = Filter(since=(today - timedelta(days=29)).date(), until=(today + timedelta(days=1)).date())
        print(f"\n{'statistic':<13}{'client':>8}{'round trip':>12}{'bind':>7}{'query':>8}{'stored':>8}{'raw':>7}  ms")
        notes = []
        for name in ("visits", "entry_pages"):
            parts, note = measure(s, f, name, args.repeat)
            print(f"{name:<13}" + "".join(f"{ms:>{w}.1f}" for ms, w in zip(parts, (8, 12, 7, 8, 8, 7), strict=True)))
            notes.append(note)
        print("\n".join(notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
