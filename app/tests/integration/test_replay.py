"""``footprint replay`` against real Kafka, PostgreSQL and the ClickHouse engine.

The group's offsets go back (to the earliest, or to a time) as the consumer's own static member,
without waiting for the stopped consumer's session; a consumer started after it reads everything
again and stores nothing twice. Dead letters (written by the consumer's own ``DeadLetters``) are
re-driven once into both stores, cut ones from their source message; erased users' events are not
stored; what still fails is counted by reason. A running local consumer makes the replay refuse.
Row counts are raw (no FINAL), of the test's own event ids.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client import CollectorRegistry

from footprint.contract import encode_event, kafka_timestamp, make_event
from footprint.deadletter import DeadLetters, dlq_producer_config
from footprint.httpd import serve
from footprint.replay import reset_group
from footprint.replaydlq import redrive
from footprint.settings import Settings
from footprint.stores import pg_connect
from helpers import (
    RunningConsumer,
    caught_up,
    ch_ids,
    committed,
    end_offsets,
    gen_events,
    pg_ids,
    produce,
    settings_env,
    wait_for,
)
from services import free_port

FOOTPRINT = [sys.executable, "-m", "footprint.cli"]


def _static(settings: Settings) -> Settings:
    return settings.model_copy(update={"kafka_group_instance_id": f"replay-{uuid.uuid4().hex[:8]}"})


def _counts(settings: Settings, ids: list[str]) -> tuple[dict[str, int], dict[str, int]]:
    return pg_ids(settings, ids), ch_ids(settings, ids, final=False)


def test_replay_from_earliest_takes_over_the_static_membership_at_once_and_stores_nothing_twice(
        settings: Settings) -> None:
    s = _static(settings)
    events = gen_events(30, seed=321)
    ids = [str(e["event_id"]) for e in events]
    produce(s, events)
    with RunningConsumer(s) as rc:
        wait_for(lambda: caught_up(s), 60, "consumer caught up")
        rc.stop()
    ends = end_offsets(s)
    assert _counts(s, ids) == ({i: 1 for i in ids}, {i: 1 for i in ids})

    started = time.monotonic()  # the stopped static member still holds the group (no LeaveGroup)
    run = subprocess.run([*FOOTPRINT, "replay", "--from", "earliest"], env=settings_env(s), capture_output=True,
                         text=True, timeout=60)
    took = time.monotonic() - started
    assert run.returncode == 0, run.stdout + run.stderr
    assert took < 15, f"replay took {took:.1f} s: it waited for the old member's session"
    for p, end in ends.items():
        assert f"{s.kafka_topic}[{p}]: {end if end else 'none'} -> 0" in run.stdout, run.stdout
    assert committed(s) == {p: 0 for p in ends}

    with RunningConsumer(s) as rc:  # takes the membership back at once and reads everything again
        wait_for(lambda: caught_up(s), 30, "consumer caught up again")
        assert rc.consumer.batches_committed > 0
    assert _counts(s, ids) == ({i: 1 for i in ids}, {i: 1 for i in ids})


def test_replay_from_a_time_moves_each_partition_to_its_first_offset_at_or_after_it(settings: Settings) -> None:
    s = _static(settings)
    now = datetime.now(UTC).replace(microsecond=0)
    old, new, cut = now - timedelta(hours=2), now - timedelta(minutes=30), now - timedelta(hours=1)
    p = Producer({"bootstrap.servers": s.kafka_bootstrap, "enable.idempotence": True, "acks": "all"})
    for partition, (n_old, n_new) in {0: (5, 3), 1: (4, 0), 2: (0, 2)}.items():
        for when in [old] * n_old + [new] * n_new:
            e = make_event(type="page", event_id=uuid.uuid4(), link="/", anonymous_id="a", footprint_time=when,
                           received_at=when)
            p.produce(s.kafka_topic, value=encode_event(e), key=str(e["event_id"]), partition=partition,
                      timestamp=kafka_timestamp(when))
    assert p.flush(30) == 0

    lines: list[str] = []
    plan = reset_group(s, cut, dry_run=True, out=lines.append)
    assert not plan.committed and {r.partition: r.new for r in plan.resets} == {0: 5, 1: 4, 2: 0}, lines
    assert all(o < 0 for o in committed(s).values())  # the dry run committed nothing

    done = reset_group(s, cut, out=lines.append)
    assert done.committed and done.exit_code == 0 and not done.unassigned
    assert committed(s) == {0: 5, 1: 4, 2: 0}


def _dead_letter(settings: Settings, messages: list[Any]) -> None:
    """Dead-letter ``messages`` as the consumer does (its ``DeadLetters``, its headers, cut to size)."""
    dlq = DeadLetters(Producer(dlq_producer_config(settings.kafka_bootstrap)), settings.kafka_dlq_topic,
                      settings.dlq_max_value_bytes)
    dlq.send([(m, "clickhouse refused it: (before the fix)") for m in messages], set())


class _Gone:
    """A source message the events topic no longer holds (its offset is past the end)."""

    def __init__(self, topic: str, value: bytes) -> None:
        self._topic, self._value = topic, value

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 1_000_000

    def key(self) -> bytes:
        return b"gone"

    def value(self) -> bytes:
        return self._value

    def timestamp(self) -> tuple[int, int]:
        return (0, 0)


def test_dead_letters_are_re_driven_once_into_both_stores_without_erased_users(settings: Settings) -> None:
    s = settings.model_copy(update={"dlq_max_value_bytes": 1024})
    erased_user = f"erased-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    kept, erased, big = (make_event(type="track", event_id=uuid.uuid4(), event="Fixed", anonymous_id="a",
                                    user_id=user, properties=props, footprint_time=now, received_at=now)
                         for user, props in (("u1", {}), (erased_user, {}), ("u2", {"blob": "x" * 3000})))
    ids = [str(e["event_id"]) for e in (kept, erased, big)]
    p = Producer({"bootstrap.servers": s.kafka_bootstrap, "enable.idempotence": True, "acks": "all"})
    for value in (encode_event(kept), encode_event(erased), encode_event(big), b"{nope"):
        p.produce(s.kafka_topic, value=value, partition=0)
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": s.kafka_bootstrap, "group.id": "read-" + s.kafka_group})
    c.assign([TopicPartition(s.kafka_topic, 0, 0)])
    sources = c.consume(4, timeout=10)
    c.close()
    assert len(sources) == 4
    _dead_letter(s, [*sources, _Gone(s.kafka_topic, encode_event(big))])
    with pg_connect(s.pg_owner_dsn.get_secret_value(), "owner") as conn:
        conn.execute("INSERT INTO erasure_requests (job_id, user_id, keep_until) VALUES (%s, %s, now() + '1 hour')",
                     (str(uuid.uuid4()), erased_user))
    try:
        lines: list[str] = []
        first = redrive(s, None, out=lines.append)
        assert first.read == 5 and first.erased == 1, lines
        assert first.stored == {"postgres": 2, "clickhouse": 2} and sum(first.already.values()) == 0, lines
        assert sum(first.failing.values()) == 2 and first.exit_code == 1, lines
        assert any("JSON" in reason for reason in first.failing), lines
        assert any("no longer in" in reason for reason in first.failing), lines
        stored = {ids[0]: 1, ids[2]: 1}
        assert _counts(s, ids) == (stored, stored)

        second = redrive(s, None, out=lines.append)
        assert second.stored == {"postgres": 0, "clickhouse": 0}, lines
        assert second.already == {"postgres": 2, "clickhouse": 2}, lines
        assert _counts(s, ids) == (stored, stored)
    finally:
        with pg_connect(s.pg_owner_dsn.get_secret_value(), "owner") as conn:
            conn.execute("DELETE FROM erasure_requests WHERE user_id = %s", (erased_user,))


def test_a_running_local_consumer_makes_replay_refuse(settings: Settings) -> None:
    port = free_port()
    httpd = serve("127.0.0.1", port, CollectorRegistry(), lambda: (False, {"status": "retrying"}))
    try:
        run = subprocess.run([*FOOTPRINT, "replay", "--from", "earliest"],
                             env=settings_env(settings, consumer_http_port=port), capture_output=True, text=True,
                             timeout=60)
    finally:
        httpd.shutdown()
    assert run.returncode == 2, run.stdout + run.stderr
    assert "stop it first: sudo systemctl stop footprint-consumer" in run.stderr
    assert all(o < 0 for o in committed(settings).values())
