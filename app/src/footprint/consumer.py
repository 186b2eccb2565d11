"""The consumer: Kafka -> (PostgreSQL AND ClickHouse), commit only after both accepted the batch."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from footprint.metrics import ConsumerMetrics
from footprint.schema import decode_event
from footprint.settings import Settings
from footprint.sinks import DataRejected

log = logging.getLogger("footprint.consumer")


class Sink(Protocol):
    name: str

    def write(self, docs: list[bytes]) -> int: ...
    def close(self) -> None: ...


def consumer_config(settings: Settings) -> dict[str, Any]:
    return {
        "bootstrap.servers": settings.kafka_bootstrap,
        "group.id": settings.kafka_group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "max.poll.interval.ms": 300_000,
        "fetch.max.bytes": 52_428_800,
        "queued.min.messages": 20_000,
        "client.id": "footprint-consumer",
        "logger": logging.getLogger("footprint.librdkafka"),
    }


def dlq_config(settings: Settings) -> dict[str, Any]:
    return {
        "bootstrap.servers": settings.kafka_bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "client.id": "footprint-dlq",
        "logger": logging.getLogger("footprint.librdkafka"),
    }


@dataclass
class Batch:
    """Messages read but not yet committed; rebalances drop revoked partitions from it."""

    messages: list[Message] = field(default_factory=list)
    docs: dict[Any, bytes] = field(default_factory=dict)  # event_id -> validated JSON value
    origin: dict[Any, Message] = field(default_factory=dict)
    bad: list[tuple[Message, str]] = field(default_factory=list)
    done: set[str] = field(default_factory=set)  # sinks that accepted the batch
    writes: dict[str, Future[int]] = field(default_factory=dict)

    def drop_partitions(self, parts: set[tuple[str, int]]) -> int:
        """Forget the messages of revoked partitions: their docs, and their pending dead letters
        (the new owner re-reads, re-validates and dead-letters them itself)."""

        def revoked(m: Message) -> bool:
            return (m.topic(), m.partition()) in parts

        before = len(self.messages)
        self.messages = [m for m in self.messages if not revoked(m)]
        self.bad = [(m, reason) for m, reason in self.bad if not revoked(m)]
        for key in [k for k, m in self.origin.items() if revoked(m)]:
            del self.origin[key]
            self.docs.pop(key, None)
        return before - len(self.messages)

    def offsets(self) -> list[TopicPartition]:
        """Next offset to read per partition (what gets committed)."""
        nxt: dict[tuple[str, int], int] = {}
        for m in self.messages:
            key = (m.topic() or "", m.partition() or 0)
            nxt[key] = max(nxt.get(key, 0), (m.offset() or 0) + 1)
        return [TopicPartition(t, p, o) for (t, p), o in sorted(nxt.items())]


class StoreOutage(Exception):
    pass


class BatchConsumer:
    """Runs the consume loop until ``stop`` is set.

    Pipeline: while batch N is being written (both stores concurrently, in threads), batch N+1 is
    read and validated. Batch N's offsets are committed only after PostgreSQL, ClickHouse and (for
    bad messages) the dead-letter topic all accepted it, and always before batch N+1's. A failure
    pauses the partitions and retries batch N with backoff. On revocation the uncommitted messages
    of revoked partitions are forgotten (the new owner re-reads them from the committed offset;
    both stores deduplicate by event_id).
    """

    def __init__(
        self,
        settings: Settings,
        sinks: list[Sink],
        metrics: ConsumerMetrics | None = None,
        consumer: Consumer | None = None,
    ) -> None:
        self.settings = settings
        self.sinks = sinks
        self.metrics = metrics or ConsumerMetrics()
        self.consumer = consumer or Consumer(consumer_config(settings))
        self.dlq = Producer(dlq_config(settings))
        self.stop = threading.Event()
        self._carry: list[Message] = []
        self._live: list[Batch] = []  # batches in memory, oldest first
        self.batches_committed = 0
        self._pool = ThreadPoolExecutor(max_workers=max(len(sinks), 1), thread_name_prefix="sink")

    # ------------------------------------------------------------------ rebalance
    def _on_revoke(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        revoked = {(p.topic, p.partition) for p in parts}
        dropped = sum(b.drop_partitions(revoked) for b in self._live)
        before = len(self._carry)
        self._carry = [m for m in self._carry if (m.topic(), m.partition()) not in revoked]
        dropped += before - len(self._carry)
        log.info("partitions revoked", extra={"partitions": sorted(revoked), "uncommitted_dropped": dropped})

    def _on_assign(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        log.info("partitions assigned", extra={"partitions": sorted((p.topic, p.partition) for p in parts)})

    def subscribe(self) -> None:
        self.consumer.subscribe([self.settings.kafka_topic], on_assign=self._on_assign, on_revoke=self._on_revoke)

    # ------------------------------------------------------------------ loop
    def run(self) -> None:
        self.subscribe()
        inflight: Batch | None = None
        try:
            while True:
                nxt = self._collect() if not self.stop.is_set() else None
                if nxt is not None:
                    self._prepare(nxt)
                if inflight is not None and not self._finish(inflight):
                    return  # stopped during an outage: nothing more is committed
                inflight = None
                if nxt is not None:
                    self._start_writes(nxt)
                    inflight = nxt
                if self.stop.is_set() and inflight is None:
                    return
        finally:
            self.close()

    def _accept(self, batch: Batch, msgs: list[Message]) -> None:
        for m in msgs:
            err = m.error()
            if err is None:
                batch.messages.append(m)
            elif err.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error", extra={"error": str(err)})

    def _collect(self) -> Batch | None:
        """Read up to the size bound, or until the time bound after the batch's first message."""
        s = self.settings
        batch = Batch()
        self._live.append(batch)
        self._accept(batch, self._carry)
        self._carry = []
        deadline: float | None = time.monotonic() + s.batch_max_seconds if batch.messages else None
        while len(batch.messages) < s.batch_max_events and not self.stop.is_set():
            if deadline is None:
                timeout = 0.5
            else:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    break
            if self._live[0] is not batch:
                timeout = min(timeout, 0.05)  # look at the previous batch's writes often
            msgs = self.consumer.consume(num_messages=s.batch_max_events - len(batch.messages), timeout=timeout)
            self._accept(batch, msgs)
            if deadline is None and batch.messages:
                deadline = time.monotonic() + s.batch_max_seconds
            if self._live[0] is not batch and all(f.done() for f in self._live[0].writes.values()):
                break  # the previous batch is written: hand it over for commit without delay
        if not batch.messages:
            self._live.remove(batch)
            return None
        return batch

    def _prepare(self, batch: Batch) -> None:
        """Validate every message: good ones become docs (deduplicated by event_id), bad ones DLQ entries."""
        for m in batch.messages:
            value = m.value()
            try:
                ev = decode_event(value)
            except ValueError as exc:
                batch.bad.append((m, str(exc)[:1000]))
                continue
            if ev.event_id not in batch.docs and value is not None:
                batch.docs[ev.event_id] = value
                batch.origin[ev.event_id] = m
        self.metrics.consumed.inc(len(batch.messages))

    def _start_writes(self, batch: Batch) -> None:
        docs = list(batch.docs.values())
        if not docs:
            return
        for sink in self.sinks:
            if sink.name not in batch.done:
                batch.writes[sink.name] = self._pool.submit(sink.write, docs)

    def _collect_writes(self, batch: Batch) -> None:
        """Wait for the batch's writes; raise the first non-data failure after all finished."""
        if not batch.docs:
            batch.done.update(s.name for s in self.sinks)
            return
        errors: list[tuple[Sink, BaseException]] = []
        for sink in self.sinks:
            if sink.name in batch.done:
                continue
            future = batch.writes.pop(sink.name, None)
            if future is None:
                future = self._pool.submit(sink.write, list(batch.docs.values()))
            exc = future.exception()
            if exc is None:
                batch.done.add(sink.name)
            else:
                errors.append((sink, exc))
        for sink, exc in errors:
            if isinstance(exc, DataRejected):
                self._isolate(sink, batch)
                batch.done.add(sink.name)
        rest = [exc for _s, exc in errors if not isinstance(exc, DataRejected)]
        if rest:
            raise rest[0]

    def _finish(self, batch: Batch) -> bool:
        """Make sure every store (and the DLQ) accepted ``batch``, then commit it. False = gave up on stop."""
        started = time.monotonic()
        delay = 0.5
        paused: list[TopicPartition] = []
        dlq_sent: set[tuple[str, int, int]] = set()  # (topic, partition, offset) acknowledged by the DLQ
        while True:
            try:
                self._collect_writes(batch)
                self._dead_letter(batch.bad, dlq_sent)
                break
            except Exception as exc:  # a store / DLQ outage: pause, back off, retry what is missing
                failed = next((s.name for s in self.sinks if s.name not in batch.done), "dlq")
                self.metrics.store_errors.labels(failed).inc()
                log.warning(
                    "store write failed; batch kept, retrying",
                    extra={"store": failed, "error": str(exc).strip()[:300], "retry_in": delay,
                           "batch": len(batch.messages)},
                )
                if not paused:
                    paused = self.consumer.assignment()
                    if paused:
                        self.consumer.pause(paused)
                self._wait(delay)
                if self.stop.is_set():
                    log.warning("stopping during an outage: batch not committed, it will be re-read",
                                extra={"batch": len(batch.messages)})
                    return False
                delay = min(delay * 2, self.settings.retry_max_seconds)
        if paused:
            current = self.consumer.assignment()
            if current:
                self.consumer.resume(current)
        self._commit(batch)
        self._live.remove(batch)
        self.metrics.stored.inc(len(batch.docs))
        self.metrics.dead_lettered.inc(len(dlq_sent))
        self.metrics.batch_seconds.observe(time.monotonic() - started)
        return True

    def _isolate(self, sink: Sink, batch: Batch) -> None:
        """Bisect a batch a store refused: store what it accepts, dead-letter what it rejects."""
        rejected: list[tuple[Any, str]] = []

        def split(keys: list[Any]) -> None:
            try:
                sink.write([batch.docs[k] for k in keys])
            except DataRejected as exc:
                if len(keys) == 1:
                    rejected.append((keys[0], f"{sink.name} rejected: {exc}"[:1000]))
                    return
                mid = len(keys) // 2
                split(keys[:mid])
                split(keys[mid:])

        split(list(batch.docs))
        for key, reason in rejected:
            batch.bad.append((batch.origin.pop(key), reason))
            del batch.docs[key]
        log.warning("store rejected events; dead-lettering them",
                    extra={"store": sink.name, "rejected": len(rejected)})

    def _wait(self, seconds: float) -> None:
        """Sleep while serving the group (keeps membership; rebalance callbacks run here)."""
        end = time.monotonic() + seconds
        while not self.stop.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return
            msgs = self.consumer.consume(num_messages=1000, timeout=min(left, 0.2))
            self._carry.extend(m for m in msgs if m.error() is None)

    def _dead_letter(self, bad: list[tuple[Message, str]], sent: set[tuple[str, int, int]]) -> None:
        if not bad:
            return
        failures: list[str] = []

        def report(key: tuple[str, int, int]) -> Callable[[KafkaError | None, Message], None]:
            def cb(err: KafkaError | None, _msg: Message) -> None:
                if err is None:
                    sent.add(key)
                else:
                    failures.append(str(err))
            return cb

        keys = [(m.topic() or "", m.partition() or 0, m.offset() or 0) for m, _reason in bad]
        for key, (m, reason) in zip(keys, bad, strict=True):
            if key in sent:
                continue
            self.dlq.produce(
                self.settings.kafka_dlq_topic,
                key=m.key(),
                value=m.value(),
                headers=[
                    ("footprint.reason", reason.encode()),
                    ("footprint.source.topic", (m.topic() or "").encode()),
                    ("footprint.source.partition", str(m.partition()).encode()),
                    ("footprint.source.offset", str(m.offset()).encode()),
                ],
                on_delivery=report(key),
            )
            log.warning("message dead-lettered", extra={"reason": reason[:200], "partition": m.partition(),
                                                        "offset": m.offset()})
        left = self.dlq.flush(30)
        if left or failures or not sent.issuperset(keys):
            raise StoreOutage(f"dead-letter topic did not acknowledge: {failures[:1] or left}")

    def _commit(self, batch: Batch) -> None:
        offsets = batch.offsets()
        if not offsets:
            return
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
            self.batches_committed += 1
        except KafkaException as exc:
            # data is stored; a redelivery after the rebalance is deduplicated by event_id
            self.metrics.commit_failures.inc()
            log.warning("offset commit failed", extra={"error": str(exc), "batch": len(batch.messages),
                                                       "offsets": [(tp.partition, tp.offset) for tp in offsets]})

    def close(self) -> None:
        try:
            self.consumer.close()
        finally:
            self.dlq.flush(10)
            self._pool.shutdown(wait=True)
            for sink in self.sinks:
                sink.close()
