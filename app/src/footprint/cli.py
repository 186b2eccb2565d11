"""The ``footprint`` command line."""

from __future__ import annotations

import argparse
import faulthandler
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable
from datetime import date
from typing import TYPE_CHECKING, Any, Literal

from footprint import __version__
from footprint.auditbook import DEFAULT_MAX_READ
from footprint.contract import EVENT_TYPES
from footprint.settings import Settings
from footprint.stores import StoreUnavailable

if TYPE_CHECKING:
    from footprint.consumer import AssembledConsumer
    from footprint.deadletter import DeadLetters
    from footprint.interfaces import Erased, KafkaClient, Sink
    from footprint.metrics import ConsumerMetrics

log = logging.getLogger("footprint.cli")

EPILOG = """Settings come from the environment (prefix FOOTPRINT_), e.g. FOOTPRINT_KAFKA_BOOTSTRAP,
FOOTPRINT_KAFKA_TOPIC, FOOTPRINT_KAFKA_DLQ_TOPIC, FOOTPRINT_KAFKA_GROUP, FOOTPRINT_PG_DSN,
FOOTPRINT_PG_OWNER_DSN, FOOTPRINT_PG_READER_DSN, FOOTPRINT_CH_HOST, FOOTPRINT_CH_PORT,
FOOTPRINT_CH_DATABASE, FOOTPRINT_CH_USER/_PASSWORD, FOOTPRINT_CH_OWNER_USER/_PASSWORD,
FOOTPRINT_CH_READER_USER/_PASSWORD, FOOTPRINT_API_KEYS, FOOTPRINT_COLLECTOR_HOST/_PORT.
See app/README.md for the full list. Exit status 2 = a store is unreachable or refused the credentials
(`consume` waits for its stores instead, logging what it waits for, and exits 2 when Kafka's
ACLs refuse it its group or topic)."""


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, _frame: Any) -> None:
        log.info("signal received, finishing", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def _kafka_reachable(settings: Settings, principal: Literal["collector", "consumer"], timeout: float = 10.0) -> None:
    """Kafka answers a metadata request of ``principal`` (with SASL, its own credentials only)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(settings.kafka_client_config(principal))
    try:
        md = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise StoreUnavailable(f"Kafka ({settings.kafka_bootstrap}): {exc.args[0].str()}") from None
    if settings.kafka_topic not in md.topics:
        log.warning("topic does not exist (yet)", extra={"topic": settings.kafka_topic})


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    if args.check_kafka:
        _kafka_reachable(settings, "collector")
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


def cmd_dashboard(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    if not settings.private_keys and not settings.dashboard_password.get_secret_value():
        raise StoreUnavailable(
            "the dashboard needs FOOTPRINT_PRIVATE_KEYS or FOOTPRINT_DASHBOARD_PASSWORD to log in with")
    uvicorn.run(
        "footprint.dashboard.app:app_from_env",
        factory=True,
        host=settings.dashboard_host,
        port=settings.dashboard_port,
        access_log=False,
        log_config=None,
    )
    return 0


def wait_for(checks: dict[str, Callable[[], None]], stop: threading.Event, max_delay: float,
             waiting: dict[str, str]) -> bool:
    """Retry ``checks`` with the backoff until all pass (True) or ``stop`` is set (False).

    ``waiting`` always holds what is still missing (for /healthz). A service started before its
    stores (a reboot) waits here instead of exiting and being restarted by systemd.
    """
    from footprint import backoff

    def check_all() -> None:
        waiting.clear()
        for name, check in checks.items():
            try:
                check()
            except StoreUnavailable as exc:
                waiting[name] = str(exc)
        if waiting:
            raise StoreUnavailable(", ".join(waiting))

    def say(_exc: Exception, delay: float) -> None:
        log.warning("waiting for stores before consuming", extra={"waiting_for": dict(waiting), "retry_in": delay})

    try:
        backoff.retry(check_all, say, stop, 1.0, max_delay, retry_on=(StoreUnavailable,))
    except backoff.Stopped:
        return False
    return True


def assemble_consumer(settings: Settings, sinks: list[Sink], metrics: ConsumerMetrics | None = None,
                      kafka: KafkaClient | None = None, dead_letters: DeadLetters | None = None,
                      erased: Erased | None = None) -> AssembledConsumer:
    """The consumer as ``footprint consume`` runs it: the one place its parts are put together.

    ``kafka`` (a ``confluent_kafka.Consumer`` of the consumer's principal) and ``dead_letters``
    (on the dead-letter topic) are made from ``settings`` unless given (tests give in-memory ones).
    """
    from confluent_kafka import Consumer, Producer

    from footprint.consumer import AssembledConsumer, consumer_config
    from footprint.deadletter import DeadLetters, dlq_producer_config
    from footprint.metrics import ConsumerMetrics
    from footprint.pipeline import Pipeline
    from footprint.processor import Processor
    from footprint.progress import Progress
    from footprint.storewrite import StoreWrite

    cs = settings.processor()
    metrics = metrics or ConsumerMetrics()
    kafka = kafka or Consumer(consumer_config(settings))
    dead_letters = dead_letters or DeadLetters(
        Producer(dlq_producer_config(settings.kafka_bootstrap) | settings.kafka_client_config("consumer")),
        settings.kafka_dlq_topic, settings.dlq_max_value_bytes)
    # the loop's longest blocking call: a synchronous commit waiting for a coordinator (up to the
    # session timeout) plus Kafka's socket timeout (60 s); a store's own timeout is 60 s
    stuck_after = cs.stuck_after_seconds
    progress = Progress(stuck_after, loop_after=max(stuck_after, cs.session_timeout_ms / 1000 + 90),
                        hang_after=max(3 * stuck_after, 180))
    stop = threading.Event()
    policy = StoreWrite(sinks, stop, metrics, cs.retry_max_seconds, cs.stuck_after_seconds, erased)
    processor = Processor(kafka, cs, metrics, progress, stop,
                          lambda: (policy.retrying_seconds(), policy.writing_seconds()))
    pipeline = Pipeline(processor.commit, policy, dead_letters, metrics, progress, cs.batch_max_events,
                        cs.batch_max_seconds, processor.wake)
    processor.attach(pipeline.head, pipeline.close)
    metrics.retrying_seconds.set_function(policy.retrying_seconds)
    metrics.stuck.set_function(lambda: processor.liveness.verdict() is not None)
    metrics.lag.set_function(lambda: -1 if (lag := progress.lag) is None else lag)
    return AssembledConsumer(processor, pipeline, policy)


def _consumer_health(settings: Settings, holder: dict[str, AssembledConsumer], waiting: dict[str, str],
                     restarts: int) -> tuple[bool, dict[str, Any]]:
    """What /healthz answers: waiting for the stores, ok, retrying a store, or stuck (and why)."""
    consumer = holder.get("c")
    details: dict[str, Any] = {"version": __version__}
    if consumer is None:
        return False, {**details, "status": "waiting", "waiting_for": dict(waiting)}
    retrying = consumer.retrying_seconds()
    reason = consumer.stuck()  # no progress although there is work, whatever the cause
    if reason is None and retrying >= settings.stuck_after_seconds:
        reason = f"a store or the dead-letter topic has refused the batch for {retrying:.0f} s (see the log)"
    lag = consumer.progress.lag
    details.update(status="stuck" if reason else "retrying" if retrying else "ok", retrying_seconds=round(retrying),
                   failing=consumer.failing(),
                   assigned=[f"{t}[{p}]" for t, p in consumer.assigned], paused=consumer.paused,
                   idle_seconds=round(consumer.progress.idle_seconds()), lag=lag,
                   watchdog_restarts=restarts)
    if reason:
        details["reason"] = reason
    return reason is None, details


def cmd_consume(settings: Settings, args: argparse.Namespace) -> int:
    from footprint.erasure import ErasedUsers
    from footprint.httpd import serve
    from footprint.metrics import ConsumerMetrics
    from footprint.sinks import ClickHouseSink, PostgresSink
    from footprint.watchdog import Watchdog, restarts_recorded

    faulthandler.enable()  # a watchdog's SIGABRT leaves every thread's stack in the journal
    stop = _stop_on_signals()
    metrics = ConsumerMetrics()
    watchdog = Watchdog()
    restarts = restarts_recorded(settings.consumer_state_dir)
    metrics.watchdog_restarts.set(restarts)
    if restarts:
        log.warning("systemd's watchdog has restarted this consumer before (it had stopped making progress)",
                    extra={"watchdog_restarts": restarts, "state_dir": settings.consumer_state_dir})
    waiting: dict[str, str] = {"kafka": "not checked yet"}
    holder: dict[str, AssembledConsumer] = {}
    httpd = None
    if settings.consumer_http_port:
        try:
            httpd = serve(settings.consumer_http_host, settings.consumer_http_port, metrics.registry,
                          lambda: _consumer_health(settings, holder, waiting, restarts))
        except OSError as exc:
            raise StoreUnavailable(
                f"cannot listen on {settings.consumer_http_host}:{settings.consumer_http_port} for /healthz and "
                f"/metrics ({exc.strerror}); set FOOTPRINT_CONSUMER_HTTP_PORT to a free port, or 0 for none"
            ) from None
    pg = PostgresSink(settings.pg_dsn.get_secret_value())
    ch = ClickHouseSink(settings)
    checks = {"kafka": lambda: _kafka_reachable(settings, "consumer"), "postgres": pg.connect, "clickhouse": ch.connect}
    try:
        # fed while waiting for the stores, then while the consumer is not stuck
        watchdog.keep_fed(lambda: (c := holder.get("c")) is None or c.stuck() is None, stop)
        if not wait_for(checks, stop, settings.retry_max_seconds, waiting):
            return 0
        erased = ErasedUsers(settings.pg_dsn.get_secret_value(), settings.erasure_refresh_seconds)
        consumer = assemble_consumer(settings, [pg, ch], metrics, erased=erased)
        holder["c"] = consumer

        def relay() -> None:
            stop.wait()
            consumer.stop.set()

        threading.Thread(target=relay, daemon=True).start()
        log.info("consumer started", extra={"topic": settings.kafka_topic, "group": settings.kafka_group,
                                            "instance": settings.kafka_group_instance_id or None})
        consumer.run()
        log.info("consumer stopped", extra={"batches_committed": consumer.batches_committed})
        return 0
    finally:
        if httpd is not None:
            httpd.shutdown()


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from footprint.migrate import migrate_clickhouse, migrate_postgres

    result: dict[str, list[str]] = {}
    if args.store in ("pg", "all"):
        result["postgres"] = migrate_postgres(settings)
    if args.store in ("ch", "all"):
        result["clickhouse"] = migrate_clickhouse(settings)
    print(json.dumps({"applied": result}))
    return 0


def cmd_retention(settings: Settings, args: argparse.Namespace) -> int:
    from footprint.retention import run

    report = run(settings, today=args.today, dry_run=args.dry_run)
    print(json.dumps({"dry_run": args.dry_run, **report.as_dict()}))
    return 0


def cmd_close_visits(settings: Settings, args: argparse.Namespace) -> int:
    from footprint.visitcloser import close_visits

    report = close_visits(settings)
    print(json.dumps({"made": report.made, "visits": report.visits, "verified": report.verified,
                      "open": report.open}))
    return 0


def cmd_stats(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from footprint import goalstats, goalstore
    from footprint.compare import NoPreviousPeriod, Periods, compared_results, run_both
    from footprint.stats import QUERIES, Filter, QueryResult, render, run_stats

    definitions = goalstore.definitions(settings)
    try:
        goal = definitions.goal(args.goal) if args.goal is not None else None
        f = Filter(since=args.since, until=args.until, top=args.top, link=args.link,
                   type="" if args.type == "all" else args.type, source=args.source, device=args.device,
                   browser=args.browser, os=args.os, country=args.country, goal=args.goal, goal_definition=goal)
        periods = Periods.of(f, datetime.now(UTC)) if args.compare else None
    except NoPreviousPeriod as exc:
        print(f"footprint stats: --compare: {exc} (give --since)", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"footprint stats: {exc}", file=sys.stderr)
        return 2
    previous: list[QueryResult] = []
    if periods is None:
        results = run_stats(settings, args.since, args.until, args.top, f=f)
    else:
        results, previous = run_both(settings, periods, tuple(QUERIES))
        previous += goalstats.run_both(settings, periods.previous, definitions)
    results += goalstats.run_both(settings, f, definitions)
    before = compared_results(periods, results, previous) if periods else {}
    if args.json:
        print(json.dumps([
            {"query": r.name, "same": r.same, "postgres_ms": round(r.pg_ms, 2), "clickhouse_ms": round(r.ch_ms, 2),
             "postgres": r.pg_rows, "clickhouse": r.ch_rows,
             **({"previous": before[r.name]} if r.name in before else {})}
            for r in results
        ]))
    else:
        print(render(results))
        if periods:
            print(f"\nthe previous period, {periods.previous.since} .. {periods.previous.until} (exclusive):")
            print(render(previous))
    return 0 if all(r.same for r in (*results, *previous)) else 1


def cmd_audit(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from footprint.audit import run
    from footprint.auditbook import bucket_starts, parse_when
    from footprint.auditreport import as_json, render, write_textfile

    now = datetime.now(UTC)
    try:
        since = parse_when(args.since, now)
        until = parse_when(args.until, now)
        if since is None:
            raise ValueError("--since: the window needs a start (a span before now such as 24h, or a time)")
        if until is not None and until > now:
            raise ValueError(f"--until {args.until}: in the future (leave it out for now)")
        bucket_starts(since, until, now)
        if args.max_read < 0:
            raise ValueError(f"--max-read {args.max_read}: a number of messages, 0 or more")
        if args.textfile and not args.textfile.endswith(".prom"):
            raise ValueError(f"--textfile {args.textfile}: node-exporter reads only files named *.prom")
    except ValueError as exc:
        print(f"footprint audit: {exc}", file=sys.stderr)
        return 2
    audit = run(settings, since, until, max_read=args.max_read, now=now)
    if not (args.quiet and audit.totals.ok):
        print(json.dumps(as_json(audit)) if args.json else render(audit))
    if args.textfile:
        try:
            write_textfile(audit, args.textfile)
        except OSError as exc:
            raise StoreUnavailable(f"cannot write {args.textfile}: {exc.strerror or exc}; give --textfile a path in a"
                                   " directory this user may write (the footprint-audit service writes its"
                                   " StateDirectory and installs the file into node-exporter's)") from None
    return 0 if audit.totals.ok else 1


def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from footprint.replay import STOP_CONSUMER, consumer_running, parse_from, reset_group
    from footprint.replaydlq import redrive

    def out(line: str) -> None:
        print(line, flush=True)

    if args.start is None and not args.dead_letters:
        print("footprint replay: --from earliest|TIME is required (or --dead-letters)", file=sys.stderr)
        return 2
    try:
        when = parse_from(args.start or "earliest", datetime.now(UTC))
    except ValueError as exc:
        print(f"footprint replay: {exc}", file=sys.stderr)
        return 2
    if args.dead_letters:
        return redrive(settings, when, dry_run=args.dry_run, out=out).exit_code
    running = consumer_running(settings)
    if running:
        raise StoreUnavailable(f"the consumer on this host is running (its {running} answers): it would be fenced"
                               f" by the replay's membership of the group; stop it first: {STOP_CONSUMER}")
    if not settings.consumer_http_port:
        out("FOOTPRINT_CONSUMER_HTTP_PORT is 0: cannot tell whether this host's consumer runs; it must be stopped")
    return reset_group(settings, when, dry_run=args.dry_run, out=out).exit_code


def cmd_tail(settings: Settings, args: argparse.Namespace) -> int:
    from footprint.tail import tail

    _kafka_reachable(settings, "consumer")
    stop = _stop_on_signals()
    tail(settings, stop, from_beginning=args.from_beginning, max_events=args.max)
    return 0


def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    from footprint.stores import ch_client, pg_connect

    wanted = {s.strip() for s in args.store.split(",")}
    report: dict[str, str] = {}
    failed = False
    checks: dict[str, Callable[[], None]] = {
        # the consumer's principal where its password is set (the consumer's env file), else the collector's
        "kafka": lambda: _kafka_reachable(
            settings, "consumer" if settings.kafka_consumer_password.get_secret_value() else "collector"),
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


Commands = argparse._SubParsersAction  # what add_subparsers returns: one add_parser per command


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="footprint", description="Footprint web-analytics pipeline.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_service_commands(sub)
    _add_store_commands(sub)
    _add_report_commands(sub)
    _add_kafka_commands(sub)
    _add_check_commands(sub)
    return p


def _add_service_commands(sub: Commands[argparse.ArgumentParser]) -> None:
    """The long-running services: the collector, the dashboard, the consumer."""
    s = sub.add_parser("serve", help="run the HTTP collector (POST /v1/events; the browser snippet /f.js, /v1/b)")
    s.add_argument("--check-kafka", action="store_true", help="exit 2 at startup if Kafka is unreachable")
    s.set_defaults(fn=cmd_serve)

    s = sub.add_parser(
        "dashboard", help="run the web dashboard (reader credentials only; log in with a private key or the password)",
        description="Serve the web dashboard on FOOTPRINT_DASHBOARD_HOST:FOOTPRINT_DASHBOARD_PORT (default "
                    "127.0.0.1:8002): page views and unique visitors per day, top links, HTTP methods, top event "
                    "names, live events per minute, and the same queries on PostgreSQL and ClickHouse with their "
                    "timings. It reads with FOOTPRINT_PG_READER_DSN and FOOTPRINT_CH_READER_USER/_PASSWORD only. "
                    "Log in with one of FOOTPRINT_PRIVATE_KEYS or FOOTPRINT_DASHBOARD_PASSWORD; the session "
                    "cookie is signed, HttpOnly, SameSite=Strict and lasts FOOTPRINT_DASHBOARD_SESSION_HOURS (12).")
    s.set_defaults(fn=cmd_dashboard)

    s = sub.add_parser(
        "consume", help="wait for the stores, then consume the topic into PostgreSQL and ClickHouse until SIGTERM")
    s.set_defaults(fn=cmd_consume)


def _add_store_commands(sub: Commands[argparse.ArgumentParser]) -> None:
    """The stores' schema and retention."""
    s = sub.add_parser("migrate", help="apply versioned schema migrations (idempotent)")
    s.add_argument("--store", choices=["pg", "ch", "all"], default="all", help="which store (default: all)")
    s.set_defaults(fn=cmd_migrate)

    s = sub.add_parser(
        "retention", help="drop the months past the retention from both stores, make the coming months' partitions",
        description="As the stores' owner: drop the raw events' months older than FOOTPRINT_RETENTION_MONTHS (13) "
                    "whole months before the current one from PostgreSQL (a partition each) and ClickHouse (with "
                    "their ids in the consumer's lookup), the hourly rollups' months older than "
                    "FOOTPRINT_ROLLUP_RETENTION_MONTHS (60) from ClickHouse, set ClickHouse's TTLs to match, and "
                    "create PostgreSQL's partitions of the next 3 months. 0 months keeps everything. Prints what "
                    "it did as JSON. Run daily by the footprint-retention timer.")
    s.add_argument("--dry-run", action="store_true", help="print what would be dropped and created; change nothing")
    s.add_argument("--today", type=_date, default=None, help=argparse.SUPPRESS)  # tests: another UTC day
    s.set_defaults(fn=cmd_retention)

    s = sub.add_parser(
        "close-visits", help="store the visits that have ended in ClickHouse (the dashboard reads them)",
        description="As the ClickHouse writer: store each day's visits (sessions) per event type once no event can "
                    "join them any more, so that the dashboard's visits, entry and exit pages read them instead of "
                    "making them of the raw events; verify the days stored before (a day with an event stored "
                    "since is made again, and read from the raw events until then). From the first event's day up "
                    "to today (UTC; today's visits that have ended), with FOOTPRINT_SESSION_TIMEOUT_MINUTES. Prints "
                    "what it did as JSON. Run hourly by the footprint-visits timer.")
    s.set_defaults(fn=cmd_close_visits)


def _add_report_commands(sub: Commands[argparse.ArgumentParser]) -> None:
    """What the stores hold: the dashboard's queries on both, the audit against Kafka."""
    s = sub.add_parser("stats", help="dashboard queries on both stores with timings; exit 1 if answers differ")
    s.add_argument("--since", type=_date, default=date(1970, 1, 1), help="first UTC day (YYYY-MM-DD)")
    s.add_argument("--until", type=_date, default=date(2100, 1, 1),
                   help="end UTC day, exclusive (2106-02-07 at the latest)")
    s.add_argument("--top", type=int, default=10, help="number of top links and event names (default 10)")
    s.add_argument("--type", choices=[*EVENT_TYPES, "all"], default="page", help="event type counted (default page)")
    s.add_argument("--link", default="", help="count only links starting with this prefix")
    for name, what in (("source", "referrer host"), ("device", "device class (desktop, mobile, tablet, other, bot)"),
                       ("browser", "browser"), ("os", "operating system"),
                       ("country", "country (ISO 3166-1 alpha-2 code, e.g. DE)")):
        s.add_argument(f"--{name}", default=None, metavar=name.upper(),
                       help=f"count only events of this {what} ('' = none known)")
    s.add_argument("--goal", default=None, metavar="NAME",
                   help="count only the visitors who reached this goal (FOOTPRINT_GOALS' or the dashboard's) in the"
                        " days: all their events of the filter, whatever page or event reached it")
    s.add_argument("--compare", action="store_true",
                   help="also the previous period of the same length (needs --since): its answers in both stores"
                        " and, with --json, each row's previous value and change in %%")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.set_defaults(fn=cmd_stats)

    s = sub.add_parser(
        "audit", help="per hour: events Kafka accepted = stored in each store (+ dead letters, in flight)",
        description="Count, per UTC hour of [--since, --until), the events the collectors put on the events topic"
                    " (Kafka's offsets by time), those stored in PostgreSQL and in ClickHouse (raw rows; an id stored"
                    " more than once is a duplicate), the dead letters and the events in flight (past the consumer"
                    " group's committed offsets), and say where they differ. Hours that do not balance are read"
                    " message by message: erased users, months past the retention and ids stored from an earlier"
                    " message are explained, the rest named. Reads as the consumer's Kafka principal (never joining"
                    " its group) and the stores' reader. Exit 0: nothing missing, duplicated or extra; 1: a"
                    " difference beyond the events in flight; 2: a usage or connection error.")
    s.add_argument("--since", default="24h", metavar="SPEC",
                   help="start: a span before now (90m, 24h, 7d, 2w) or an ISO time, UTC unless it says (default 24h)")
    s.add_argument("--until", default="now", metavar="SPEC", help="end, exclusive: as --since, or now (the default)")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.add_argument("--textfile", metavar="PATH",
                   help="also write the figures for node-exporter's textfile collector to PATH (*.prom, atomically)")
    s.add_argument("--quiet", action="store_true",
                   help="print the report only when it finds a difference (as the footprint-audit timer runs it)")
    s.add_argument("--max-read", type=int, default=DEFAULT_MAX_READ, metavar="N",
                   help=f"read at most N messages to explain hours that do not balance (default {DEFAULT_MAX_READ})")
    s.set_defaults(fn=cmd_audit)


def _add_kafka_commands(sub: Commands[argparse.ArgumentParser]) -> None:
    """The topic read again: replay (or the dead letters re-driven) and tail."""
    s = sub.add_parser(
        "replay", help="reset the consumer group's offsets to replay the topic, or re-drive the dead letters",
        description="--from WHEN: join the consumer group as this host's consumer (its principal, group and"
                    " FOOTPRINT_KAFKA_GROUP_INSTANCE_ID: no wait for the stopped consumer's session) and commit,"
                    " for the partitions it is assigned, the earliest retained offset or the first at or after"
                    " WHEN; then start the consumer again: nothing is stored twice. Stop this host's consumer"
                    " first (sudo systemctl stop footprint-consumer); partitions held by other app hosts are named,"
                    " run replay there too. --dead-letters: read the dead-letter topic from --from (default"
                    " earliest) to its end, no group, nothing committed, and write each original event to both"
                    " stores (first write wins; erased users' events dropped); the consumer may keep running."
                    " Exit 0: done; 1: no partition reset or only some, or dead letters still failing;"
                    " 2: a usage error, the consumer runs, or Kafka or a store is unreachable or refused.")
    s.add_argument("--from", dest="start", metavar="WHEN",
                   help="earliest, a span before now (90m, 24h, 7d) or an ISO time, UTC unless it says")
    s.add_argument("--dead-letters", action="store_true", help="re-drive the dead-letter topic into the stores")
    s.add_argument("--dry-run", action="store_true", help="print the plan (offsets, counts); commit and write nothing")
    s.set_defaults(fn=cmd_replay)

    s = sub.add_parser("tail", help="print new events (JSON lines) as they arrive on the topic")
    s.add_argument("--from-beginning", action="store_true", help="start at the oldest retained event")
    s.add_argument("--max", type=int, default=None, help="exit after N events")
    s.set_defaults(fn=cmd_tail)


def _add_check_commands(sub: Commands[argparse.ArgumentParser]) -> None:
    """Whether the stores answer; the version."""
    s = sub.add_parser("check", help="connect to the stores with the configured credentials (exit 2 if not)")
    s.add_argument("--store", default="kafka,pg,ch", help="comma-separated subset of kafka,pg,ch")
    s.set_defaults(fn=cmd_check)

    s = sub.add_parser("version", help="print the version")
    s.set_defaults(fn=cmd_version)


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
