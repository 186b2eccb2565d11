"""The collector's Kafka producer: batches produced and answered only once Kafka acknowledged them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from footprint.contract import kafka_timestamp
from footprint.logs import RateLimitedLog
from footprint.metrics import CollectorMetrics

log = logging.getLogger("footprint.producer")


def producer_config(bootstrap: str, queue_max: int, message_timeout_ms: int, client_id: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "queue.buffering.max.messages": queue_max,
        "message.timeout.ms": message_timeout_ms,
        "client.id": client_id,
        "logger": logging.getLogger("footprint.librdkafka"),
    }


class _Acks:
    """Counts down the delivery reports of one batch and resolves an asyncio future at zero.

    ``report`` is the delivery callback of every message of the batch (one bound method, no closure
    per message); it runs on the producer's poll thread, the future lives on the request's loop.
    ``on_error`` sees each failed message; ``on_done(delivered)`` runs once, on the poll thread.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, n: int, on_error: Callable[[KafkaError, Message], None],
                 on_done: Callable[[int], None]) -> None:
        self.loop = loop
        self.n = n
        self.left = n
        self.errors: list[str] = []
        self.done: asyncio.Future[None] = loop.create_future()
        self._on_error = on_error
        self._on_done = on_done
        self._lock = threading.Lock()

    def report(self, err: KafkaError | None, msg: Message | None) -> None:
        if err is not None and msg is not None:
            self._on_error(err, msg)
        with self._lock:
            if err is not None:
                self.errors.append(str(err))
            self.left -= 1
            finished = self.left == 0
        if finished:
            self._on_done(self.n - len(self.errors))
            # a closed loop: the request timed out and the server stopped; nobody waits any more
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self._resolve)

    def _resolve(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


class EventProducer:
    """Wraps ``confluent_kafka.Producer``; counts every outcome in ``metrics``.

    ``send`` never blocks (a full local queue returns False, counted). ``deliver`` produces a batch
    and waits until Kafka acknowledged every event (acks=all) or says why not. A background thread
    serves delivery callbacks; another checks every few seconds that a broker answers (``ready``).
    """

    def __init__(self, bootstrap: str, topic: str, metrics: CollectorMetrics, queue_max: int = 100_000,
                 message_timeout_ms: int = 120_000, client_id: str = "footprint-collector",
                 security: dict[str, Any] | None = None) -> None:
        self.topic = topic
        self.metrics = metrics
        self.queue_max = queue_max
        config = producer_config(bootstrap, queue_max, message_timeout_ms, client_id)
        self._producer = Producer(config | (security or {}))  # Settings.kafka_client_config("collector")
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._fail_log = RateLimitedLog(log)
        self.last_error: str | None = None
        self._broker_error: str | None = "not connected yet"

    def start(self) -> None:
        for target, name in ((self._serve, "kafka-delivery"), (self._watch, "kafka-health")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.1)
            self.metrics.queue_len.set(len(self._producer))

    def _watch(self, interval: float = 5.0) -> None:
        while not self._stop.is_set():
            try:
                md = self._producer.list_topics(self.topic, timeout=3)
                topic = md.topics.get(self.topic)
                if topic is not None and topic.error is not None:
                    self._broker_error = f"topic {self.topic}: {topic.error.str()}"
                else:
                    self._broker_error = None
            except KafkaException as exc:
                self._broker_error = str(exc.args[0].str() if exc.args else exc)
            self._stop.wait(interval)

    def ready(self) -> str | None:
        """None when a broker answered the last check; otherwise why not."""
        return self._broker_error

    def _on_error(self, err: KafkaError, msg: Message) -> None:
        self.metrics.delivery_failures.inc()
        self.last_error = str(err)
        self._fail_log.warning("event not delivered to Kafka", error=str(err), topic=msg.topic())

    def _on_done(self, delivered: int) -> None:
        self.metrics.delivered.inc(delivered)
        if delivered:
            self.last_error = None

    async def deliver(self, events: list[tuple[str, bytes, str]], timeout: float,
                      received_at: datetime | None = None) -> str | None:
        """Produce ``(key, value, type)`` events and wait for Kafka's acknowledgement of all of them.

        ``received_at``: the events' own (the batch's) receive time, the messages' Kafka timestamp
        (``contract.kafka_timestamp``; None: the time of producing, as Kafka does by default).
        Returns None when every event was acknowledged, otherwise the reason (nothing more is
        produced after a refusal; events already handed over may still be delivered, which a
        client retry with the same messageId makes harmless).
        """
        if len(self._producer) + len(events) > self.queue_max:
            self.metrics.dropped.labels("queue_full").inc(len(events))
            return "the producer queue is full (Kafka is slow or unreachable)"
        acks = _Acks(asyncio.get_running_loop(), len(events), self._on_error, self._on_done)
        produce, topic, report = self._producer.produce, self.topic, acks.report
        stamp = kafka_timestamp(received_at) if received_at is not None else 0  # 0: librdkafka's now
        types: dict[str, int] = {}
        for produced, (key, value, type_) in enumerate(events):
            try:
                produce(topic, value=value, key=key, on_delivery=report, timestamp=stamp)
            except (BufferError, KafkaException) as exc:
                # nothing more of this batch is produced; count the rest as reported failures
                self.metrics.dropped.labels("producer_error").inc(len(events) - produced)
                acks.report(KafkaError(KafkaError._FAIL, str(exc)), None)
                for _ in range(len(events) - produced - 1):
                    acks.report(None, None)
                break
            types[type_] = types.get(type_, 0) + 1
        for type_, count in types.items():
            self.metrics.enqueued.labels(type_).inc(count)
        try:
            await asyncio.wait_for(asyncio.shield(acks.done), timeout)
        except TimeoutError:
            return f"Kafka did not acknowledge within {timeout:g} s"
        if acks.errors:
            return f"Kafka refused the batch: {acks.errors[0]}"
        return None

    def queue_length(self) -> int:
        return len(self._producer)

    def close(self, timeout: float = 10.0) -> int:
        """Stop the threads and flush; returns messages still undelivered."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
        started = time.monotonic()
        left: int = self._producer.flush(timeout)
        if left:
            log.warning("producer closed with undelivered events",
                        extra={"undelivered": left, "waited_s": round(time.monotonic() - started, 1)})
        return left
