"""The consumer: Kafka -> (PostgreSQL AND ClickHouse), commit only after both accepted the batch.

Data or outage is decided by the store itself, never by a list of error codes: when a write
fails, the sink is asked to take a known-good event (``probe``). If it cannot, the store is down:
the partitions pause and the batch is retried with backoff, nothing is skipped. If it can, the
batch is bisected down to the events that store refuses; those (and only those) are dead-lettered
with the store's reason and their offsets committed, so no message can stall the consumer.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from footprint.deadletter import DeadLetters, dlq_producer_config
from footprint.metrics import ConsumerMetrics
from footprint.schema import decode_message
from footprint.settings import Settings

log = logging.getLogger("footprint.consumer")

Docs = dict[str, bytes]
Rejected = list[tuple[str, str]]  # (event_id, why the store refused it)


class Sink(Protocol):
    name: str

    def write(self, docs: Docs) -> int: ...
    def probe(self) -> None: ...
    def close(self) -> None: ...


def consumer_config(settings: Settings) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "group.id": settings.kafka_group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "max.poll.interval.ms": 300_000,
        "session.timeout.ms": settings.kafka_session_timeout_ms,
        "fetch.max.bytes": 52_428_800,
        "queued.min.messages": 20_000,
        "client.id": "footprint-consumer",
        "logger": logging.getLogger("footprint.librdkafka"),
    }
    if settings.kafka_group_instance_id:
        config["group.instance.id"] = settings.kafka_group_instance_id
    return config


@dataclass
class Batch:
    """Messages read but not yet committed; rebalances drop revoked partitions from it."""

    messages: list[Message] = field(default_factory=list)
    docs: Docs = field(default_factory=dict)  # event_id -> canonical document
    origin: dict[str, Message] = field(default_factory=dict)
    bad: list[tuple[Message, str]] = field(default_factory=list)
    done: set[str] = field(default_factory=set)  # sinks that accepted the batch
    writes: dict[str, Future[Rejected]] = field(default_factory=dict)

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

    def reject(self, rejected: Rejected) -> None:
        """Move refused events from the docs to the dead letters."""
        for key, reason in rejected:
            if key in self.docs:
                del self.docs[key]
                self.bad.append((self.origin.pop(key), reason))


class StoreOutage(Exception):
    """A store cannot take even a known-good event: pause and retry, never skip."""


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def store(sink: Sink, docs: Docs) -> Rejected:
    """Write ``docs`` to ``sink``; returns the events a healthy store refused, with its reasons.

    Raises ``StoreOutage`` when the store does not take its known-good probe event either.
    """
    try:
        sink.write(docs)
        return []
    except Exception as exc:
        _require_up(sink, exc)
        first = _short(exc)
    rejected: Rejected = []

    def split(keys: list[str]) -> None:
        mid = len(keys) // 2
        for part in (keys[:mid], keys[mid:]):
            try:
                sink.write({k: docs[k] for k in part})
            except Exception as exc:
                _require_up(sink, exc)
                if len(part) == 1:
                    rejected.append((part[0], f"{sink.name} refused it: {_short(exc)}"))
                else:
                    split(part)

    if len(docs) == 1:
        rejected.append((next(iter(docs)), f"{sink.name} refused it: {first}"))
    else:
        split(list(docs))
    log.warning("store refused events; dead-lettering them", extra={"store": sink.name, "rejected": len(rejected)})
    return rejected


def _require_up(sink: Sink, exc: BaseException) -> None:
    try:
        sink.probe()
    except Exception as probe_exc:
        raise StoreOutage(f"{sink.name}: {_short(exc)}") from probe_exc


class BatchConsumer:
    """Runs the consume loop until ``stop`` is set.

    Pipeline: while batch N is being written (both stores concurrently, in threads), batch N+1 is
    read and validated. Batch N's offsets are committed only after PostgreSQL, ClickHouse and (for
    bad messages) the dead-letter topic all accepted it, and always before batch N+1's. An outage
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
        dead_letters: DeadLetters | None = None,
    ) -> None:
        self.settings = settings
        self.sinks = sinks
        self.metrics = metrics or ConsumerMetrics()
        self.consumer = consumer or Consumer(consumer_config(settings))
        self.dead_letters = dead_letters or DeadLetters(
            Producer(dlq_producer_config(settings.kafka_bootstrap)), settings.kafka_dlq_topic,
            settings.dlq_max_value_bytes,
        )
        self.stop = threading.Event()
        self._carry: list[Message] = []
        self._live: list[Batch] = []  # batches in memory, oldest first
        self.batches_committed = 0
        self.assigned: list[tuple[str, int]] = []
        self.retrying_since: float | None = None  # monotonic time the current batch started failing
        self._pool = ThreadPoolExecutor(max_workers=max(len(sinks), 1), thread_name_prefix="sink")
        self.metrics.retrying_seconds.set_function(self.retrying_seconds)

    def retrying_seconds(self) -> float:
        """How long the current batch has been retried (0: it is not)."""
        since = self.retrying_since
        return 0.0 if since is None else time.monotonic() - since

    # ------------------------------------------------------------------ rebalance
    def _on_revoke(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        revoked = {(p.topic, p.partition) for p in parts}
        dropped = sum(b.drop_partitions(revoked) for b in self._live)
        before = len(self._carry)
        self._carry = [m for m in self._carry if (m.topic(), m.partition()) not in revoked]
        dropped += before - len(self._carry)
        self.assigned = [tp for tp in self.assigned if tp not in revoked]
        log.info("partitions revoked", extra={"partitions": sorted(revoked), "uncommitted_dropped": dropped})

    def _on_assign(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        self.assigned = sorted({*self.assigned, *((p.topic, p.partition) for p in parts)})
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
        """Validate every message against the contract: good ones become canonical docs
        (deduplicated by event_id, first wins), bad ones dead letters."""
        for m in batch.messages:
            try:
                key, doc = decode_message(m.value())
            except ValueError as exc:
                batch.bad.append((m, str(exc)[:1000]))
                continue
            if key not in batch.docs:
                batch.docs[key] = doc
                batch.origin[key] = m
        self.metrics.consumed.inc(len(batch.messages))

    def _start_writes(self, batch: Batch) -> None:
        if not batch.docs:
            return
        for sink in self.sinks:
            if sink.name not in batch.done:
                batch.writes[sink.name] = self._pool.submit(store, sink, dict(batch.docs))

    def _collect_writes(self, batch: Batch) -> None:
        """Wait for the batch's writes; raise the first outage after all finished."""
        if not batch.docs:
            batch.done.update(s.name for s in self.sinks)
            return
        outages: list[BaseException] = []
        for sink in self.sinks:
            if sink.name in batch.done:
                continue
            future = batch.writes.pop(sink.name, None)
            if future is None:
                future = self._pool.submit(store, sink, dict(batch.docs))
            exc = future.exception()
            if exc is None:
                batch.reject(future.result())
                batch.done.add(sink.name)
            else:
                self.metrics.store_errors.labels(sink.name).inc()
                outages.append(exc)
        if outages:
            raise outages[0]

    def _finish(self, batch: Batch) -> bool:
        """Make sure every store (and the DLQ) accepted ``batch``, then commit it. False = gave up on stop."""
        started = time.monotonic()
        delay = 0.5
        paused: list[TopicPartition] = []
        dlq_sent: set[tuple[str, int, int]] = set()  # (topic, partition, offset) acknowledged by the DLQ
        last_alarm = 0.0
        while True:
            try:
                self._collect_writes(batch)
                self.dead_letters.send(batch.bad, dlq_sent)
                break
            except Exception as exc:  # an outage of a store or of the DLQ: pause, back off, retry what is missing
                failed = next((s.name for s in self.sinks if s.name not in batch.done), "dlq")
                if self.retrying_since is None:
                    self.retrying_since = started
                retrying = self.retrying_seconds()
                log.warning(
                    "store write failed; batch kept, retrying",
                    extra={"store": failed, "error": _short(exc), "retry_in": delay, "batch": len(batch.messages)},
                )
                if retrying >= self.settings.stuck_after_seconds and time.monotonic() - last_alarm >= 60:
                    last_alarm = time.monotonic()
                    log.error(
                        "the same batch has been retrying for a while: nothing after it is committed until "
                        f"{failed} takes it; fix {failed} (see the error), the consumer goes on by itself",
                        extra={"store": failed, "retrying_seconds": round(retrying), "error": _short(exc)},
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
        self.retrying_since = None
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

    def _wait(self, seconds: float) -> None:
        """Sleep while serving the group (keeps membership; rebalance callbacks run here)."""
        end = time.monotonic() + seconds
        while not self.stop.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return
            msgs = self.consumer.consume(num_messages=1000, timeout=min(left, 0.2))
            self._carry.extend(m for m in msgs if m.error() is None)

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
            self.dead_letters.producer.flush(10)
            self._pool.shutdown(wait=True)
            for sink in self.sinks:
                sink.close()
