#!/usr/bin/env python3
"""Benchmark: ClickHouse's visits (the dashboard's visits, entry and exit pages) by sorted arrays per visitor
(``footprint.stats.visits_of_visitors``, what the statistics run) beside the window functions they replaced
(``numbered_visits``' ClickHouse side, which the goals' funnels still use), same data, same run, and whether the
two answer the same.

Generated events (the benchmarks' usual traffic over 30 days) are written straight into ClickHouse with the
consumer's sink up to each size; then for five filters (page events, under a link prefix, track events, every
type, an audience) each query of both formulations runs once to warm and REPEAT times, median printed.

  python benchmarks/visits_sql.py [--sizes 2000000,10000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _services import local_stores, machine
from helpers import gen_events

CHUNK = 200_000
NAMES = ("visits", "entry_pages", "exit_pages")


def window_visits(f: Any) -> str:
    """The visits of filter ``f`` as ClickHouse computed them before (``lagInFrame`` / ``leadInFrame``, then a
    running sum numbering them, then one GROUP BY per visit): the reference."""
    from footprint import stats

    rows = stats.visit_rows(f)[1]  # the same events as the arrays'
    chosen = " AND ".join(["starts", *stats._link(f)[1], *stats._audience(f)[1]])
    return ("(SELECT min(us) AS start_us, max(us) - min(us) AS duration_us, count() AS pages,"
            " anyIf(link, starts) AS entry_link, anyIf(link, ends) AS exit_link"
            f" FROM {stats.numbered_visits('', rows)[1]} GROUP BY visitor_id, visit"
            f" HAVING min(us) >= {{since_us:Int64}} AND min(us) < {{until_us:Int64}} AND max({chosen}))")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="2000000")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from footprint import stats
    from footprint.contract import encode_event
    from footprint.sinks import ClickHouseSink
    from footprint.stats import Filter, Params

    print(machine())
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start, since, until = today - timedelta(days=29), (today - timedelta(days=29)).date(), (today + timedelta(days=1)).date()
    filters = {"page": Filter(since=since, until=until), "/blog": Filter(since=since, until=until, link="/blog"),
               "track": Filter(since=since, until=until, type="track"),
               "every type": Filter(since=since, until=until, type=""),
               "mobile": Filter(since=since, until=until, device="mobile")}
    with local_stores(Path(tempfile.mkdtemp(prefix="fp-bench-"))) as (settings, _ch):
        client, loaded = stats.ch_client(settings, "reader"), 0
        for size in (int(x) for x in args.sizes.split(",")):
            sink, t0 = ClickHouseSink(settings), time.perf_counter()
            for offset in range(loaded, size, CHUNK):
                events = gen_events(min(CHUNK, size - offset), seed=offset + 7, start=start, days=30)
                sink.write({e["event_id"]: encode_event(e) for e in events})
            sink.close()
            print(f"\n## {size:,} events (written to ClickHouse in {time.perf_counter() - t0:.0f} s)")
            print(f"{'filter':<12}{'query':<14}{'window functions ms':>21}{'arrays ms':>11}{'ratio':>8}  answers")
            loaded = size
            for label, f in filters.items():
                params, arrays, window = Params.of(f).ch, stats._visits(f)[1], window_visits(f)
                for name in NAMES:
                    new = stats.QUERIES[name](f)[1]
                    figures = {}
                    for tag, sql in (("window", new.replace(arrays, window)), ("arrays", new)):
                        client.query(sql, parameters=params)  # warm
                        runs = []
                        for _ in range(args.repeat):
                            t = time.perf_counter()
                            rows = client.query(sql, parameters=params).result_rows
                            runs.append((time.perf_counter() - t) * 1000)
                        figures[tag] = (statistics.median(runs), stats.normalize(rows))
                    (old_ms, old_rows), (new_ms, new_rows) = figures["window"], figures["arrays"]
                    print(f"{label:<12}{name:<14}{old_ms:>21.1f}{new_ms:>11.1f}{old_ms / new_ms:>7.2f}x  "
                          + ("same" if old_rows == new_rows else "DIFFERENT"), flush=True)
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
