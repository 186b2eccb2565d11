"""The consumer loop and its steps with in-memory parts (no network, no private methods): the
guarantees of the real consumer, checked where every failure can be staged exactly."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import KafkaError
from fakes import FakeKafka, FakeMessage, MemoryProducer, MemoryStore

from footprint.cli import assemble_consumer
from footprint.contract import encode_event, make_event
from footprint.deadletter import DeadLetters
from footprint.settings import Settings
from footprint.stores import StoreUnavailable

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SETTINGS = Settings(kafka_topic="t", batch_max_events=50, batch_max_seconds=0.05, retry_max_seconds=0.2)


def event(marker: str = "") -> tuple[str, bytes]:
    e = make_event(type="page", method="GET", link=f"/p{marker}", anonymous_id="a", footprint_time=NOW,
                   received_at=NOW)
    return e["event_id"], encode_event(e)


def wait(pred: Callable[[], bool], timeout: float = 10, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def count(metric: Any) -> float:
    """A counter's current value, read the way Prometheus reads it."""
    return float(next(s.value for s in metric.collect()[0].samples if s.name.endswith("_total")))


class Rig:
    def __init__(self, stores: list[MemoryStore], dlq: MemoryProducer | None = None, **settings: Any) -> None:
        self.kafka = FakeKafka("t")
        self.stores = stores
        self.dlq = dlq or MemoryProducer()
        self.consumer = assemble_consumer(SETTINGS.model_copy(update=settings), stores,  # type: ignore[arg-type]
                                          kafka=self.kafka, dead_letters=DeadLetters(self.dlq, "t.dlq", 10_000))
        self.thread = threading.Thread(target=self.consumer.run, daemon=True)

    def fill(self, n: int, partition: int | None = None) -> list[str]:
        ids = []
        for i in range(n):
            key, value = event(str(i))
            self.kafka.append(i % 3 if partition is None else partition, value)
            ids.append(key)
        return ids

    def caught_up(self) -> bool:
        return {p: self.kafka.committed_offsets.get(p) for p in self.kafka.end_offsets()} == self.kafka.end_offsets()


@contextmanager
def running(rig: Rig) -> Iterator[Rig]:
    rig.thread.start()
    try:
        yield rig
    finally:
        rig.consumer.stop.set()
        rig.thread.join(10)
        assert not rig.thread.is_alive()


def test_every_event_reaches_every_store_once_and_offsets_follow() -> None:
    rig = Rig([MemoryStore("pg"), MemoryStore("ch")])
    ids = rig.fill(500)
    with running(rig):
        wait(rig.caught_up, what="everything committed")
    assert all(set(s.rows) == set(ids) for s in rig.stores)
    assert all(len(c) <= 3 for c in rig.kafka.commits) and rig.consumer.batches_committed == len(rig.kafka.commits)
    assert rig.dlq.delivered == []


def test_poison_messages_are_dead_lettered_and_committed_past() -> None:
    rig = Rig([MemoryStore("pg"), MemoryStore("ch")])
    good = rig.fill(30)
    for value in (b"{nope", None, b'{"event_id": "x"}'):
        rig.kafka.append(1, value)
    good += rig.fill(30)
    with running(rig):
        wait(rig.caught_up, what="committed past the poison")
    assert [r["headers"]["footprint.source.partition"] for r in rig.dlq.delivered] == [b"1"] * 3
    assert all(set(s.rows) == set(good) for s in rig.stores)


def test_an_event_one_healthy_store_refuses_is_dead_lettered_and_the_rest_stored() -> None:
    picky = MemoryStore("ch", refuse=b"/p7\"")
    rig = Rig([MemoryStore("pg"), picky])
    ids = rig.fill(20, partition=0)
    with running(rig):
        wait(rig.caught_up, what="committed")
    [letter] = rig.dlq.delivered
    assert b"ch refused it: ch cannot store that" in letter["headers"]["footprint.reason"]
    assert set(picky.rows) == set(ids) - {ids[7]}


def test_an_outage_commits_nothing_retries_only_that_store_and_then_catches_up() -> None:
    pg, ch = MemoryStore("pg"), MemoryStore("ch")
    rig = Rig([pg, ch])
    first = rig.fill(60)
    with running(rig):
        wait(rig.caught_up, what="first events")
        ch.down.set()
        committed = dict(rig.kafka.committed_offsets)
        more = rig.fill(40)
        wait(lambda: count(rig.consumer.metrics.store_errors.labels("ch")) >= 3, what="retries")
        assert rig.kafka.committed_offsets == committed  # nothing committed while a store is down
        pg_writes = pg.writes
        time.sleep(0.5)
        assert pg.writes == pg_writes  # the healthy store is not written again and again
        assert rig.consumer.retrying_seconds() > 0
        ch.down.clear()
        wait(rig.caught_up, what="catch-up")
        assert rig.consumer.retrying_seconds() == 0
    assert set(pg.rows) == set(ch.rows) == set(first + more)


class SlowStore(MemoryStore):
    """A store whose writes take ``seconds`` and wait while ``hold`` is set; it records the batches in the order it
    took them."""

    def __init__(self, name: str, seconds: float = 0.0) -> None:
        super().__init__(name)
        self.seconds = seconds
        self.hold = threading.Event()
        self.batches: list[list[str]] = []

    def write(self, docs: dict[str, bytes]) -> int:
        self.batches.append(list(docs))
        time.sleep(self.seconds)
        while self.hold.is_set():
            time.sleep(0.005)
        return super().write(docs)


def test_a_store_writes_the_next_batch_while_the_other_is_slow_and_commits_wait_for_both() -> None:
    fast, slow = SlowStore("pg"), SlowStore("ch")
    rig = Rig([fast, slow], batch_max_events=10, batch_max_seconds=30)  # a batch is due at 10 events
    slow.hold.set()
    with running(rig):
        first = rig.fill(10, partition=0)
        wait(lambda: len(slow.batches) == 1 and len(fast.rows) == 10, what="the first batch in both")
        second = rig.fill(10, partition=0)
        wait(lambda: len(fast.rows) == 20, what="the fast store ahead by one batch")
        assert rig.kafka.commits == []  # neither batch is in the slow store yet
        third = rig.fill(10, partition=0)
        time.sleep(0.3)
        assert set(fast.rows) == set(first + second)  # two batches at most in the stores at once
        slow.hold.clear()
        wait(rig.caught_up, what="all committed")
    assert set(fast.rows) == set(slow.rows) == set(first + second + third)
    assert fast.batches == slow.batches == [first, second, third]  # each store in the batches' order
    assert [c for c, in rig.kafka.commits] == [(0, 10), (0, 20), (0, 30)]  # every batch's offsets, in order


def test_an_outage_of_one_store_with_two_batches_in_flight_loses_nothing() -> None:
    pg, ch = MemoryStore("pg"), MemoryStore("ch")
    rig = Rig([pg, ch], batch_max_events=10, batch_max_seconds=30)
    ch.down.set()
    with running(rig):
        ids = rig.fill(10, partition=0) + rig.fill(10, partition=0) + rig.fill(10, partition=0)
        wait(lambda: count(rig.consumer.metrics.store_errors.labels("ch")) >= 3, what="retries")
        wait(lambda: len(pg.rows) == 20, what="the healthy store two batches ahead")
        assert rig.kafka.commits == []
        ch.down.clear()
        wait(rig.caught_up, what="catch-up")
    assert set(pg.rows) == set(ch.rows) == set(ids)
    assert [c for c, in rig.kafka.commits] == [(0, 10), (0, 20), (0, 30)]


def test_reading_pauses_when_the_next_batch_is_full_and_a_store_is_down() -> None:
    ch = MemoryStore("ch")
    rig = Rig([MemoryStore("pg"), ch], batch_max_events=20)
    with running(rig):
        ch.down.set()
        rig.fill(200)
        wait(lambda: rig.kafka.paused == {0, 1, 2}, what="paused")
        ch.down.clear()
        wait(rig.caught_up, what="catch-up")
        wait(lambda: rig.kafka.paused == set(), what="resumed")


def test_a_store_slower_than_reading_holds_messages_back_without_pausing() -> None:
    """Reading outruns a busy (not down) store: the loop stops taking messages while the store pushes back, but
    never pauses the partitions for a push back shorter than ``PAUSE_AFTER_SECONDS`` (a pause throws librdkafka's
    prefetched messages away and its fetcher takes ~0.5 s to start again: the stores idle)."""
    slow = SlowStore("ch", 0.05)
    rig = Rig([MemoryStore("pg"), slow], batch_max_events=20)
    ids = rig.fill(600)
    with running(rig):
        wait(rig.caught_up, what="catch-up")
        assert rig.kafka.pauses == 0  # (stopping pauses: the loop drains what it holds and reads no more)
    assert slow.writes >= 30  # every event written, in batches of at most 20
    assert set(slow.rows) == set(rig.stores[0].rows) == set(ids)


def test_stop_during_an_outage_commits_nothing() -> None:
    ch = MemoryStore("ch")
    rig = Rig([MemoryStore("pg"), ch])
    ch.down.set()
    rig.fill(30)
    with running(rig):
        wait(lambda: count(rig.consumer.metrics.store_errors.labels("ch")) >= 1, what="an outage")
    assert rig.kafka.commits == [] and rig.kafka.closed


def test_stop_finishes_and_commits_what_is_in_memory() -> None:
    rig = Rig([MemoryStore("pg"), MemoryStore("ch")], batch_max_seconds=30)  # never due by time
    ids = rig.fill(10)
    with running(rig):
        wait(lambda: count(rig.consumer.metrics.consumed) == 10, what="read")
    assert rig.caught_up() and set(rig.stores[0].rows) == set(ids)


def test_a_revoked_partition_is_forgotten_and_never_committed_again() -> None:
    rig = Rig([MemoryStore("pg"), MemoryStore("ch")], batch_max_seconds=30)
    rig.fill(9)
    with running(rig):
        wait(lambda: count(rig.consumer.metrics.consumed) == 9, what="read")
        rig.kafka.revoke(2)  # before the batch is due: its messages of partition 2 must go
        wait(lambda: rig.consumer.assigned == [("t", 0), ("t", 1)], what="revoked")
    assert rig.kafka.commits and all(p != 2 for c in rig.kafka.commits for p, _ in c)
    assert 2 not in rig.kafka.committed_offsets


def test_a_full_dead_letter_topic_outage_is_retried_not_skipped() -> None:
    from confluent_kafka import KafkaError

    down = threading.Event()
    down.set()
    dlq = MemoryProducer(errors=lambda _v: KafkaError(KafkaError._MSG_TIMED_OUT) if down.is_set() else None)
    rig = Rig([MemoryStore("pg")], dlq=dlq)
    rig.kafka.append(0, b"{bad")
    with running(rig):
        wait(lambda: count(rig.consumer.metrics.store_errors.labels("dlq")) >= 2, what="dlq retries")
        assert rig.kafka.commits == []
        down.clear()
        wait(rig.caught_up, what="dead letter acknowledged, then committed")
    assert len(dlq.delivered) == 1


def test_ids_are_unique_per_batch_first_wins() -> None:
    rig = Rig([MemoryStore("pg")])
    key = str(uuid.uuid4())
    for link in ("/first", "/second"):
        e = make_event(type="page", event_id=key, link=link, anonymous_id="a", footprint_time=NOW, received_at=NOW)
        rig.kafka.append(0, encode_event(e))
    with running(rig):
        wait(rig.caught_up, what="committed")
    assert b'"/first"' in rig.stores[0].rows[key]


def test_a_failed_offset_commit_is_counted_and_the_consumer_goes_on() -> None:
    from confluent_kafka import KafkaError, KafkaException

    rig = Rig([MemoryStore("pg")])
    failures = {"left": 1}
    real_commit = rig.kafka.commit

    def flaky_commit(offsets: Any, asynchronous: bool = False) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise KafkaException(KafkaError(KafkaError.REBALANCE_IN_PROGRESS))
        real_commit(offsets, asynchronous)

    rig.kafka.commit = flaky_commit  # type: ignore[method-assign]
    rig.fill(5)
    with running(rig):
        wait(lambda: count(rig.consumer.metrics.commit_failures) == 1, what="the failed commit")
        rig.fill(5)
        wait(rig.caught_up, what="later batches committed")


@pytest.mark.parametrize(("code", "kind", "name"), [(KafkaError.GROUP_AUTHORIZATION_FAILED, "group", "g1"),
                                                    (KafkaError.TOPIC_AUTHORIZATION_FAILED, "topic", "t")])
def test_a_group_or_topic_kafka_refuses_stops_the_consumer_naming_the_acl(code: int, kind: str, name: str) -> None:
    """Not one warning and an idle consumer: it exits (2, systemd starts it again), saying what to add."""
    rig = Rig([MemoryStore("pg"), MemoryStore("ch")], kafka_group="g1", kafka_consumer_user="footprint-consumer")
    rig.fill(3)
    rig.kafka.logs[1].append(FakeMessage("t", 1, 1, None, None, KafkaError(code)))
    failure: list[BaseException] = []

    def run() -> None:
        try:
            rig.consumer.run()
        except BaseException as exc:  # the test looks at what ended the loop
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive() and rig.kafka.closed
    assert len(failure) == 1 and isinstance(failure[0], StoreUnavailable)
    message = str(failure[0])
    assert f"Read on the {kind} '{name}'" in message and "User:footprint-consumer" in message
    assert f"FOOTPRINT_KAFKA_{kind.upper()}" in message
