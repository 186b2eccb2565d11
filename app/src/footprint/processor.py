"""The processor: polls Kafka, holds what the steps cannot take yet, pauses and resumes reading,
follows rebalances and commits offsets; it knows the steps only by their interface (``Step``).

On revocation the uncommitted messages of revoked partitions are forgotten in every step (the
new owner re-reads them from the committed offset; both stores deduplicate by event_id). On
``stop`` the batches in memory are finished and committed; during an outage they are not (they
are re-read after the restart).

Pause state is the processor's, applied again to every assignment: librdkafka keeps a partition
paused across a revoke and a re-assign, so a partition paused before a rebalance would otherwise
stay paused for good (issue 26). ``Progress`` tells whether the consumer moves (``stuck``); the CLI
feeds systemd's watchdog only while it does.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from footprint.batch import Msg, Partition
from footprint.interfaces import Aborted, Backpressure, KafkaClient, Step
from footprint.metrics import ConsumerMetrics
from footprint.progress import Progress
from footprint.settings import ProcessorSettings
from footprint.stores import StoreUnavailable

log = logging.getLogger("footprint.consumer")

RECONCILE_SECONDS = 5.0  # the pause state is applied to the assignment again this often
# The steps pushing back for this long pause the partitions (before: the loop only stops taking messages).
# A pause throws away what librdkafka prefetched, and its fetcher takes ~0.5 s to start again after the resume:
# pausing at every push back (every few batches under load) left the stores idle that long each time
# (benchmarks/RESULTS.md, section 24). Paused, the loop serves the group (rebalances) through a long outage.
PAUSE_AFTER_SECONDS = 1.0
LAG_EVERY_SECONDS = 10.0  # with nothing consumed or committed for this long, the lag is measured
STUCK_LOG_EVERY_SECONDS = 60.0
# Kafka refused the consumer's principal its group or its topic: no retry helps until an ACL is added
_REFUSED = {KafkaError.GROUP_AUTHORIZATION_FAILED: "group", KafkaError.TOPIC_AUTHORIZATION_FAILED: "topic"}


class Processor:
    """Runs the consume loop until ``stop`` is set, feeding ``head`` (``attach`` gives it one).

    ``waiting()`` says how long a store write has been retried after an outage and how long the
    write running now has waited (seconds): the stuck verdict reads them (``Liveness``).
    """

    def __init__(self, kafka: KafkaClient, settings: ProcessorSettings, metrics: ConsumerMetrics, progress: Progress,
                 stop: threading.Event, waiting: Callable[[], tuple[float, float]]) -> None:
        self.kafka = kafka
        self.settings = settings
        self.metrics = metrics
        self.progress = progress
        self.stop = stop
        self.liveness = Liveness(kafka, progress, waiting)
        self.wake = threading.Event()  # a step's worker finished: the loop has work to hand over
        self.head: Step[Msg] | None = None
        self.on_close: Callable[[], None] = lambda: None
        self.assigned: list[Partition] = []
        self._held = Held()
        self._pause = PauseState(kafka)
        self._pushed_back_since: float | None = None  # the steps refuse messages since (monotonic)

    def attach(self, head: Step[Msg], on_close: Callable[[], None]) -> None:
        """The steps to feed, and what to close after the Kafka client when the loop ends."""
        self.head, self.on_close = head, on_close

    def commit(self, offsets: list[TopicPartition]) -> None:
        """Commit ``offsets`` synchronously (the steps' last one calls this); KafkaException if refused."""
        self.kafka.commit(offsets=offsets, asynchronous=False)

    @property
    def paused(self) -> bool:
        return self._pause.paused

    # ------------------------------------------------------------------ rebalance
    def _on_revoke(self, consumer: Any, parts: list[TopicPartition]) -> None:
        revoked = {(p.topic, p.partition) for p in parts}
        self._steps.drop(revoked)
        dropped = self._held.drop(revoked)
        self.assigned = [tp for tp in self.assigned if tp not in revoked]
        log.info("partitions revoked", extra={"partitions": sorted(revoked), "held_dropped": dropped})

    def _on_assign(self, consumer: Any, parts: list[TopicPartition]) -> None:
        consumer.assign(parts)  # now, not after this callback: the pause state below must apply to it
        self.assigned = sorted({*self.assigned, *((p.topic, p.partition) for p in parts)})
        self._pause.apply(parts)  # paused or resumed explicitly: a stale pause from before never survives
        self.progress.moved()  # a new assignment starts a new period of progress
        log.info("partitions assigned", extra={"partitions": sorted((p.topic, p.partition) for p in parts),
                                               "paused": self.paused})

    # ------------------------------------------------------------------ loop
    @property
    def _steps(self) -> Step[Msg]:
        assert self.head is not None, "no steps attached"
        return self.head

    def run(self) -> None:
        self.kafka.subscribe([self.settings.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        try:
            while not self.stop.is_set():
                self._step(read=True)
            self._drain()
        except Aborted:
            log.warning("stopping during an outage: batches in memory not committed, they will be re-read")
        finally:
            self.close()

    def _step(self, read: bool) -> None:
        """One turn: let the steps progress, feed them held messages, read more unless they push back."""
        self.wake.clear()  # before looking: a worker finishing from now on wakes the wait below
        self._hand_over(read)
        if self.paused:
            # nothing to read: serve the group without blocking, then sleep until a worker is done
            msgs = self.kafka.consume(num_messages=self.settings.batch_max_events, timeout=0)
            self.wake.wait(0.05)
        elif self._held:  # pushed back, not paused yet: take nothing more (librdkafka keeps its prefetch)
            msgs = []
            self.wake.wait(0.05)
        else:
            timeout = 0.005 if not self._steps.empty() else 0.2
            msgs = self.kafka.consume(num_messages=self.settings.batch_max_events, timeout=timeout)
        if read and msgs:
            self.metrics.consumed.inc(len(msgs))
            self.progress.moved()
        self.progress.turned()
        self._pause.reconcile()
        self.liveness.check(paused=self.paused, assigned=self.assigned)
        for m in msgs:
            err = m.error()
            if err is not None:
                _kafka_error(err, self.settings)
            elif read:
                self._held.messages.append(m)

    def _hand_over(self, read: bool) -> None:
        """Let the steps progress and give them the held messages; pause once they have refused them for
        ``PAUSE_AFTER_SECONDS``, resume when they take them all."""
        self._steps.poll()
        if self._held.hand_to(self._steps):
            self._pushed_back_since = None
            if read:
                self._pause.want(False)
            return
        now = time.monotonic()
        if self._pushed_back_since is None:
            self._pushed_back_since = now
        if now - self._pushed_back_since >= PAUSE_AFTER_SECONDS:
            self._pause.want(True)

    def _drain(self) -> None:
        """On stop: finish what is in memory (held messages included), commit it, read nothing more."""
        self._pause.want(True)
        while self._held or not self._steps.empty():
            if not self._held:
                with contextlib.suppress(Backpressure):  # the stores are busy: next turn
                    self._steps.flush()
            self._step(read=False)

    def close(self) -> None:
        self.stop.set()  # workers retrying an outage give up
        try:
            self.kafka.close()
        finally:
            self.on_close()


class Held:
    """Messages read but not yet taken by the steps (backpressure), oldest first."""

    def __init__(self) -> None:
        self.messages: deque[Message] = deque()

    def __bool__(self) -> bool:
        return bool(self.messages)

    def hand_to(self, steps: Step[Msg]) -> bool:
        """Submit them in order; False when the steps pushed back (the rest stays held)."""
        while self.messages:
            try:
                steps.submit(self.messages[0])
            except Backpressure:
                return False
            self.messages.popleft()
        return True

    def drop(self, revoked: set[Partition]) -> int:
        """Forget the messages of revoked partitions; how many there were."""
        before = len(self.messages)
        self.messages = deque(m for m in self.messages if (m.topic(), m.partition()) not in revoked)
        return before - len(self.messages)


class PauseState:
    """The processor's wish to read or not, applied to every assignment (librdkafka's own may differ:
    it keeps a pause across a revoke and a re-assign) and again every ``RECONCILE_SECONDS``."""

    def __init__(self, kafka: KafkaClient) -> None:
        self.kafka = kafka
        self.paused = False  # kept even while nothing is assigned: the next assignment applies it
        self._reconciled = time.monotonic()

    def want(self, pause: bool) -> None:
        if pause != self.paused:
            self.paused = pause
            self.apply(self.kafka.assignment())

    def apply(self, parts: list[TopicPartition]) -> None:
        if parts:
            (self.kafka.pause if self.paused else self.kafka.resume)(parts)

    def reconcile(self) -> None:
        if (now := time.monotonic()) - self._reconciled >= RECONCILE_SECONDS:
            self._reconciled = now
            self.apply(self.kafka.assignment())


class Liveness:
    """The stuck verdict of a turning loop: the lag measured when nothing moved for a while, the
    verdict logged as an error once a minute while it stands (``Progress`` judges)."""

    def __init__(self, kafka: KafkaClient, progress: Progress, waiting: Callable[[], tuple[float, float]]) -> None:
        self.kafka = kafka
        self.progress = progress
        self.waiting = waiting
        self._logged = 0.0

    def verdict(self) -> str | None:
        return self.progress.verdict(*self.waiting())

    def check(self, **context: Any) -> None:
        """Every turn: measure the lag when nothing moves, say so (once a minute) while stuck."""
        if self.progress.lag_due(LAG_EVERY_SECONDS):
            self.progress.measured(lag(self.kafka))
        reason = self.verdict()
        if reason is not None and (now := time.monotonic()) - self._logged >= STUCK_LOG_EVERY_SECONDS:
            self._logged = now
            log.error(f"consumer stuck: {reason}; systemd's watchdog (if the unit has one) restarts it "
                      "unless it moves again", extra=context)


def lag(kafka: KafkaClient) -> int | None:
    """Messages in the assigned partitions past the group's committed offsets (None: Kafka did not say)."""
    parts = kafka.assignment()
    if not parts:
        return 0
    try:
        total = 0
        for tp in kafka.committed(parts, timeout=2):
            marks = kafka.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=2, cached=False)
            if marks is not None:
                low, high = marks
                total += max(high - max(tp.offset, low), 0)
        return total
    except KafkaException as exc:
        log.info("consumer lag not measured", extra={"error": str(exc)})
        return None


def _kafka_error(err: KafkaError, settings: ProcessorSettings) -> None:
    """An error ``consume`` returned: the group or topic refused or a fatal error end the process, others are logged."""
    if err.code() in _REFUSED:
        raise StoreUnavailable(refused(settings, _REFUSED[err.code()]))
    if err.fatal():  # e.g. fenced by another process with the same group.instance.id
        log.error("fatal Kafka consumer error: exiting (systemd starts it again)", extra={"error": str(err)})
        raise KafkaException(err)
    if err.code() != KafkaError._PARTITION_EOF:
        log.warning("consumer error", extra={"error": str(err)})


def refused(settings: ProcessorSettings, kind: str) -> str:
    """Why the consumer exits when Kafka refuses it its ``kind`` ("group" or "topic"), and the ACL to add."""
    name = settings.group if kind == "group" else settings.topic
    who = settings.principal or "the consumer's principal"
    return (f"Kafka refused {who} Read on the {kind} '{name}' (authorization failed); add that ACL to {who}"
            f" (the kafka role's kafka_principals: {{resource_type: {kind}, name: {name}, operations: [Read]}};"
            f" by hand: kafka-acls.sh --add --allow-principal User:{who} --operation Read --{kind} {name}),"
            f" or set FOOTPRINT_KAFKA_{kind.upper()} to the {kind} its ACLs allow")
