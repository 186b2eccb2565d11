"""Shared helpers for the integration tests (produce, read both stores, run the consumer)."""

from __future__ import annotations

import contextlib
import json
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import clickhouse_connect
import httpx
import psycopg
from confluent_kafka import Consumer, KafkaError, Producer

from footprint.cli import assemble_consumer
from footprint.contract import encode_event, make_event
from footprint.enrich import enrich
from footprint.settings import Settings
from footprint.sinks import ClickHouseSink, PostgresSink

USER_AGENTS = [  # browsers and devices of several kinds, one bot in ten, some server-side calls
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 "
    "Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "",
]
REFERRERS = ["", "", "https://news.example.com/story", "https://www.google.com/", "t.co"]
SEARCHES = ["", "", "?utm_source=newsletter&utm_medium=email&utm_campaign=winter", "?utm_source=ads&q=1"]
LINKS = ["/", "/pricing", "/docs", "/blog", "/blog/kafka", "/about", "/signup", "/login"]
METHODS = ["GET", "GET", "GET", "POST", "HEAD", "PUT", "DELETE"]


def gen_events(n: int, seed: int = 1, start: datetime | None = None, days: int = 3) -> list[dict[str, Any]]:
    """Deterministic synthetic traffic (page-heavy, a few of each other type, a few probes)."""
    rnd = random.Random(seed)
    start = start or datetime(2026, 11, 1, tzinfo=UTC)
    out = []
    for i in range(n):
        when = start + timedelta(seconds=rnd.randrange(days * 86400), microseconds=rnd.randrange(1_000_000))
        kind = rnd.choices(["page", "track", "identify", "group"], [85, 9, 3, 3])[0]
        ua = rnd.choices(USER_AGENTS, [30, 20, 10, 20, 10, 10])[0]
        context = {"userAgent": ua, "page": {"referrer": rnd.choice(REFERRERS), "search": rnd.choice(SEARCHES)}}
        out.append(make_event(
            type=kind,
            event_id=uuid.UUID(int=rnd.getrandbits(128), version=4),
            event="Signed Up" if kind == "track" else None,
            method=rnd.choice(METHODS) if kind == "page" else None,
            link=rnd.choice(LINKS) + ("" if rnd.random() < 0.9 else f"?p={i % 7}") if kind == "page" else None,
            anonymous_id=f"anon-{rnd.randrange(max(n // 5, 1))}",
            user_id=f"user-{rnd.randrange(100)}" if rnd.random() < 0.2 else None,
            group_id="acme" if kind == "group" else None,
            properties={"plan": "pro"} if kind == "track" else {},
            footprint_time=when,
            received_at=when,
            synthetic=rnd.random() < 0.01,
            enriched=enrich(context) if kind == "page" else None,
        ))
    return out


def produce(settings: Settings, events: list[dict[str, Any]] | list[bytes], keys: list[str] | None = None) -> None:
    p = Producer({"bootstrap.servers": settings.kafka_bootstrap, "enable.idempotence": True, "acks": "all",
                  "linger.ms": 20, "queue.buffering.max.messages": 1_000_000})
    for i, e in enumerate(events):
        if isinstance(e, bytes):
            p.produce(settings.kafka_topic, value=e, key=(keys[i] if keys else None))
        else:
            p.produce(settings.kafka_topic, value=encode_event(e), key=e["event_id"])
        if i % 10000 == 0:
            p.poll(0)
    assert p.flush(60) == 0


def pg_ids(settings: Settings, ids: list[str]) -> dict[str, int]:
    with psycopg.connect(settings.pg_owner_dsn.get_secret_value()) as c:
        rows = c.execute("SELECT event_id::text, count(*) FROM events WHERE event_id::text = ANY(%s) GROUP BY 1",
                         (ids,)).fetchall()
    return {r[0]: r[1] for r in rows}


def ch_client(settings: Settings) -> Any:
    return clickhouse_connect.get_client(host=settings.ch_host, port=settings.ch_port,
                                         username=settings.ch_owner_user,
                                         password=settings.ch_owner_password.get_secret_value(),
                                         database=settings.ch_database)


def ch_ids(settings: Settings, ids: list[str], final: bool = True) -> dict[str, int]:
    c = ch_client(settings)
    try:
        q = f"SELECT toString(event_id), count() FROM events {'FINAL' if final else ''}" \
            " WHERE toString(event_id) IN {ids:Array(String)} GROUP BY 1"
        out: dict[str, int] = {}
        for i in range(0, len(ids), 1000):  # keep each request's parameter small
            out.update({r[0]: r[1] for r in c.query(q, parameters={"ids": ids[i:i + 1000]}).result_rows})
        return out
    finally:
        c.close()


def committed(settings: Settings) -> dict[int, int]:
    """Committed offsets of the test's consumer group per partition."""
    from confluent_kafka import TopicPartition

    c = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": settings.kafka_group,
                  "enable.auto.commit": False})
    try:
        md = c.list_topics(settings.kafka_topic, timeout=10)
        parts = [TopicPartition(settings.kafka_topic, p) for p in md.topics[settings.kafka_topic].partitions]
        return {tp.partition: tp.offset for tp in c.committed(parts, timeout=10)}
    finally:
        c.close()


def create_topics(bootstrap: str, topics: list[Any], timeout: float = 30) -> None:
    """Create ``topics`` (``NewTopic``) and wait until every partition's leader answers for its
    offsets: a topic just created may still say NOT_LEADER_FOR_PARTITION for a moment (more often on
    a busy machine), which a test reading its offsets first would take for a failure."""
    from confluent_kafka import KafkaException, TopicPartition
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics(topics).values():
        f.result(timeout)
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": "topic-ready-probe"})
    try:
        wanted = [TopicPartition(t.topic, p) for t in topics for p in range(t.num_partitions)]
        end = time.monotonic() + timeout
        while wanted:
            try:
                probe.get_watermark_offsets(wanted[0], timeout=5, cached=False)
                wanted.pop(0)
            except KafkaException:
                if time.monotonic() > end:
                    raise
                time.sleep(0.1)
    finally:
        probe.close()


def end_offsets(settings: Settings) -> dict[int, int]:
    """The end (next) offset of every partition of the test's topic."""
    from confluent_kafka import TopicPartition

    c = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "offsets-probe"})
    try:
        md = c.list_topics(settings.kafka_topic, timeout=10)
        return {p: c.get_watermark_offsets(TopicPartition(settings.kafka_topic, p), timeout=10)[1]
                for p in md.topics[settings.kafka_topic].partitions}
    finally:
        c.close()


def caught_up(settings: Settings) -> bool:
    """The group has committed everything in every partition that holds messages (False while the
    broker cannot say yet: a coordinator still loading after a restart)."""
    from confluent_kafka import KafkaException

    try:
        done = committed(settings)
    except KafkaException as exc:
        if exc.args[0].retriable() or exc.args[0].code() == KafkaError.NOT_COORDINATOR:
            return False
        raise
    return all(done.get(p, -1) >= end for p, end in end_offsets(settings).items() if end > 0)


class RunningConsumer:
    """The real consumer in a background thread."""

    def __init__(self, settings: Settings, erased: Any = None) -> None:
        self.consumer = assemble_consumer(settings, [PostgresSink(settings.pg_dsn.get_secret_value()),
                                                     ClickHouseSink(settings)], erased=erased)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.consumer.run()
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def __enter__(self) -> RunningConsumer:
        self.thread.start()
        return self

    def stop(self, timeout: float = 60) -> None:
        self.consumer.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "consumer did not stop"
        if self.error:
            raise self.error

    def __exit__(self, *exc: object) -> None:
        self.stop()


def own_database(base: Settings, postgres: Any, db: str, **update: Any) -> Settings:
    """``base`` on a database of the test's own in both stores (one of ``services.OWN_DATABASES``; made here in
    PostgreSQL, ClickHouse's stand-in has it), with ``update`` as more settings; not migrated."""
    from pydantic import SecretStr

    postgres.create_database(db)
    return base.model_copy(update={
        "pg_dsn": SecretStr(postgres.dsn("footprint_writer", db)),
        "pg_owner_dsn": SecretStr(postgres.dsn("footprint_owner", db)),
        "pg_reader_dsn": SecretStr(postgres.dsn("footprint_reader", db)),
        "ch_database": db, **update})


@contextlib.contextmanager
def own_stores(base: Settings, postgres: Any, db: str) -> Iterator[tuple[Settings, list[Any]]]:
    """``own_database`` migrated, with a writer sink to each store (closed after)."""
    from footprint.migrate import migrate_clickhouse, migrate_postgres

    s = own_database(base, postgres, db)
    migrate_postgres(s)
    migrate_clickhouse(s)
    sinks: list[Any] = [PostgresSink(s.pg_dsn.get_secret_value()), ClickHouseSink(s)]
    try:
        yield s, sinks
    finally:
        for sink in sinks:
            sink.close()


def write_batches(sinks: list[Any], batches: list[list[Any]]) -> None:
    """Each batch of hits (``event_id`` and ``event()``) written to every sink, in turn."""
    for batch in batches:
        if batch:
            docs = {h.event_id: encode_event(h.event()) for h in batch}
            for sink in sinks:
                sink.write(docs)


def wait_for(pred: Callable[[], bool], timeout: float = 60, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def read_dlq(settings: Settings, n: int, timeout: float = 30) -> list[Any]:
    c = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"dlq-{uuid.uuid4()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([settings.kafka_dlq_topic])
    out: list[Any] = []
    end = time.monotonic() + timeout
    try:
        while len(out) < n and time.monotonic() < end:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                out.append(m)
    finally:
        c.close()
    return out


def as_json(m: Any) -> dict[str, Any]:
    return dict(json.loads(m.value()))


def settings_env(settings: Settings, **overrides: Any) -> dict[str, str]:
    """The environment that makes a ``footprint`` process read exactly ``settings``."""
    import os

    from pydantic import SecretStr

    env = dict(os.environ)
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, list):
            value = ",".join(v.get_secret_value() if isinstance(v, SecretStr) else str(v) for v in value)
        elif isinstance(value, tuple):  # the goals and funnels: JSON
            value = json.dumps([v.model_dump(mode="json", exclude_none=True) for v in value])
        env[f"FOOTPRINT_{name.upper()}"] = str(value)
    env["FOOTPRINT_CONSUMER_HTTP_PORT"] = "0"  # no fixed port: tests run several consumers
    env.update({f"FOOTPRINT_{k.upper()}": str(v) for k, v in overrides.items()})
    return env


@contextlib.contextmanager
def dashboard_process(settings: Settings, log_path: Path, **overrides: Any) -> Iterator[tuple[str, dict[str, str]]]:
    """``footprint dashboard`` as its own process with reader credentials only (the writer's and the
    owner's are not given to it), ``overrides`` as more settings; yields its URL and environment
    once /healthz answers. Its log (``log_path``) must hold no traceback."""
    from services import free_port

    port = free_port()
    env = settings_env(settings, dashboard_port=port, log_level="WARNING", pg_dsn="", pg_owner_dsn="",
                       ch_password="", ch_owner_password="", **overrides)
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "footprint.cli", "dashboard"], env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(healthy, timeout=60, what="dashboard healthy")
        yield base, env
    finally:
        proc.terminate()
        proc.wait(30)
    text = log_path.read_text()
    assert "Traceback" not in text, text[-3000:]
