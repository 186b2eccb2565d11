#!/usr/bin/env python3
"""Benchmark: ``footprint audit --since 24h`` with the stores holding 1M and 10M events.

Generated events (the benchmarks' usual traffic over --days days up to now, received when they
happened) are written straight into both stores with the consumer's sinks; the ones of the audit's
window (the last 24 hours, about 1/30 of them) also go to the events topic, timed by their
``received_at`` as the collector does, and the consumer group's offsets are committed to the end.
Then, REPEAT times, median printed:

- the stores' per-hour counts alone (``AuditStores.hours``: PostgreSQL's index on received_at,
  ClickHouse's minmax index), and a whole ``footprint audit`` run (Kafka's offsets at each hour, the
  committed offsets, both stores): everything balances, no message is read;
- the same after one row of one hour is deleted from PostgreSQL: the audit reads that hour's
  messages from Kafka and names the event (the cost of a finding).

  python benchmarks/audit_run.py [--sizes 1000000,10000000] [--repeat 3] [--days 30]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _generated import chunks
from _services import machine, services

WINDOW = timedelta(hours=24)


def load(settings: Any, start: datetime, days: int, frm: int, to: int, since: datetime,
         window: list[tuple[int, str, bytes]]) -> float:
    """Events [frm, to) into both stores; those received since ``since`` added to ``window``; seconds."""
    import psycopg
    from footprint.contract import kafka_timestamp, parse_time
    from footprint.sinks import ClickHouseSink, PostgresSink

    pg, ch = PostgresSink(settings.pg_dsn.get_secret_value()), ClickHouseSink(settings)
    t0 = time.perf_counter()
    for events, docs in chunks(start, days, frm, to):
        pg.write(docs)
        ch.write(docs)
        for e in events:
            received = parse_time(e["received_at"]).replace(tzinfo=UTC)
            if received >= since:
                window.append((kafka_timestamp(received), e["event_id"], docs[e["event_id"]]))
    pg.close()
    ch.close()
    with psycopg.connect(settings.pg_owner_dsn.get_secret_value(), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE events")  # planner statistics and the visibility map, as autovacuum would
    return time.perf_counter() - t0


def on_topic(settings: Any, window: list[tuple[int, str, bytes]], size: int) -> Any:
    """A fresh topic holding ``window`` in time order (as collectors produce), its group committed
    to the end (as a caught-up consumer leaves it); the settings that name them."""
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    s = settings.model_copy(update={"kafka_topic": f"{settings.kafka_topic}-{size}",
                                    "kafka_group": f"{settings.kafka_topic}-{size}-g"})
    admin = AdminClient({"bootstrap.servers": s.kafka_bootstrap})
    for f in admin.create_topics([NewTopic(s.kafka_topic, 3, 1)]).values():
        f.result(30)
    producer = Producer({"bootstrap.servers": s.kafka_bootstrap, "enable.idempotence": True, "linger.ms": 20,
                         "compression.type": "lz4", "queue.buffering.max.messages": 1_000_000})
    for stamp, key, value in sorted(window):
        producer.produce(s.kafka_topic, value=value, key=key, timestamp=stamp)
        producer.poll(0)
    assert producer.flush(120) == 0
    c = Consumer({"bootstrap.servers": s.kafka_bootstrap, "group.id": s.kafka_group,
                  "enable.auto.commit": False})
    try:
        parts = c.list_topics(s.kafka_topic, timeout=10).topics[s.kafka_topic].partitions
        ends = [TopicPartition(s.kafka_topic, p, c.get_watermark_offsets(
            TopicPartition(s.kafka_topic, p), timeout=10)[1]) for p in parts]
        c.commit(offsets=ends, asynchronous=False)
    finally:
        c.close()
    return s


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    runs, last = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        last = fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs), last


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000000,10000000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--days", type=int, default=30, help="the generated traffic spans this many days up to now")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    print(machine())
    from footprint.audit import Progress, run
    from footprint.auditstores import AuditStores
    from footprint.stores import pg_connect

    begun = datetime.now(UTC)
    start = begun - timedelta(days=args.days)
    with open(os.devnull, "w") as devnull, services() as stores_only:
        quiet = Progress(devnull)  # never a terminal: no progress lines
        loaded = 0
        window: list[tuple[int, str, bytes]] = []
        for size in sizes:
            secs = load(stores_only, start, args.days, loaded, size, begun - WINDOW, window)
            loaded = size
            s = on_topic(stores_only, window, size)
            print(f"\n## {size:,} events in each store ({len(window):,} of them on the topic, the last 24 h);"
                  f" loaded in {secs:.0f} s")
            with AuditStores(s) as stores:
                counts, hours = timed(lambda: stores.hours(datetime.now(UTC) - WINDOW, None), args.repeat)
            rows = sum(h.rows for h in hours["postgresql"].values())
            audit_now = functools.partial(lambda s: run(s, datetime.now(UTC) - WINDOW, None, progress=quiet), s)
            whole, audit = timed(audit_now, args.repeat)
            t = audit.totals
            print(f"stores' per-hour counts (both stores, {rows:,} rows in the window): {counts * 1000:,.0f} ms")
            print(f"whole audit: {whole * 1000:,.0f} ms; ok={t.ok}, accepted {t.accepted:,}, in flight {t.in_flight:,},"
                  f" read {audit.read_messages}")
            with pg_connect(s.pg_owner_dsn.get_secret_value(), "owner") as conn:
                conn.execute("CREATE TEMP TABLE gone AS SELECT * FROM events WHERE event_id = (SELECT event_id"
                             " FROM events WHERE received_at >= now() - interval '5 hours' ORDER BY received_at LIMIT 1)")
                assert conn.execute("DELETE FROM events WHERE event_id IN (SELECT event_id FROM gone)").rowcount == 1
                conn.commit()
                found, audit = timed(audit_now, max(args.repeat - 1, 1))
                conn.execute("INSERT INTO events SELECT * FROM gone")  # back, for the next size
                conn.commit()
            t = audit.totals
            print(f"audit with one row deleted: {found * 1000:,.0f} ms; ok={t.ok}, postgresql missing"
                  f" {t.stores['postgresql'].missing}, {audit.read_messages:,} messages read")
    return 0


if __name__ == "__main__":
    sys.exit(main())
