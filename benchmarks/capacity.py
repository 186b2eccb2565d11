"""Capacity: bytes per event in Kafka, PostgreSQL and ClickHouse, and how many events and days fit per GB.

`.venv/bin/python benchmarks/capacity.py [--events 200000] [--days 30]`

The events are the integration tests' synthetic traffic (page-heavy, enriched, ~450 bytes of JSON each)
spread over ``--days`` days before now. Kafka: produced with the collector's producer settings
(lz4, its linger), measured as the topic's segment files. PostgreSQL: written by the consumer's
sink (batches of 5,000), measured as every partition of ``events`` with its indexes and TOAST after
VACUUM. ClickHouse: written by the consumer's sink, measured as the active parts on disk of
``events``, ``event_ids`` and the rollups after their merges (OPTIMIZE FINAL), the compressed
figure a long-running server converges to. The same run times PostgreSQL's insert per event for
collector-made ids (version 4) and client messageIds (version 5, looked up in every partition) on a
table with 13 monthly partitions, so the lookup's cost is printed beside what it protects.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "app" / "tests"))

from _services import local_stores, machine  # noqa: E402
from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from footprint import retention  # noqa: E402
from footprint.contract import dumps, message_id_uuid  # noqa: E402
from footprint.producer import producer_config  # noqa: E402
from footprint.settings import Settings  # noqa: E402
from footprint.sinks import ClickHouseSink, PostgresSink  # noqa: E402
from footprint.stores import pg_connect  # noqa: E402
from helpers import gen_events  # noqa: E402
from services import private_kafka  # noqa: E402

BATCH = 5000
GB = 1_000_000_000


def kafka_bytes(events: list[bytes], keys: list[str], bootstrap: str, log_dir: Path) -> int:
    topic = f"capacity-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        f.result(30)
    p = Producer(producer_config(bootstrap, 1_000_000, 60_000, "capacity"))
    for i, (key, value) in enumerate(zip(keys, events, strict=True)):
        p.produce(topic, value=value, key=key)
        if i % 10_000 == 0:
            p.poll(0)
    assert p.flush(60) == 0
    time.sleep(1)
    return sum(f.stat().st_size for f in log_dir.glob(f"{topic}-*/*.log"))


def write(s: Settings, docs: list[tuple[str, bytes]], ch: bool = True) -> float:
    """Seconds PostgreSQL's sink spent on ``docs`` (ClickHouse written too unless ``ch`` is false)."""
    pg_sink, ch_sink = PostgresSink(s.pg_dsn.get_secret_value()), ClickHouseSink(s)
    spent = 0.0
    try:
        for i in range(0, len(docs), BATCH):
            batch = dict(docs[i:i + BATCH])
            t0 = time.perf_counter()
            assert pg_sink.write(batch) == len(batch)
            spent += time.perf_counter() - t0
            if ch:
                assert ch_sink.write(batch) == len(batch)
    finally:
        pg_sink.close()
        ch_sink.close()
    return spent


def pg_bytes(s: Settings) -> tuple[int, int, int]:
    """(table incl. TOAST, indexes, partitions) of every partition of events."""
    with pg_connect(s.pg_owner_dsn.get_secret_value(), "owner", autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE events")
        row = conn.execute(
            "SELECT sum(pg_table_size(inhrelid)), sum(pg_indexes_size(inhrelid)), count(*)"
            " FROM pg_inherits WHERE inhparent = 'events'::regclass").fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


# the tables the materialized views fill
ROLLUPS = ("stats_hourly", "link_hourly", "breakdowns_daily", "links_daily", "visitors_daily")


def ch_bytes(ch: Any, db: str) -> dict[str, tuple[int, int]]:
    """table -> (compressed bytes on disk, uncompressed) of its active parts after merging."""
    for table in ("events", "event_ids", *ROLLUPS):
        ch.query(f"OPTIMIZE TABLE {db}.{table} FINAL")
    out = ch.query("SELECT table, sum(bytes_on_disk), sum(data_uncompressed_bytes) FROM system.parts"
                   f" WHERE database = '{db}' AND active GROUP BY table FORMAT TSV")
    return {t: (int(a), int(b)) for t, a, b in (line.split("\t") for line in out.splitlines() if line)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--days", type=int, default=30)
    args = ap.parse_args()
    n = args.events
    print(machine())
    now = datetime.now(UTC)
    events = gen_events(n, seed=29, start=now - timedelta(days=args.days), days=args.days)
    docs = [(e["event_id"], dumps(e)) for e in events]
    json_bytes = sum(len(d) for _, d in docs)

    base = Path(tempfile.mkdtemp(prefix="fp-capacity-"))
    try:
        with local_stores(base) as (s, ch):
            with private_kafka(base / "kafka", heap="512m") as broker:  # type: ignore[attr-defined]
                kafka = kafka_bytes([d for _, d in docs], [k for k, _ in docs], broker.bootstrap, broker.kraft_dir)
            write(s, docs)
            table, indexes, parts = pg_bytes(s)
            chs = ch_bytes(ch, s.ch_database)
            raw_ch = chs["events"][0] + chs["event_ids"][0]
            rollups = sum(chs.get(table, (0, 0))[0] for table in ROLLUPS)
            print("ClickHouse rollups, compressed bytes (per event): " + ", ".join(
                f"{table} {chs.get(table, (0, 0))[0]:,} ({chs.get(table, (0, 0))[0] / n:.1f})" for table in ROLLUPS))

            # the insert's cost per id kind, on 13 monthly partitions (the default retention's)
            with pg_connect(s.pg_owner_dsn.get_secret_value(), "owner") as conn:
                conn.execute("TRUNCATE events")
            for k in range(13):
                retention.run(s, today=(now - timedelta(days=31 * k)).date())
            spread = [dict(e, footprint_time=(now - timedelta(days=i % 390)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
                      for i, e in enumerate(events[:50_000])]
            v4 = [(e["event_id"], dumps(e)) for e in spread]
            v5 = [(i, dumps(dict(e, event_id=i))) for e in spread for i in [message_id_uuid(f"m-{e['event_id']}")]]
            pg_v4 = write(s, v4, ch=False) / len(v4) * 1e6
            pg_v5 = write(s, v5, ch=False) / len(v5) * 1e6
            parts13 = pg_bytes(s)[2]
    finally:
        shutil.rmtree(base, ignore_errors=True)

    per = {"JSON as produced": json_bytes / n, "Kafka (lz4, one replica)": kafka / n,
           "PostgreSQL (table + TOAST)": table / n, "PostgreSQL (indexes)": indexes / n,
           "PostgreSQL (total)": (table + indexes) / n,
           "ClickHouse (events + event_ids, compressed)": raw_ch / n,
           "ClickHouse (rollups, compressed)": rollups / n}
    print(f"\n{n:,} events over {args.days} days; PostgreSQL partitions: {parts}; ClickHouse parts merged")
    print(f"{'store':<46} {'bytes/event':>12} {'events per GB':>15} {'days/GB @10k/day':>17} {'@100k/day':>10}")
    for name, b in per.items():
        print(f"{name:<46} {b:>12.1f} {GB / b:>15,.0f} {GB / b / 10_000:>17,.0f} {GB / b / 100_000:>10,.1f}")
    print(f"\nPostgreSQL insert, {len(v4):,} events into {parts13} partitions: collector ids (v4) "
          f"{pg_v4:.1f} us/event, messageIds (v5, looked up in every partition) {pg_v5:.1f} us/event "
          f"({pg_v5 / pg_v4:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
