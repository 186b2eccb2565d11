#!/usr/bin/env python3
"""Benchmark: ClickHouse's queries that order each visitor's events (the dashboard's visits, entry and exit
pages, and the funnels) and the goals as this tree builds them beside a reference revision's, same data, same
run, and whether the two answer the same.

The reference's SQL comes from its own ``footprint.stats`` and ``footprint.goalstats`` (``git archive`` of its
``app/src``, imported in a child process); by default ``4ca2b0b``, the last revision whose ClickHouse queries
numbered visits with window functions (``lagInFrame`` / ``leadInFrame``) and joined the events once per funnel
step. Generated events (the benchmarks' usual traffic over 30 days) are written straight into ClickHouse with
the consumer's sink up to each size; then each query of both runs once to warm and REPEAT times, median printed.

  python benchmarks/visits_sql.py [--sizes 2000000,10000000] [--repeat 3] [--reference REV] [--only funnels]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _generated import chunks
from _services import REPO, local_stores, machine

VISITS = ("visits", "entry_pages", "exit_pages")
# the filters: label -> Filter's fields besides the 30 days
FILTERS: dict[str, dict[str, str]] = {"page": {}, "/blog": {"link": "/blog"}, "track": {"type": "track"},
                                      "every type": {"type": ""}, "mobile": {"device": "mobile"}}
# a child process prints each query's ClickHouse SQL as the reference builds it (its own modules on sys.path)
BUILD = """
import json, sys
from datetime import date
from footprint import goalstats, stats
from footprint.goals import Definitions, Funnel, Goal
asked = json.loads(sys.argv[1])
since, until = date.fromisoformat(asked["since"]), date.fromisoformat(asked["until"])
out = {}
for label, fields in asked["filters"].items():
    f = stats.Filter(since=since, until=until, **fields)
    out.update({f"{label}|{name}": stats.QUERIES[name](f)[1] for name in asked["visits"]})
goals = tuple(Goal(**g) for g in asked["goals"])
funnels = tuple(Funnel(**u) for u in asked["funnels"])
out["page|funnels"] = goalstats._funnels(stats.Filter(since=since, until=until), goals, funnels)[1]
out["page|goals"] = goalstats._goals(stats.Filter(since=since, until=until), goals)[1]
print(json.dumps(out))
"""


def definitions() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The goals and funnels of read_queries.py: a funnel within a visit and one within a day."""
    return ([{"name": "Pricing", "page": "/pricing*"}, {"name": "Signed up", "event": "Signed Up"},
             {"name": "Blog", "page": "/blog*"}],
            [{"name": "Trial", "steps": ["Pricing", "Signed up"]},
             {"name": "Reading", "steps": ["Blog", "Pricing", "Signed up"], "within": "day"}])


def sql_of(src: Path | None, since: date, until: date) -> dict[str, str]:
    """label|name -> ClickHouse's SQL, built by the app's sources under ``src`` (None: this tree's)."""
    goals, funnels = definitions()
    asked = {"since": since.isoformat(), "until": until.isoformat(), "filters": FILTERS, "visits": VISITS,
             "goals": goals, "funnels": funnels}
    env = {**os.environ, "PYTHONPATH": str(src or REPO / "app" / "src")}
    out = subprocess.run([sys.executable, "-c", BUILD, json.dumps(asked)], env=env, check=True, capture_output=True,
                         text=True)
    return dict(json.loads(out.stdout))


def sources_of(rev: str, into: Path) -> Path:
    """The app's sources at revision ``rev`` (git archive), unpacked under ``into``."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", rev, "app/src"], check=True,
                             capture_output=True).stdout
    tar = into / "ref.tar"
    tar.write_bytes(archive)
    with tarfile.open(tar) as t:
        t.extractall(into, filter="data")
    return into / "app" / "src"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="2000000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--reference", default="4ca2b0b")
    ap.add_argument("--only", default="", help="the queries named (visits,entry_pages,exit_pages,funnels,goals; all)")
    args = ap.parse_args()
    from footprint import goalstats, stats
    from footprint.goals import Definitions, Funnel, Goal
    from footprint.sinks import ClickHouseSink

    print(machine())
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start, since, until = today - timedelta(days=29), (today - timedelta(days=29)).date(), (today + timedelta(days=1)).date()
    base = Path(tempfile.mkdtemp(prefix="fp-bench-"))
    ours, theirs = sql_of(None, since, until), sql_of(sources_of(args.reference, base), since, until)
    goals, funnels = definitions()
    defined = Definitions.merged((tuple(Goal(**g) for g in goals), tuple(Funnel(**u) for u in funnels)), ((), ()))
    params = {label: stats.Params.of(stats.Filter(since=since, until=until, **fields)).ch  # type: ignore[arg-type]
              for label, fields in FILTERS.items()}
    f = stats.Filter(since=since, until=until)
    params["page"] = goalstats.planned(f, defined, stats.Params.of(f))[-1].params.ch  # the goals' values too
    with contextlib.ExitStack() as cleanup, local_stores(base) as (settings, _ch):
        cleanup.callback(shutil.rmtree, base, ignore_errors=True)  # the reference's sources too
        client, loaded = stats.ch_client(settings, "reader"), 0
        for size in (int(x) for x in args.sizes.split(",")):
            sink, t0 = ClickHouseSink(settings), time.perf_counter()
            for _, docs in chunks(start, 30, loaded, size):
                sink.write(docs)
            sink.close()
            loaded = size
            print(f"\n## {size:,} events (written to ClickHouse in {time.perf_counter() - t0:.0f} s)")
            print(f"{'filter':<12}{'query':<14}{args.reference + ' ms':>16}{'this tree ms':>14}{'ratio':>8}  answers")
            for key, sql in ours.items():
                label, name = key.split("|")
                if args.only and name not in args.only.split(","):
                    continue
                figures = []
                for text in (theirs[key], sql):
                    client.query(text, parameters=params[label])  # warm
                    runs = []
                    for _ in range(args.repeat):
                        t = time.perf_counter()
                        rows = client.query(text, parameters=params[label]).result_rows
                        runs.append((time.perf_counter() - t) * 1000)
                    figures.append((statistics.median(runs), stats.normalize(rows)))
                (old_ms, old_rows), (new_ms, new_rows) = figures
                print(f"{label:<12}{name:<14}{old_ms:>16.1f}{new_ms:>14.1f}{old_ms / new_ms:>7.2f}x  "
                      + ("same" if old_rows == new_rows else "DIFFERENT"), flush=True)
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
