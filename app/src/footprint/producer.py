"""Kafka producer: idempotent, acks=all, never blocks the caller."""

from __future__ import annotations

import logging
import threading
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from footprint.logs import RateLimitedLog
from footprint.metrics import CollectorMetrics

log = logging.getLogger("footprint.producer")


def producer_config(bootstrap: str, queue_max: int) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "queue.buffering.max.messages": queue_max,
        "message.timeout.ms": 120_000,
        "client.id": "footprint-collector",
        "logger": logging.getLogger("footprint.librdkafka"),
    }


class EventProducer:
    """Wraps ``confluent_kafka.Producer``; counts every outcome in ``metrics``.

    ``send`` never blocks: a full local queue raises nothing, it returns False and is counted.
    A background thread serves delivery callbacks.
    """

    def __init__(self, bootstrap: str, topic: str, metrics: CollectorMetrics, queue_max: int = 100_000) -> None:
        self.topic = topic
        self.metrics = metrics
        self._producer = Producer(producer_config(bootstrap, queue_max))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._drop_log = RateLimitedLog(log)
        self._fail_log = RateLimitedLog(log)
        self.last_error: str | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._serve, name="kafka-delivery", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.1)
            self.metrics.queue_len.set(len(self._producer))

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self.metrics.delivered.inc()
            self.last_error = None
        else:
            self.metrics.delivery_failures.inc()
            self.last_error = str(err)
            self._fail_log.warning("event not delivered to Kafka", error=str(err), topic=msg.topic())

    def send(self, key: str, value: bytes, type_: str) -> bool:
        """Enqueue one event; False (counted, logged) if the local queue is full."""
        try:
            self._producer.produce(self.topic, value=value, key=key, on_delivery=self._on_delivery)
        except BufferError:
            self.metrics.dropped.labels("queue_full").inc()
            self._drop_log.warning("producer queue full, event dropped", type=type_)
            return False
        except Exception as exc:  # KafkaException: e.g. message too large
            self.metrics.dropped.labels("producer_error").inc()
            self._drop_log.warning("producer rejected event", error=str(exc), type=type_)
            return False
        self.metrics.enqueued.labels(type_).inc()
        return True

    def queue_length(self) -> int:
        return len(self._producer)

    def close(self, timeout: float = 10.0) -> int:
        """Stop the callback thread and flush; returns messages still undelivered."""
        self._stop.set()
        if self._thread:
            self._thread.join()
        left: int = self._producer.flush(timeout)
        if left:
            log.warning("producer closed with undelivered events", extra={"undelivered": left})
        return left
