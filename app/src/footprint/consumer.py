"""The consumer: Kafka -> (PostgreSQL AND ClickHouse), commit only after both accepted the batch.

A thin loop (``BatchConsumer``) owns polling, rebalance callbacks and pause/resume, and drives a
chain of small steps (``steps.py``): decode -> accumulate -> write to the stores -> dead-letter ->
commit. The Kafka client and the dead-letter producer are injected.

Data or outage is decided by the store itself, not by a list of error codes: when a write
fails, the sink is asked to take a known-good event (``probe``). If it cannot, the store is down:
that store's write is retried with backoff (the other store's is not), reading pauses once the
next batch is full, nothing is skipped. If it can, the batch is bisected down to the events that
store refuses; those (and only those) are dead-lettered with the store's reason and their offsets
committed, so no message can stall the consumer. One exception, as the probe cannot see it: a store
that says it ran out of room (``stores.exhausted``: no space left on its disk) may still take the
known-good event, which adds no row, while it refuses every new one, so such an error is an outage
whatever the probe says: retried, never bisected into dead letters.

Pause state is the loop's, applied again to every assignment: librdkafka keeps a partition paused
across a revoke and a re-assign, so a partition paused before a rebalance would otherwise stay
paused for good (issue 26). ``Progress`` tells whether the consumer moves (``stuck``); the CLI
feeds systemd's watchdog only while it does.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from footprint.batch import Batch, Docs, Partition, Rejected
from footprint.deadletter import DeadLetters, dlq_producer_config
from footprint.metrics import ConsumerMetrics
from footprint.progress import Progress
from footprint.settings import Settings
from footprint.steps import Aborted, Accumulate, Backpressure, Commit, Decode, InThread, Retry, rejected_union
from footprint.stores import StoreUnavailable, exhausted

log = logging.getLogger("footprint.consumer")

RECONCILE_SECONDS = 5.0  # the loop's pause state is applied to the assignment again this often
LAG_EVERY_SECONDS = 10.0  # with nothing consumed or committed for this long, the lag is measured
# Kafka refused the consumer's principal its group or its topic: no retry helps until an ACL is added
_REFUSED = {KafkaError.GROUP_AUTHORIZATION_FAILED: "group", KafkaError.TOPIC_AUTHORIZATION_FAILED: "topic"}

__all__ = ["Batch", "BatchConsumer", "Sink", "StoreOutage", "consumer_config", "refused", "store"]


class Sink(Protocol):
    name: str

    def write(self, docs: Docs) -> int: ...
    def probe(self) -> None: ...
    def close(self) -> None: ...


class Erased(Protocol):
    def filter(self, docs: Docs) -> Docs: ...


class KafkaClient(Protocol):
    """What the loop needs from a Kafka consumer (``confluent_kafka.Consumer`` has it)."""

    def subscribe(self, topics: list[str], on_assign: Any = ..., on_revoke: Any = ..., on_lost: Any = ...) -> None: ...
    def consume(self, num_messages: int = ..., timeout: float = ...) -> list[Message]: ...
    def assign(self, partitions: list[TopicPartition]) -> None: ...
    def assignment(self) -> list[TopicPartition]: ...
    def committed(self, partitions: list[TopicPartition], timeout: float = ...) -> list[TopicPartition]: ...
    def get_watermark_offsets(self, partition: TopicPartition, timeout: float = ...,
                              cached: bool = ...) -> tuple[int, int] | None: ...
    def pause(self, partitions: list[TopicPartition]) -> None: ...
    def resume(self, partitions: list[TopicPartition]) -> None: ...
    def commit(self, *args: Any, **kwargs: Any) -> Any: ...
    def close(self) -> None: ...


def consumer_config(settings: Settings) -> dict[str, Any]:
    config: dict[str, Any] = {
        **settings.kafka_client_config("consumer"),
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


class StoreOutage(Exception):
    """A store cannot take even a known-good event: retry, never skip."""


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
    if rejected:
        log.warning("store refused events; dead-lettering them", extra={"store": sink.name, "rejected": len(rejected)})
    else:  # e.g. a write that timed out while the store hung: every half was then taken
        log.warning("store failed a batch write, then took all of it in smaller writes: nothing refused",
                    extra={"store": sink.name, "events": len(docs), "error": first})
    return rejected


def _require_up(sink: Sink, exc: BaseException) -> None:
    if exhausted(exc):
        raise StoreOutage(f"{sink.name}: {_short(exc)}") from exc
    try:
        sink.probe()
    except Exception as probe_exc:
        raise StoreOutage(f"{sink.name}: {_short(exc)}") from probe_exc


class BatchConsumer:
    """Runs the consume loop until ``stop`` is set.

    On revocation the uncommitted messages of revoked partitions are forgotten in every step (the
    new owner re-reads them from the committed offset; both stores deduplicate by event_id). On
    ``stop`` the batches in memory are finished and committed; during an outage they are not (they
    are re-read after the restart).
    """

    def __init__(
        self,
        settings: Settings,
        sinks: list[Sink],
        metrics: ConsumerMetrics | None = None,
        consumer: KafkaClient | None = None,
        dead_letters: DeadLetters | None = None,
        erased: Erased | None = None,
    ) -> None:
        self.settings = settings
        self.sinks = sinks
        self.erased = erased
        self.metrics = metrics or ConsumerMetrics()
        self.consumer: KafkaClient = consumer or Consumer(consumer_config(settings))
        self.dead_letters = dead_letters or DeadLetters(
            Producer(dlq_producer_config(settings.kafka_bootstrap) | settings.kafka_client_config("consumer")),
            settings.kafka_dlq_topic,
            settings.dlq_max_value_bytes,
        )
        self.stop = threading.Event()
        self.batches_committed = 0
        self.assigned: list[Partition] = []
        self._held: deque[Message] = deque()  # read, not yet taken by the chain (backpressure)
        self._paused = False  # the loop's wish, applied to every assignment (librdkafka's own may differ)
        self._reconciled = time.monotonic()
        # the loop's longest blocking call: a synchronous commit waiting for a coordinator (up to the
        # session timeout) plus Kafka's socket timeout (60 s); a store's own timeout is 60 s
        self.progress = Progress(settings.stuck_after_seconds,
                                 loop_after=max(settings.stuck_after_seconds,
                                                settings.kafka_session_timeout_ms / 1000 + 90),
                                 hang_after=max(3 * settings.stuck_after_seconds, 180))
        self._stuck_logged = 0.0
        self._steps_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="step")
        self._sink_pool = ThreadPoolExecutor(max_workers=max(len(sinks), 1), thread_name_prefix="sink")
        self._retries = {s.name: Retry(self.stop, settings.retry_max_seconds) for s in sinks}
        self._retries["dlq"] = Retry(self.stop, settings.retry_max_seconds)
        self._last_alarm = 0.0
        self._alarm_lock = threading.Lock()
        self._last_error: dict[str, str] = {}
        self._wake = threading.Event()  # a worker finished: the loop has work to hand over
        commit = Commit(self.consumer, self._committed, lambda _exc: self.metrics.commit_failures.inc())
        dead_letter: InThread[set[tuple[str, int, int]]] = InThread(
            "dead-letter", commit, self._steps_pool, self._dead_letter_work, self._dead_letter_done, self._wake)
        write: InThread[Rejected] = InThread("stores", dead_letter, self._steps_pool, self._write_work,
                                             self._write_done, self._wake)
        self.accumulate = Accumulate(write, settings.batch_max_events, settings.batch_max_seconds)
        self.chain = Decode(self.accumulate)
        self.metrics.retrying_seconds.set_function(self.retrying_seconds)
        self.metrics.stuck.set_function(lambda: self.stuck() is not None)
        self.metrics.lag.set_function(lambda: -1 if (lag := self.progress.lag) is None else lag)

    # ------------------------------------------------------------------ steps' work
    def _write_work(self, batch: Batch) -> Any:
        docs = dict(batch.docs)  # a snapshot: rebalances change the batch in the loop's thread

        def write_all() -> Rejected:
            nonlocal docs
            if self.erased is not None:  # erased users' events never reach a store (their offsets commit)
                docs = self.erased.filter(docs)
            if not docs:
                return []
            futures = [self._sink_pool.submit(self._retries[s.name].run, s.name, lambda s=s: store(s, docs),
                                              self._failed) for s in self.sinks]
            return rejected_union([f.result() for f in futures])  # Aborted propagates

        return write_all

    def _write_done(self, batch: Batch, rejected: Rejected) -> None:
        batch.reject(rejected)

    def _dead_letter_work(self, batch: Batch) -> Any:
        bad = list(batch.bad)

        def send() -> set[tuple[str, int, int]]:
            sent: set[tuple[str, int, int]] = set()
            if bad:
                self._retries["dlq"].run("dlq", lambda: self.dead_letters.send(bad, sent), self._failed)
            return sent

        return send

    def _dead_letter_done(self, batch: Batch, sent: set[tuple[str, int, int]]) -> None:
        self.metrics.dead_lettered.inc(len(sent))

    def _committed(self, batch: Batch) -> None:
        self.batches_committed += 1
        self.progress.moved()
        self.metrics.stored.inc(len(batch.docs))
        self.metrics.batch_seconds.observe(time.monotonic() - batch.started)

    def _failed(self, what: str, exc: Exception, retry_in: float) -> None:
        """A store or the dead-letter topic is down (called from the workers)."""
        self.metrics.store_errors.labels(what).inc()
        self._last_error[what] = _short(exc)
        log.warning("store write failed; batch kept, retrying",
                    extra={"store": what, "error": _short(exc), "retry_in": retry_in})
        retrying = self.retrying_seconds()
        with self._alarm_lock:
            if retrying >= self.settings.stuck_after_seconds and time.monotonic() - self._last_alarm >= 60:
                self._last_alarm = time.monotonic()
                log.error(
                    "the same batch has been retrying for a while: nothing after it is committed until "
                    f"{what} takes it; fix {what} (see the error), the consumer goes on by itself",
                    extra={"store": what, "retrying_seconds": round(retrying), "error": _short(exc)},
                )

    def failing(self) -> dict[str, str]:
        """The stores (and "dlq") whose write is being retried now -> the error of the last attempt."""
        return {what: self._last_error.get(what, "") for what, r in self._retries.items()
                if r.failing_since is not None}

    def retrying_seconds(self) -> float:
        """How long the oldest failing write has been retried (0: none is)."""
        return max((r.failing_seconds() for r in self._retries.values()), default=0.0)

    @property
    def paused(self) -> bool:
        return self._paused

    def writing_seconds(self) -> float:
        """How long the store write (or dead-letter send) running now has been waiting (0: none runs)."""
        return max((r.attempt_seconds() for r in self._retries.values()), default=0.0)

    def stuck(self) -> str | None:
        """Why the consumer makes no progress although it has work (None: it moves, or waits on a store)."""
        return self.progress.verdict(self.retrying_seconds(), self.writing_seconds())

    # ------------------------------------------------------------------ rebalance
    def _on_revoke(self, consumer: Any, parts: list[TopicPartition]) -> None:
        revoked = {(p.topic, p.partition) for p in parts}
        self.chain.drop(revoked)
        before = len(self._held)
        self._held = deque(m for m in self._held if (m.topic(), m.partition()) not in revoked)
        self.assigned = [tp for tp in self.assigned if tp not in revoked]
        log.info("partitions revoked", extra={"partitions": sorted(revoked), "held_dropped": before - len(self._held)})

    def _on_assign(self, consumer: Any, parts: list[TopicPartition]) -> None:
        consumer.assign(parts)  # now, not after this callback: the pause state below must apply to it
        self.assigned = sorted({*self.assigned, *((p.topic, p.partition) for p in parts)})
        self._apply_pause(parts)  # paused or resumed explicitly: a stale pause from before never survives
        self.progress.moved()  # a new assignment starts a new period of progress
        log.info("partitions assigned", extra={"partitions": sorted((p.topic, p.partition) for p in parts),
                                               "paused": self._paused})

    # ------------------------------------------------------------------ loop
    def run(self) -> None:
        self.consumer.subscribe([self.settings.kafka_topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        try:
            while not self.stop.is_set():
                self._step(read=True)
            self._drain()
        except Aborted:
            log.warning("stopping during an outage: batches in memory not committed, they will be re-read")
        finally:
            self.close()

    def _step(self, read: bool) -> None:
        """One turn: let the chain progress, feed it held messages, read more unless paused."""
        self._wake.clear()  # before looking: a worker finishing from now on wakes the wait below
        self.chain.poll()
        while self._held:
            try:
                self.chain.submit(self._held[0])
            except Backpressure:
                self._pause(True)
                break
            self._held.popleft()
        else:
            if read:
                self._pause(False)
        if self._paused:
            # nothing to read: serve the group without blocking, then sleep until a worker is done
            msgs = self.consumer.consume(num_messages=self.settings.batch_max_events, timeout=0)
            self._wake.wait(0.05)
        else:
            timeout = 0.005 if not self.chain.empty() else 0.2
            msgs = self.consumer.consume(num_messages=self.settings.batch_max_events, timeout=timeout)
        if read and msgs:
            self.metrics.consumed.inc(len(msgs))
            self.progress.moved()
        self.progress.turned()
        self._watch()
        for m in msgs:
            err = m.error()
            if err is None:
                if read:
                    self._held.append(m)
            elif err.code() in _REFUSED:
                raise StoreUnavailable(refused(self.settings, _REFUSED[err.code()]))
            elif err.fatal():  # e.g. fenced by another process with the same group.instance.id
                log.error("fatal Kafka consumer error: exiting (systemd starts it again)", extra={"error": str(err)})
                raise KafkaException(err)
            elif err.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error", extra={"error": str(err)})

    def _pause(self, pause: bool) -> None:
        if pause == self._paused:
            return
        self._paused = pause  # kept even while nothing is assigned: _on_assign applies it
        self._apply_pause(self.consumer.assignment())

    def _apply_pause(self, parts: list[TopicPartition]) -> None:
        if parts:
            (self.consumer.pause if self._paused else self.consumer.resume)(parts)

    def _watch(self) -> None:
        """Every turn: re-apply the pause state now and then, measure the lag when nothing moves,
        say so (once a minute) while the consumer is stuck."""
        now = time.monotonic()
        if now - self._reconciled >= RECONCILE_SECONDS:
            self._reconciled = now
            self._apply_pause(self.consumer.assignment())
        if self.progress.lag_due(LAG_EVERY_SECONDS):
            self.progress.measured(self._lag())
        reason = self.stuck()
        if reason is not None and now - self._stuck_logged >= 60:
            self._stuck_logged = now
            log.error(f"consumer stuck: {reason}; systemd's watchdog (if the unit has one) restarts it "
                      "unless it moves again", extra={"paused": self._paused, "assigned": self.assigned})

    def _lag(self) -> int | None:
        """Messages in the assigned partitions past the group's committed offsets (None: Kafka did not say)."""
        parts = self.consumer.assignment()
        if not parts:
            return 0
        try:
            total = 0
            for tp in self.consumer.committed(parts, timeout=2):
                marks = self.consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=2,
                                                            cached=False)
                if marks is not None:
                    low, high = marks
                    total += max(high - max(tp.offset, low), 0)
            return total
        except KafkaException as exc:
            log.info("consumer lag not measured", extra={"error": str(exc)})
            return None

    def _drain(self) -> None:
        """On stop: finish what is in memory (held messages included), commit it, read nothing more."""
        self._pause(True)
        while self._held or not self.chain.empty():
            if not self._held:
                with contextlib.suppress(Backpressure):  # the stores are busy: next turn
                    self.accumulate.flush_now()
            self._step(read=False)

    def close(self) -> None:
        self.stop.set()  # workers retrying an outage give up
        try:
            self.consumer.close()
        finally:
            self.dead_letters.producer.flush(10)
            self._steps_pool.shutdown(wait=True)
            self._sink_pool.shutdown(wait=True)
            for sink in self.sinks:
                sink.close()


def refused(settings: Settings, kind: str) -> str:
    """Why the consumer exits when Kafka refuses it its ``kind`` ("group" or "topic"), and the ACL to add."""
    name = settings.kafka_group if kind == "group" else settings.kafka_topic
    who = settings.kafka_consumer_user or "the consumer's principal"
    return (f"Kafka refused {who} Read on the {kind} '{name}' (authorization failed); add that ACL to {who}"
            f" (the kafka role's kafka_principals: {{resource_type: {kind}, name: {name}, operations: [Read]}};"
            f" by hand: kafka-acls.sh --add --allow-principal User:{who} --operation Read --{kind} {name}),"
            f" or set FOOTPRINT_KAFKA_{kind.upper()} to the {kind} its ACLs allow")
