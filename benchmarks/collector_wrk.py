#!/usr/bin/env python3
"""Benchmark (6): the collector and the page middleware under a real load generator (wrk).

One collector worker (``footprint serve``, uvicorn) producing to a real local Kafka broker on the
same machine; ``wrk`` (Debian's, C, one thread) with 16 keep-alive connections:

1. ``POST /v1/events`` with batches of 100 small track events. Each answer comes after Kafka
   acknowledged the whole batch. Prints requests/s, events/s, latency percentiles and non-2xx.
2. ``GET /hello`` on a plain FastAPI app, on the same app wrapped in ``footprint.track``'s
   ``FootprintASGI`` with a ``KafkaSender`` as this tree has it, with a ``KafkaRelaySender`` (its relay
   process produces), and with the middleware of
   ``--middleware-reference`` (default: the one that built and produced the event before calling the
   app): first saturated (wrk's closed loop: it measures the CPU each takes more than latency), then
   paced, an open loop at a fixed rate (PACED_LUA) of each of ``--paced`` percent of the plain app's
   saturated req/s, ``--repeat`` rounds with the apps taking turns (the median round counts). Prints each run
   and the p99 each middleware adds at each load, and for each paced run the cores each process used and how
   long the app's event loop waited for a core (``_cpu.run_queue``).

Targets (issues 15, 33): >= 50,000 events/s through /v1/events with p99 <= 50 ms; middleware +p99 <= 1 ms.

  python benchmarks/collector_wrk.py [--duration 20] [--connections 16] [--batch 100]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cpu import cpu_seconds, cpu_shares, run_queue, settle
from _figures import record
from _services import REPO, machine, reference_tree

sys.path.insert(0, str(REPO / "app" / "tests"))

from collector_overhead import APP as SITE_APP  # the same two apps: plain, and with footprint.track
from services import free_port, private_kafka

KEY = "bench-key"
OLD_MIDDLEWARE = "240619b"
POST_LUA = '''
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
wrk.body = [[{body}]]
'''
PAGE_LUA = '''
wrk.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
wrk.headers["Referer"] = "https://news.example.com/story"
'''


PACED_LUA = '''
-- An open loop at a fixed rate: request k starts at start + k * interval (ms, the script's argument),
-- on whichever connection is free, at once when it is late; so the rate does not fall when the server
-- slows down, as a closed loop's does (latency still counts from the request's actual start).
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } fp_timespec;
int clock_gettime(int clock, fp_timespec *tp);
]]
local clock = ffi.new("fp_timespec")
local interval, due = 1, nil

local function now_ms()
  ffi.C.clock_gettime(1, clock)  -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end

function init(args)
  interval = tonumber(args[1])
end

function delay()
  local now = now_ms()
  due = (due or now) + interval
  return math.max(0, due - interval - now)
end
'''


def wait_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    import httpx

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def wrk(url: str, script: Path, duration: int, connections: int, rate: float | None = None) -> dict[str, float]:
    """wrk's figures; with ``rate`` (a script with PACED_LUA), requests start on a fixed schedule instead."""
    pace = ["--", f"{1000 / rate:.4f}"] if rate else []
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url,
                          *pace], capture_output=True, text=True, check=True).stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            raise RuntimeError(f"no {label}% latency in wrk's output:\n{out}")
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {"rps": float(rps.group(1)) if rps else 0.0, "p50": ms("50"), "p99": ms("99"),
            "non2xx": float(non2xx.group(1)) if non2xx else 0.0, "socket_errors": 1.0 if errors else 0.0}


def measure(url: str, script: Path, args: argparse.Namespace, proc: subprocess.Popen[bytes], label: str) -> dict[str, float]:
    """wrk for ``args.duration`` seconds; with ``--profile DIR``, py-spy samples the server meanwhile."""
    spy = None
    if args.profile:
        spy = subprocess.Popen(["py-spy", "record", "-p", str(proc.pid), "-d", str(args.duration), "-r", "200", "-f",
                                "raw", "--nonblocking", "-o", str(Path(args.profile) / f"{label}.txt")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return wrk(url, script, args.duration, args.connections)
    finally:
        if spy is not None:
            spy.wait(60)


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=20, help="seconds per wrk run (default 20)")
    ap.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    ap.add_argument("--batch", type=int, default=100, help="events per POST /v1/events (default 100)")
    ap.add_argument("--profile", default=None, metavar="DIR",
                    help="py-spy (on PATH) samples each server during its measured run; collapsed stacks go to DIR")
    ap.add_argument("--reference", default=None, metavar="REV",
                    help="also run POST /v1/events against the collector of this git revision, same broker")
    ap.add_argument("--reference-python", default=sys.executable, metavar="PYTHON",
                    help="the interpreter (venv) that runs the reference, e.g. one without this tree's new dependencies")
    ap.add_argument("--middleware-reference", default=OLD_MIDDLEWARE, metavar="REV",
                    help=f"the page middleware of this git revision runs beside this tree's (default {OLD_MIDDLEWARE},"
                         " the last whose middleware built the event before calling the app)")
    ap.add_argument("--paced", default="50,80", type=lambda v: [int(x) for x in v.split(",")], metavar="PCT,PCT",
                    help="also drive each site app at these shares of the plain app's saturated req/s (default 50,80)")
    ap.add_argument("--repeat", type=int, default=1, metavar="N",
                    help="paced runs: N rounds, the apps taking turns; each load's figure is its median run's (default 1)")
    ap.add_argument("--pages-only", action="store_true", help="only the page middleware's runs, not POST /v1/events")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        print("wrk is missing: apt-get install wrk (Debian's package)", file=sys.stderr)
        return 2
    print(machine())
    work = Path(tempfile.mkdtemp(prefix="fp-wrk-"))
    try:
        with private_kafka(work / "kafka", heap="512m") as kafka:  # type: ignore[attr-defined]
            from confluent_kafka.admin import AdminClient, NewTopic

            topic = f"wrk-{uuid.uuid4().hex[:8]}"
            admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
            for f in admin.create_topics([NewTopic(topic, 3, 1)]).values():
                f.result(30)
            env = dict(os.environ, FOOTPRINT_KAFKA_BOOTSTRAP=kafka.bootstrap, FOOTPRINT_KAFKA_TOPIC=topic,
                       FOOTPRINT_API_KEYS=KEY, FOOTPRINT_LOG_LEVEL="WARNING")
            pages = run_pages(work, env, args)
            api = None if args.pages_only else run_api(work, env, args)
            ref = None
            if args.reference and api is not None:
                with reference_tree(args.reference) as src:
                    ref = run_api(work, dict(env, PYTHONPATH=str(src)), args, label=f"collector-api-{args.reference}",
                                  python=args.reference_python)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.connections} connections, {args.duration} s per run, wrk -t1 (one load-generator thread)")
    report_pages(pages, args.middleware_reference)
    if api is None:
        return 0
    events = api["rps"] * args.batch
    print(f"{'':34} {'req/s':>9} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}")
    print(f"{'POST /v1/events (batch ' + str(args.batch) + ')':34} {api['rps']:9,.0f} {events:10,.0f}"
          f" {api['p50']:8.2f} {api['p99']:8.2f} {api['non2xx']:8,.0f}")
    if ref is not None:
        print(f"{'  the same at ' + args.reference:34} {ref['rps']:9,.0f} {ref['rps'] * args.batch:10,.0f}"
              f" {ref['p50']:8.2f} {ref['p99']:8.2f} {ref['non2xx']:8,.0f}")
        print(f"{'  ratio':34} {api['rps'] / ref['rps']:8.2f}x")
    ref_events = ref["rps"] * args.batch if ref is not None else None
    record(f"collector: POST /v1/events (batches of {args.batch})", events, "events/s", target=50_000,
           reference=ref_events, limit=API_LIMIT.get("collector-api", ""))
    record("collector: POST /v1/events p99", api["p99"], "ms", target=50, better="lower",
           reference=ref["p99"] if ref is not None else None, limit=API_LIMIT.get("collector-api", ""))
    print(f"\ntargets: events/s {events:,.0f} / 50,000 = {events / 50_000:.2f}x; p99 {api['p99']:.1f} ms (<= 50)")
    return 0


def report_pages(pages: dict[str, dict[str, dict[str, float]]], old: str) -> None:
    """The site apps' table, and each load's p99 added by this tree's middleware and by ``old``'s."""
    print(f"{'GET /hello':34} {'load':>10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'+p99 ms':>8} {'non-2xx':>8}"
          "  each round's p99 (the median's figures shown)")
    plain = pages["plain"]
    for name, runs in pages.items():
        for load, r in runs.items():
            added = r["p99"] - plain[load]["p99"]
            p99s = PACED_P99.get((name, load), [])
            rounds = " ".join(f"{p99:.2f}" for p99 in p99s) if len(p99s) > 1 else ""
            print(f"{name:34} {load:>10} {r['rps']:9,.0f} {r['p50']:8.2f} {r['p99']:8.2f} {added:+8.2f}"
                  f" {r['non2xx']:8,.0f}  {rounds}")
    new, ref = pages["footprint.track (this tree)"], pages[f"footprint.track at {old}"]
    cost = 1e6 / new["saturated"]["rps"] - 1e6 / plain["saturated"]["rps"]
    limit = (f"the site app's process (one GIL) serves {new['saturated']['rps']:,.0f} req/s with the middleware,"
             f" {plain['saturated']['rps']:,.0f} without: +{cost:.0f} us of it per request; a paced load near that"
             " capacity queues")
    relay = pages[RELAY]
    relay_cost = 1e6 / relay["saturated"]["rps"] - 1e6 / plain["saturated"]["rps"]
    relay_limit = (f"the site app's process serves {relay['saturated']['rps']:,.0f} req/s with the relay's middleware,"
                   f" {plain['saturated']['rps']:,.0f} without: +{relay_cost:.0f} us of it per request (the request"
                   " queued, its page and line made by the sender's thread), and the relay process (building the"
                   " event, validation, producing; at SCHED_IDLE) shares the 2 cores with the app, the broker and wrk")
    for load in plain:
        what = "saturated (closed loop)" if load == "saturated" else f"at {load} of capacity"
        plain_own = (f"the plain app's process {plain[load]['own_cores']:.2f} of a core and "
                     if "own_cores" in plain[load] else "")
        during = {name: f"; at {load}, {plain_own}{PAGE_CPU[name, load]}" if (name, load) in PAGE_CPU else ""
                  for name in pages}
        record(f"page middleware under wrk, {what}: p99 added", new[load]["p99"] - plain[load]["p99"], "ms",
               target=1.0, better="lower", reference=ref[load]["p99"] - plain[load]["p99"],
               note=f"reference: the middleware at {old}", limit=limit + during["footprint.track (this tree)"])
        record(f"page middleware with the KafkaRelaySender under wrk, {what}: p99 added",
               relay[load]["p99"] - plain[load]["p99"], "ms", target=1.0, better="lower",
               reference=ref[load]["p99"] - plain[load]["p99"], note=f"reference: the middleware at {old}",
               limit=relay_limit + during[RELAY])
    for name, runs in (("KafkaSender", new), ("KafkaRelaySender", relay)):
        print(f"middleware with the {name} +p99 (target <= 1 ms): " + ", ".join(
            f"{load} {runs[load]['p99'] - plain[load]['p99']:+.2f} ms (at {old}: "
            f"{ref[load]['p99'] - plain[load]['p99']:+.2f})" for load in plain))


def run_api(work: Path, env: dict[str, str], args: argparse.Namespace, label: str = "collector-api",
            python: str = sys.executable) -> dict[str, float]:
    port = free_port()
    body = json.dumps({"batch": [{"type": "track", "event": "Bench", "userId": f"u{i}", "properties": {"i": i}}
                                 for i in range(args.batch)]})
    script = work / "post.lua"
    script.write_text(POST_LUA.format(key=KEY, body=body))
    proc = start([python, "-m", "footprint.cli", "serve"],
                 dict(env, FOOTPRINT_COLLECTOR_HOST="127.0.0.1", FOOTPRINT_COLLECTOR_PORT=str(port)),
                 work / "collector.log")
    try:
        wait_up(f"http://127.0.0.1:{port}/healthz", proc)
        print(f"POST /v1/events ({label}): warm-up 3 s, then {args.duration} s", flush=True)
        wrk(f"http://127.0.0.1:{port}/v1/events", script, 3, args.connections)
        start_s = time.perf_counter()
        with cpu_shares() as shares:  # who takes the cores during the measured run
            figures = measure(f"http://127.0.0.1:{port}/v1/events", script, args, proc, label)
        wall = time.perf_counter() - start_s
        print(shares.table(wall))
        cpu = shares.seconds()
        API_LIMIT[label] = (f"the collector's one process used {cpu['Footprint collector'] / wall:.2f} of a core (its"
                            " event loop and its delivery thread share one GIL: one core at most), the broker"
                            f" {cpu['Kafka broker'] / wall:.2f}, wrk {cpu['load generator (wrk)'] / wall:.2f}: a second"
                            " worker (FOOTPRINT_COLLECTOR_WORKERS) needs a core to run on")
        return figures
    finally:
        stop(proc)


API_LIMIT: dict[str, str] = {}  # run label -> what limits the collector (run_api)
RELAY = "footprint.track (this tree, relay)"  # the KafkaRelaySender: a relay process produces
PAGE_CPU: dict[tuple[str, str], str] = {}  # (site app, paced load) -> who took the cores meanwhile (``busy``)
PACED_P99: dict[tuple[str, str], list[float]] = {}  # (site app, paced load) -> each round's p99, ms
SITE_GROUPS = ("site app (uvicorn)", "Footprint relay", "Kafka broker", "load generator (wrk)")


def busy(cpu: dict[str, float], wall: float) -> str:
    """The cores each group of processes used in a paced run (the site apps together: the others idle), and how
    busy the machine was: a p99 that grows while the cores are nearly all taken is the cores' queue, not the
    middleware's own time."""
    cores = os.cpu_count() or 1
    parts = ", ".join(f"{group} {cpu[group] / wall:.2f}" for group in SITE_GROUPS if cpu[group] > 0)
    return f"cores used: {parts}; the machine {100 * sum(cpu.values()) / (wall * cores):.0f} % busy of {cores} cores"


def waited(before: tuple[int, int], after: tuple[int, int], wall: float) -> str:
    """What the app's event loop (its main thread) waited for a core between two ``run_queue`` readings."""
    ns, slices = after[0] - before[0], max(after[1] - before[1], 1)
    return (f"the app's event loop waited for a core {ns / 1e6 / wall:.0f} ms per second, {ns / 1e3 / slices:.0f} us"
            " per time slice on average")


def run_pages(work: Path, env: dict[str, str], args: argparse.Namespace) -> dict[str, dict[str, dict[str, float]]]:
    """``GET /hello`` on the plain app, the app with ``args.middleware_reference``'s middleware and with
    this tree's, all started at once: each saturated (wrk's closed loop), then ``args.repeat`` rounds of each
    app paced at each of ``args.paced`` of the plain app's saturated requests/s, the apps taking turns so that
    a slow minute of the machine falls on all of them. {app: {load: wrk's figures}}; a paced load's are its
    median run's by p99 (every run's p99 in ``PACED_P99``)."""
    (work / "siteapp.py").write_text(SITE_APP)
    script, paced = work / "page.lua", work / "paced.lua"
    script.write_text(PAGE_LUA)
    paced.write_text(PAGE_LUA + PACED_LUA)
    out: dict[str, dict[str, dict[str, float]]] = {}
    procs: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    labels: dict[str, str] = {}  # the profiles' file names (--profile)
    with reference_tree(args.middleware_reference) as old_src:
        apps = (("plain", "without_middleware", env),
                (f"footprint.track at {args.middleware_reference}", "with_middleware", dict(env, PYTHONPATH=str(old_src))),
                ("footprint.track (this tree)", "with_middleware", env),
                (RELAY, "with_middleware", dict(env, FOOTPRINT_BENCH_SENDER="relay")))
        try:
            for i, (name, factory, app_env) in enumerate(apps):
                port = free_port()
                procs[name] = (start([sys.executable, "-m", "uvicorn", f"siteapp:{factory}", "--factory", "--app-dir",
                                      str(work), "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
                                      "--log-level", "warning"], app_env, work / f"{i}-{factory}.log"),
                               f"http://127.0.0.1:{port}/hello")
                labels[name] = (f"site-{name.split(' ')[0]}-{'tree' if 'tree' in name else factory}"
                                f"{'-relay' if 'relay' in name else ''}")
            for name, (proc, url) in procs.items():
                wait_up(url, proc)
                settle()
                print(f"GET /hello {name}: warm-up 3 s, then {args.duration} s saturated", flush=True)
                wrk(url, script, 3, args.connections)
                out[name] = {"saturated": measure(url, script, args, proc, labels[name])}
            capacity = out["plain"]["saturated"]["rps"]
            paced_runs: dict[tuple[str, str], list[tuple[dict[str, float], str]]] = {}
            for round_ in range(1, args.repeat + 1):
                for share in args.paced:
                    rate, load = capacity * share / 100, f"{share} %"
                    for name, (proc, url) in procs.items():
                        print(f"GET /hello {name}: {args.duration} s at {rate:,.0f} req/s ({share} % of the plain app's"
                              f" capacity), round {round_} of {args.repeat}", flush=True)
                        settle()
                        t0, queued, used = time.perf_counter(), run_queue(proc.pid), cpu_seconds(proc.pid)
                        with cpu_shares() as shares:  # who takes the cores while the middleware adds its p99
                            figures = wrk(url, paced, args.duration, args.connections, rate=rate)
                        wall = time.perf_counter() - t0
                        figures["own_cores"] = (cpu_seconds(proc.pid) - used) / wall
                        cpu = (f"this app's process {figures['own_cores']:.2f} of a core; "
                               + busy(shares.seconds(), wall) + "; " + waited(queued, run_queue(proc.pid), wall))
                        print(f"  p99 {figures['p99']:.2f} ms; {cpu}", flush=True)
                        paced_runs.setdefault((name, load), []).append((figures, cpu))
            for (name, load), runs in paced_runs.items():
                ordered = sorted(runs, key=lambda run: run[0]["p99"])
                out[name][load], PAGE_CPU[name, load] = ordered[(len(ordered) - 1) // 2]  # the median (the lower)
                PACED_P99[name, load] = [run[0]["p99"] for run in runs]
        finally:
            for proc, _ in procs.values():
                stop(proc)
    return out


if __name__ == "__main__":
    raise SystemExit(main())
