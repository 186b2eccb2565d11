"""The ``footprint`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable
from datetime import date
from typing import Any

from footprint import __version__
from footprint.settings import Settings
from footprint.stores import StoreUnavailable

log = logging.getLogger("footprint.cli")

EPILOG = """Settings come from the environment (prefix FOOTPRINT_), e.g. FOOTPRINT_KAFKA_BOOTSTRAP,
FOOTPRINT_KAFKA_TOPIC, FOOTPRINT_KAFKA_DLQ_TOPIC, FOOTPRINT_KAFKA_GROUP, FOOTPRINT_PG_DSN,
FOOTPRINT_PG_OWNER_DSN, FOOTPRINT_PG_READER_DSN, FOOTPRINT_CH_HOST, FOOTPRINT_CH_PORT,
FOOTPRINT_CH_DATABASE, FOOTPRINT_CH_USER/_PASSWORD, FOOTPRINT_CH_OWNER_USER/_PASSWORD,
FOOTPRINT_CH_READER_USER/_PASSWORD, FOOTPRINT_API_KEYS, FOOTPRINT_COLLECTOR_HOST/_PORT.
See app/README.md for the full list. Exit status 2 = a store is unreachable or refused the credentials."""


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, _frame: Any) -> None:
        log.info("signal received, finishing", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def _kafka_reachable(settings: Settings, timeout: float = 10.0) -> None:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    try:
        md = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise StoreUnavailable(f"Kafka ({settings.kafka_bootstrap}): {exc.args[0].str()}") from None
    if settings.kafka_topic not in md.topics:
        log.warning("topic does not exist (yet)", extra={"topic": settings.kafka_topic})


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    if args.check_kafka:
        _kafka_reachable(settings)
    uvicorn.run(
        "footprint.collector:app_from_env",
        factory=True,
        host=settings.collector_host,
        port=settings.collector_port,
        workers=settings.collector_workers,
        access_log=False,
        log_config=None,
    )
    return 0


def cmd_consume(settings: Settings, args: argparse.Namespace) -> int:
    from footprint.consumer import BatchConsumer
    from footprint.sinks import ClickHouseSink, PostgresSink

    _kafka_reachable(settings)
    pg = PostgresSink(settings.pg_dsn.get_secret_value())
    ch = ClickHouseSink(settings)
    pg.connect()  # fail fast with a clear message on wrong credentials
    ch.connect()
    consumer = BatchConsumer(settings, [pg, ch])
    stop = _stop_on_signals()

    def relay() -> None:
        stop.wait()
        consumer.stop.set()

    threading.Thread(target=relay, daemon=True).start()
    log.info("consumer started", extra={"topic": settings.kafka_topic, "group": settings.kafka_group})
    consumer.run()
    log.info("consumer stopped", extra={"batches_committed": consumer.batches_committed})
    return 0


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from footprint.migrate import migrate_clickhouse, migrate_postgres

    result: dict[str, list[str]] = {}
    if args.store in ("pg", "all"):
        result["postgres"] = migrate_postgres(settings)
    if args.store in ("ch", "all"):
        result["clickhouse"] = migrate_clickhouse(settings)
    print(json.dumps({"applied": result}))
    return 0


def cmd_stats(settings: Settings, args: argparse.Namespace) -> int:
    from footprint.stats import render, run_stats

    results = run_stats(settings, args.since, args.until, args.top)
    if args.json:
        print(json.dumps([
            {"query": r.name, "same": r.same, "postgres_ms": round(r.pg_ms, 2), "clickhouse_ms": round(r.ch_ms, 2),
             "postgres": r.pg_rows, "clickhouse": r.ch_rows}
            for r in results
        ]))
    else:
        print(render(results))
    return 0 if all(r.same for r in results) else 1


def cmd_tail(settings: Settings, args: argparse.Namespace) -> int:
    from footprint.tail import tail

    _kafka_reachable(settings)
    stop = _stop_on_signals()
    tail(settings, stop, from_beginning=args.from_beginning, max_events=args.max)
    return 0


def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    from footprint.stores import ch_client, pg_connect

    wanted = {s.strip() for s in args.store.split(",")}
    report: dict[str, str] = {}
    failed = False
    checks: dict[str, Callable[[], None]] = {
        "kafka": lambda: _kafka_reachable(settings),
        "pg": lambda: pg_connect(settings.pg_dsn.get_secret_value()).close(),
        "ch": lambda: ch_client(settings).close(),
    }
    for name, fn in checks.items():
        if name not in wanted:
            continue
        try:
            fn()
            report[name] = "ok"
        except StoreUnavailable as exc:
            report[name] = str(exc)
            failed = True
    print(json.dumps(report))
    return 2 if failed else 0


def cmd_version(settings: Settings, args: argparse.Namespace) -> int:
    print(__version__)
    return 0


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date (YYYY-MM-DD): {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="footprint", description="Footprint web-analytics pipeline.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("serve", help="run the HTTP collector (page middleware + POST /v1/events)")
    s.add_argument("--check-kafka", action="store_true", help="exit 2 at startup if Kafka is unreachable")
    s.set_defaults(fn=cmd_serve)

    s = sub.add_parser("consume", help="consume the topic into PostgreSQL and ClickHouse until SIGTERM")
    s.set_defaults(fn=cmd_consume)

    s = sub.add_parser("migrate", help="apply versioned schema migrations (idempotent)")
    s.add_argument("--store", choices=["pg", "ch", "all"], default="all", help="which store (default: all)")
    s.set_defaults(fn=cmd_migrate)

    s = sub.add_parser("stats", help="dashboard queries on both stores with timings; exit 1 if answers differ")
    s.add_argument("--since", type=_date, default=date(1970, 1, 1), help="first UTC day (YYYY-MM-DD)")
    s.add_argument("--until", type=_date, default=date(2100, 1, 1), help="end UTC day, exclusive")
    s.add_argument("--top", type=int, default=10, help="number of top links (default 10)")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.set_defaults(fn=cmd_stats)

    s = sub.add_parser("tail", help="print new events (JSON lines) as they arrive on the topic")
    s.add_argument("--from-beginning", action="store_true", help="start at the oldest retained event")
    s.add_argument("--max", type=int, default=None, help="exit after N events")
    s.set_defaults(fn=cmd_tail)

    s = sub.add_parser("check", help="connect to the stores with the configured credentials (exit 2 if not)")
    s.add_argument("--store", default="kafka,pg,ch", help="comma-separated subset of kafka,pg,ch")
    s.set_defaults(fn=cmd_check)

    s = sub.add_parser("version", help="print the version")
    s.set_defaults(fn=cmd_version)
    return p


def main(argv: list[str] | None = None) -> int:
    from pydantic import ValidationError

    from footprint.logs import setup_logging

    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"footprint: invalid settings: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    try:
        rc: int = args.fn(settings, args)
        return rc
    except StoreUnavailable as exc:
        print(f"footprint: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
