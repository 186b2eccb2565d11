#!/usr/bin/env python3
"""Benchmark (2): the dashboard queries on both stores at 10k, 100k and 1M events.

Loads generated events through the real consumer path (Kafka -> BatchConsumer -> both stores) up to
each size, then runs `footprint stats` (every query, both stores) REPEAT times and prints the median.

  python benchmarks/stats_queries.py [--sizes 10000,100000,1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _services import committed_total as _committed
from _services import machine, services
from helpers import gen_events, produce


def load(settings: Any, events: list[dict[str, Any]], target_total: int) -> float:
    from confluent_kafka import Consumer, TopicPartition
    from footprint.consumer import BatchConsumer
    from footprint.sinks import ClickHouseSink, PostgresSink

    produce(settings, events)
    probe = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": settings.kafka_group})
    parts = [TopicPartition(settings.kafka_topic, p) for p in range(3)]
    c = BatchConsumer(settings, [PostgresSink(settings.pg_dsn.get_secret_value()), ClickHouseSink(settings)])
    t = threading.Thread(target=c.run, daemon=True)
    t0 = time.perf_counter()
    t.start()
    while _committed(probe, parts) < target_total:
        time.sleep(0.2)
    c.stop.set()
    t.join()
    probe.close()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--days", type=int, default=30, help="the generated traffic spans this many days")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    print(machine())
    from footprint.stats import run_stats

    with services() as s:
        s = s.model_copy(update={"batch_max_events": 20000})
        all_events = gen_events(max(sizes), seed=99, days=args.days)
        loaded = 0
        for size in sizes:
            secs = load(s, all_events[loaded:size], size)
            loaded = size
            print(f"\n## {size:,} events (loaded through the consumer in {secs:.1f} s)")
            runs = [run_stats(s, date(1970, 1, 1), date(2100, 1, 1)) for _ in range(args.repeat)]
            print(f"{'query':<26}{'postgres ms':>14}{'clickhouse ms':>16}{'answers':>10}")
            for i, r in enumerate(runs[0]):
                pg = statistics.median(run[i].pg_ms for run in runs)
                ch = statistics.median(run[i].ch_ms for run in runs)
                same = all(run[i].same for run in runs)
                print(f"{r.name:<26}{pg:>14.1f}{ch:>16.1f}{'same' if same else 'DIFFERENT':>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
