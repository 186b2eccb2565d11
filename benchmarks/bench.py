#!/usr/bin/env python3
"""`make bench`: the benchmarks that carry a target, at sizes that fit in about 13 minutes here, and one table.

Runs, one after the other (each starts its own throwaway services on this machine):
  consumer   consumer_throughput.py  events/s stored in both stores (target >= 50,000), and the reference's
  collector  collector_wrk.py        POST /v1/events under wrk (>= 50,000 events/s, p99 <= 50 ms) and the
                                     reference's; the page middleware's added p99 (<= 1 ms) saturated and paced
                                     at 50 % and 80 % of the plain app's capacity (median of 3 rounds), beside
                                     the old middleware's
  middleware collector_overhead.py   where the middleware's time goes, per part; its added p99 in-process
  dashboard  read_queries.py         each dashboard query on ClickHouse (<= 100 ms; the target is set at 10M
                                     events, --read-size 10000000 loads that many: about 15 min more)
Each prints its own figures as it goes (streamed here, and kept in --log); then one table: each figure,
its target, met or MISSED, the reference revision's figure measured in the same run and the ratio, and
the machine's load before and after each run. History and analysis: benchmarks/RESULTS.md.

  python benchmarks/bench.py [--reference REV] [--only consumer,dashboard] [--read-size 2000000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _figures import ENV
from _services import REPO, machine

HERE = Path(__file__).resolve().parent
Args = argparse.Namespace
RUNS: dict[str, tuple[str, Callable[[Args], list[str]]]] = {
    "consumer": ("consumer_throughput.py", lambda a: ["--events", str(a.consumer_events), "--baseline-events", "500"]
                 + (["--reference", a.reference] if a.reference else [])),
    "collector": ("collector_wrk.py", lambda a: ["--duration", str(a.duration), "--repeat", "3"]
                  + (["--reference", a.reference] if a.reference else [])),
    "middleware": ("collector_overhead.py", lambda a: ["--requests", "20000"]),
    "dashboard": ("read_queries.py", lambda a: ["--sizes", str(a.read_size), "--repeat", "2"]),
}


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def run(name: str, argv: list[str], log: Path) -> tuple[int, float, str, str]:
    """One benchmark, its output streamed (indented) and appended to the log: exit code, seconds, load
    average before and after."""
    before, t0 = load(), time.monotonic()
    print(f"\n== {name}: {' '.join(argv[1:])} (load {before})", flush=True)
    with log.open("a", encoding="utf-8") as out:
        out.write(f"\n== {name}: {' '.join(argv)}\n")
        proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            print("   " + line, end="", flush=True)
        code = proc.wait()
    return code, time.monotonic() - t0, before, load()


def verdict(fig: dict[str, object]) -> str:
    target, value = fig["target"], float(fig["value"])  # type: ignore[arg-type]
    if target is None:
        return ""
    met = value >= float(target) if fig["better"] == "higher" else value <= float(target)  # type: ignore[arg-type]
    return "met" if met else "MISSED"


def number(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.2f}"


def table(figures: list[dict[str, object]], reference: str | None) -> list[str]:
    ref = f"at {reference}" if reference else "reference"
    rows = [("figure", "value", "target", "", ref, "ratio")]
    for fig in figures:
        value, unit = float(fig["value"]), str(fig["unit"])  # type: ignore[arg-type]
        target = fig["target"]
        sign = ">=" if fig["better"] == "higher" else "<="
        refv = fig["reference"]
        rows.append((str(fig["figure"]) + (f" ({fig['note']})" if fig["note"] else ""), f"{number(value)} {unit}",
                     f"{sign} {number(float(target))}" if target is not None else "",  # type: ignore[arg-type]
                     verdict(fig), number(float(refv)) if refv is not None else "",  # type: ignore[arg-type]
                     f"{value / float(refv):.2f}x" if refv else ""))  # type: ignore[arg-type]
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    return ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
            for r in rows]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", default=None, metavar="REV",
                    help="also measure this git revision's consumer and collector in the same runs (ratios)")
    ap.add_argument("--only", default=",".join(RUNS), help=f"comma-separated, of: {', '.join(RUNS)}")
    ap.add_argument("--consumer-events", type=int, default=200_000)
    ap.add_argument("--read-size", type=int, default=2_000_000, help="events in the stores for the dashboard queries")
    ap.add_argument("--duration", type=int, default=10, help="seconds per load-generator run")
    ap.add_argument("--log", default=None, help="keep every benchmark's whole output here (default: a temporary file)")
    args = ap.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        ap.error(f"unknown benchmark(s) {', '.join(unknown)}: choose from {', '.join(RUNS)}")
    if "collector" in names and not shutil.which("wrk"):
        print("bench: the collector benchmark needs wrk: apt-get install wrk (or leave it out: --only ...)",
              file=sys.stderr)
        return 2
    log = Path(args.log) if args.log else Path(tempfile.mkstemp(prefix="footprint-bench-", suffix=".log")[1])
    print(machine(), flush=True)
    figures_file = Path(tempfile.mkstemp(prefix="footprint-bench-", suffix=".jsonl")[1])
    os.environ[ENV] = str(figures_file)
    summary, failed, t0 = [], [], time.monotonic()
    for name in names:
        script, argv = RUNS[name]
        code, secs, before, after = run(name, [sys.executable, str(HERE / script), *argv(args)], log)
        summary.append(f"{name:<11}{secs:>7.0f} s   load {before} -> {after}" + ("" if code == 0 else f"   FAILED ({code})"))
        if code != 0:
            failed.append(name)
    figures = [json.loads(line) for line in figures_file.read_text(encoding="utf-8").splitlines()]
    figures_file.unlink()
    print(f"\n# make bench: {len(names)} benchmarks in {time.monotonic() - t0:.0f} s (whole output: {log})")
    print("\n".join(summary) + "\n")
    print("\n".join(table(figures, args.reference)))
    missed = [f["figure"] for f in figures if verdict(f) == "MISSED"]
    targets = sum(1 for f in figures if f["target"] is not None)
    print(f"\n{targets - len(missed)} of {targets} targets met" + ("" if not missed else
          f"; {len(missed)} MISSED (above; history: benchmarks/RESULTS.md)"))
    if missed:
        print("what this run measured that limits each missed figure:\n" + "\n".join(
            f"  {f['figure']}: {f.get('limit') or 'NOTHING MEASURED (a benchmark without its limit: a defect)'}"
            for f in figures if verdict(f) == "MISSED"))
    if failed:
        print(f"bench: {', '.join(failed)} failed (see {log})", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
