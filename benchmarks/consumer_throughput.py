#!/usr/bin/env python3
"""Benchmark (1): Footprint's batch consumer vs a re-creation of the hand-built one-row consumer.

Same run, same services (PostgreSQL, Kafka 4.0 KRaft, ClickHouse engine, all on this machine):
  footprint : `footprint`'s consumer in its own process (COPY + ON CONFLICT into PostgreSQL, one insert
              per batch into ClickHouse),
              offsets committed after both stores accepted the batch
  baseline  : for each message: INSERT into PostgreSQL + COMMIT, then a single-row INSERT into
              ClickHouse; offsets auto-committed (the hand-built consumer)
  reference : with --reference REV, Footprint's consumer as it was at git revision REV (checked out
              into a temporary worktree, run in its own process against the same services)
Each side drains its own pre-filled topic; the figure is events stored in BOTH stores per second.
The consumer's peak RSS is printed too, and, for each consumer run, the CPU-seconds of each process
(the consumer, PostgreSQL, the ClickHouse stand-in, the broker, the rest of the machine): the part of
the machine that limits the figure.

  python benchmarks/consumer_throughput.py [--events 200000] [--baseline-events 3000] [--reference de14caa]
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))

from _cpu import cpu_shares, postmaster
from _figures import record
from _services import machine, reference_tree, services
from helpers import gen_events, produce

CONSUMER_RUN = """
import sys, threading, time
from confluent_kafka import Consumer, TopicPartition
from footprint.consumer import BatchConsumer
from footprint.settings import Settings
from footprint.sinks import ClickHouseSink, PostgresSink

s = Settings()
n = int(sys.argv[1])
probe = Consumer({"bootstrap.servers": s.kafka_bootstrap, "group.id": s.kafka_group})
parts = [TopicPartition(s.kafka_topic, p) for p in range(3)]
spent = {"PostgreSQL": [0.0, 0], "ClickHouse": [0.0, 0]}  # each sink's write: seconds, calls


def timed(sink, name):  # the sink's writes timed (the pipeline's profile: where a batch waits)
    write = sink.write

    def write_timed(docs):
        t = time.perf_counter()
        try:
            return write(docs)
        finally:
            spent[name][0] += time.perf_counter() - t
            spent[name][1] += 1
    sink.write = write_timed
    return sink


c = BatchConsumer(s, [timed(PostgresSink(s.pg_dsn.get_secret_value()), "PostgreSQL"),
                      timed(ClickHouseSink(s), "ClickHouse")])
t = threading.Thread(target=c.run, daemon=True)
t.start()
while c.metrics.consumed._value.get() == 0:
    time.sleep(0.005)
t_first = time.perf_counter()
while sum(max(tp.offset, 0) for tp in probe.committed(parts, timeout=10)) < n:
    time.sleep(0.1)
# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so it would report the RSS of the parent
# (this benchmark, holding every generated event) at fork time instead of the consumer's own peak
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
wall = time.perf_counter() - t_first
for name, (seconds, calls) in spent.items():
    print(f"  {name} sink: {calls} writes, {seconds:.2f} s in write() = {100 * seconds / wall:.0f} % of the run"
          f" ({1e6 * seconds / n:.1f} us per event)")
print(wall, hwm // 1024)
c.stop.set()
t.join()
"""


PROFILE: dict[str, Any] = {"dir": None}  # --profile DIR: run each consumer under py-spy, stacks into DIR


def run_process(settings: Any, n: int, src: Any, label: str = "footprint") -> tuple[float, int]:
    """Footprint's consumer from the source tree ``src`` in its own process: (seconds, peak RSS MiB)."""
    import subprocess
    from pathlib import Path

    from helpers import settings_env

    env = settings_env(settings)
    env["PYTHONPATH"] = str(src)
    cmd = [sys.executable, "-c", CONSUMER_RUN, str(n)]
    if PROFILE["dir"]:
        # py-spy samples every thread of the consumer (not idle ones) 200 times a second; `--native`
        # would add C frames but costs more than the process itself on 2 cores
        out_file = Path(PROFILE["dir"]) / f"{label}.txt"
        cmd = ["py-spy", "record", "-r", "200", "-f", "raw", "--nonblocking", "-o", str(out_file), "--", *cmd]
    start = time.perf_counter()
    pg_port = int(settings.pg_dsn.get_secret_value().rsplit("port=", 1)[-1].split()[0])
    with cpu_shares(roots=(postmaster(pg_port),)) as shares:  # who takes the cores while it runs (start-up too)
        out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True, timeout=1800).stdout
    print(f"{label}: {shares.table(time.perf_counter() - start)}")
    print("\n".join(line for line in out.splitlines() if line.startswith("  ")))
    seconds, rss = next(line.split() for line in reversed(out.splitlines()) if len(line.split()) == 2)
    LIMIT[label] = ceiling(shares.seconds(), n, time.perf_counter() - start, out)
    print(f"  {LIMIT[label]}")
    return float(seconds), int(rss)


LIMIT: dict[str, str] = {}  # run label -> what limits it (``ceiling``)
PIPELINE = ("PostgreSQL", "ClickHouse stand-in", "Footprint consumer", "Kafka broker")


def ceiling(cpu: dict[str, float], n: int, wall: float, out: str) -> str:
    """The CPU each event costs the pipeline's processes, the rate this machine's cores would give at that cost
    if they did nothing else and never waited, and how busy the machine was: under ~80 % the cores are not what
    limits the run, and the share of the run each store spent in its writes (``out``: the run's lines) says
    which waits."""
    import os
    import re

    cores = os.cpu_count() or 1
    per_event = {group: 1e6 * cpu[group] / n for group in PIPELINE}
    total = sum(per_event.values())
    parts = ", ".join(f"{group} {us:.0f}" for group, us in per_event.items())
    busy = sum(cpu.values()) / (wall * cores)
    writes = "; ".join(f"{m[1]} in its writes {m[2]} % of the run" for m in
                       re.finditer(r"^\s+(\S+) sink: .* = (\d+) % of the run", out, re.M))
    verdict = ("the cores are the limit" if busy >= 0.8 else
               f"so the cores are not the limit: the batches wait ({writes or 'no store write timed'})")
    return (f"CPU per event {total:.0f} us ({parts}): {cores} cores busy with nothing else would store "
            f"{cores * 1e6 / total:,.0f} events/s; the machine was {busy:.0%} busy over the run, {verdict}")


def run_reference(settings: Any, n: int, rev: str) -> tuple[float, int]:
    """Footprint's consumer at git revision ``rev`` (a temporary worktree), in its own process."""
    with reference_tree(rev) as src:
        return run_process(settings, n, src, label=f"reference-{rev}")


def run_baseline(settings: Any, n: int) -> float:
    """The hand-built consumer, faithfully: one row, one commit, one ClickHouse insert per message."""
    import json

    import clickhouse_connect
    import psycopg
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": settings.kafka_group + "-base",
                         "auto.offset.reset": "earliest", "enable.auto.commit": True})
    consumer.subscribe([settings.kafka_topic])
    pg = psycopg.connect(settings.pg_dsn.get_secret_value())
    ch = clickhouse_connect.get_client(host=settings.ch_host, port=settings.ch_port, username=settings.ch_user,
                                       password=settings.ch_password.get_secret_value(), database="footprint")
    cols = ["event_id", "type", "method", "link", "anonymous_id", "visitor_id", "footprint_time", "received_at",
            "schema_version"]
    done = 0
    t0 = None
    while done < n:
        msg = consumer.poll(1.0)
        if msg is None or msg.error():
            continue
        if t0 is None:
            t0 = time.perf_counter()
        try:
            e = json.loads(msg.value())
            row = [e["event_id"], e["type"], e["method"] or "", e["link"] or "", e["anonymous_id"] or "",
                   e["visitor_id"], e["footprint_time"], e["received_at"], 1]
            pg.execute(f"INSERT INTO events ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})", row)
            pg.commit()
            from datetime import datetime

            row[6] = datetime.fromisoformat(row[6])
            row[7] = datetime.fromisoformat(row[7])
            ch.insert("events", [row], column_names=cols)
        except Exception as exc:  # the hand-built consumer logs and drops
            print("baseline dropped:", exc, file=sys.stderr)
        done += 1
    assert t0 is not None  # timed from the first message, like the footprint figure
    elapsed = time.perf_counter() - t0
    consumer.close()
    pg.close()
    ch.close()
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--baseline-events", type=int, default=3_000)
    ap.add_argument("--batch", type=int, default=None, help="FOOTPRINT_BATCH_MAX_EVENTS for this run")
    ap.add_argument("--reference", default=None, help="also run the consumer of this git revision (e.g. de14caa)")
    ap.add_argument("--reference-first", action="store_true",
                    help="run the reference's consumer before this tree's (the second one writes into stores that"
                         " already hold the first one's events: alternate the order between runs)")
    ap.add_argument("--profile", default=None, metavar="DIR",
                    help="run each consumer under py-spy (on PATH); collapsed stacks go to DIR (see profile_summary.py)")
    args = ap.parse_args()
    PROFILE["dir"] = args.profile
    print(machine())
    with services() as s:
        if args.batch:
            s = s.model_copy(update={"batch_max_events": args.batch})
        page_only = [dict(e, type="page", method=e["method"] or "GET", link=e["link"] or "/")
                     for e in gen_events(args.events + args.baseline_events, seed=7)]
        t = time.perf_counter()
        produce(s, page_only[: args.events])
        print(f"pre-filled {args.events} events in {time.perf_counter() - t:.1f} s")
        from pathlib import Path

        def this_tree() -> tuple[float, int]:
            fp, rss = run_process(s, args.events, Path(__file__).resolve().parents[1] / "app" / "src")
            print(f"footprint consumer : {args.events:>8} events in {fp:7.2f} s = {args.events / fp:>9,.0f} events/s "
                  f"(its own process: first batch read -> last commit; batch <= {s.batch_max_events}); "
                  f"peak RSS {rss} MiB")
            return args.events / fp, rss

        if not args.reference_first:
            fp_rate, rss = this_tree()
        ref_rate = None
        if args.reference:
            from confluent_kafka.admin import AdminClient, NewTopic

            ref = s.model_copy(update={"kafka_topic": s.kafka_topic + "-ref", "kafka_group": s.kafka_group + "-ref"})
            admin = AdminClient({"bootstrap.servers": s.kafka_bootstrap})  # kept alive until the topic exists
            for f in admin.create_topics([NewTopic(ref.kafka_topic, 3, 1)]).values():
                f.result(30)
            # other events (another seed): the stores must not already hold them; in the form that
            # revision's contract knows (without the fields later releases added)
            from footprint.contract import ENRICHED_COLUMNS

            produce(ref, [{k: v for k, v in dict(e, type="page", method=e["method"] or "GET", link=e["link"] or "/")
                           .items() if k not in ENRICHED_COLUMNS} for e in gen_events(args.events, seed=8)])
            ref_s, ref_rss = run_reference(ref, args.events, args.reference)
            ref_rate = args.events / ref_s
            print(f"footprint@{args.reference:<9}: {args.events:>8} events in {ref_s:7.2f} s = {ref_rate:>9,.0f} "
                  f"events/s; peak RSS {ref_rss} MiB")
        if args.reference_first:
            fp_rate, rss = this_tree()
        if ref_rate is not None:
            print(f"ratio footprint/footprint@{args.reference} = {fp_rate / ref_rate:.2f}x")
        record(f"consumer, both stores ({args.events:,} events)", fp_rate, "events/s", target=50_000,
               reference=ref_rate, limit=LIMIT["footprint"])
        record("consumer peak RSS", rss, "MiB", better="lower")
        base_topic = s.model_copy(update={"kafka_group": s.kafka_group + "-b"})
        from confluent_kafka.admin import AdminClient, NewTopic

        bt = s.kafka_topic + "-baseline"
        admin = AdminClient({"bootstrap.servers": s.kafka_bootstrap})
        for f in admin.create_topics([NewTopic(bt, 3, 1)]).values():
            f.result(30)
        base_topic = base_topic.model_copy(update={"kafka_topic": bt})
        produce(base_topic, page_only[args.events:])
        bl = run_baseline(base_topic, args.baseline_events)
        bl_rate = args.baseline_events / bl
        print(f"hand-built baseline: {args.baseline_events:>8} events in {bl:7.2f} s = {bl_rate:>9,.0f} events/s")
        print(f"ratio footprint/baseline = {fp_rate / bl_rate:,.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
