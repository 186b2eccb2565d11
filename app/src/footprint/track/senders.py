"""Where the middleware's events go, without ever making a request wait.

``HttpSender``: batches to the collector's ``POST /v1/events`` from a background thread (stdlib
only). A batch the collector answers 503 or cannot be reached for is retried with backoff (each
event carries a ``messageId``, so a retry is stored once); a batch it refuses (4xx) is dropped.
Over HTTPS with a private CA (the kit's default deploy), give the CA's certificate (``ca_file``) or
an ``ssl_context``. Every failure is a warning that names the cause (once per outage, and for each
dropped batch), never a silent drop.
``KafkaSender``: queues each event; its thread validates and enriches them as the collector does and
produces the canonical form straight to the topic in bursts (``pip install footprint[kafka]``:
confluent-kafka and the user-agent parsers), fire-and-forget.
Both count what they drop in ``dropped`` and never raise into the caller.
"""

from __future__ import annotations

import json
import logging
import queue
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from datetime import UTC, datetime
from typing import Any, Protocol

from footprint.contract import encode_event, kafka_timestamp, validate_batch
from footprint.enrich import enrich

log = logging.getLogger("footprint.track")


class Sender(Protocol):
    dropped: int

    def send(self, event: dict[str, Any]) -> None: ...
    def close(self, timeout: float = ...) -> None: ...


class HttpSender:
    _post_tries = 6  # ~30 s of retries, then the batch is dropped (counted, with a warning)

    def __init__(self, collector_url: str, key: str, batch_size: int = 100, flush_seconds: float = 1.0,
                 max_queue: int = 10_000, timeout: float = 10.0, ca_file: str | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.url = collector_url.rstrip("/") + "/v1/events"
        if ca_file and ssl_context:
            raise ValueError("HttpSender: give ca_file or ssl_context, not both (load the CA into the context)")
        self.context = ssl_context or (ssl.create_default_context(cafile=ca_file) if ca_file else None)
        self._failing = False
        self.key = key
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.timeout = timeout
        self.sent = 0
        self.dropped = 0
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(max_queue)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="footprint-http-sender", daemon=True)
        self._thread.start()

    def send(self, event: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        while not (self._stop.is_set() and self._queue.empty()):
            batch = self._take()
            if batch:
                self._post(batch)

    def _take(self) -> list[dict[str, Any]]:
        batch: list[dict[str, Any]] = []
        deadline = time.monotonic() + self.flush_seconds
        while len(batch) < self.batch_size:
            left = deadline - time.monotonic()
            if left <= 0 or (self._stop.is_set() and self._queue.empty()):
                break
            try:
                batch.append(self._queue.get(timeout=min(left, 0.1)))
            except queue.Empty:
                continue
        return batch

    def _post(self, batch: list[dict[str, Any]]) -> None:
        body = json.dumps({"batch": batch}).encode()
        delay = 0.5
        for _attempt in range(self._post_tries):
            request = urllib.request.Request(self.url, data=body, method="POST", headers={
                "Authorization": f"Bearer {self.key}", "Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout, context=self.context):
                    self.sent += len(batch)
                    if self._failing:
                        log.warning("collector reachable again", extra={"url": self.url})
                    self._failing = False
                    return
            except urllib.error.HTTPError as exc:
                if exc.code < 500:
                    hint = " (plain HTTP to an HTTPS port? use https://)" if exc.code == 400 else ""
                    log.warning(f"collector refused page events{hint}",
                                extra={"status": exc.code, "events": len(batch), "url": self.url})
                    break
                self._unreachable(f"HTTP {exc.code}")
            except (OSError, ValueError) as exc:
                self._unreachable(str(getattr(exc, "reason", exc)))
            if self._stop.wait(delay):
                break
            delay = min(delay * 2, 10.0)
        self.dropped += len(batch)
        log.warning("page events dropped: the collector did not take them", extra={"events": len(batch),
                                                                                   "url": self.url})

    def _unreachable(self, error: str) -> None:
        if self._failing:
            return
        self._failing = True
        hint = ""
        if "CERTIFICATE_VERIFY_FAILED" in error:
            hint = ": its certificate is not trusted here; pass ca_file= the deploy's CA certificate"
        log.warning(f"collector unreachable, retrying{hint}", extra={"error": error[:300], "url": self.url})

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued (up to ``timeout``), then stop."""
        self._stop.set()
        self._thread.join(timeout)


class KafkaSender:
    """``send`` only queues the event (bounded: ``queue_max``, beyond which it is dropped and counted);
    the sender's thread takes what is queued every ``flush_seconds`` and validates, enriches, encodes and
    produces it, ``chunk`` events at a time with a pause between chunks so the app's threads get the GIL
    back within one chunk's work. Producing in bursts costs librdkafka far less CPU than one message at a
    time (benchmarks/RESULTS.md section 15)."""

    chunk = 16
    pause_seconds = 0.0002

    def __init__(self, bootstrap: str, topic: str = "web-logs-topic", queue_max: int = 100_000,
                 config: dict[str, Any] | None = None, flush_seconds: float = 0.05) -> None:
        from confluent_kafka import Producer  # the "kafka" extra (with the enrichment's parsers)

        self.topic = topic
        self.dropped = 0
        self.queue_max = queue_max
        self.flush_seconds = flush_seconds
        self._queue: deque[tuple[dict[str, Any], datetime]] = deque()
        self._producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                                   "linger.ms": 100, "compression.type": "lz4",
                                   "delivery.report.only.error": True,  # no Python call per delivered event
                                   "queue.buffering.max.messages": queue_max, **(config or {})})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="footprint-kafka-sender", daemon=True)
        self._thread.start()

    def send(self, event: dict[str, Any]) -> None:
        if len(self._queue) >= self.queue_max:
            self.dropped += 1
            return
        self._queue.append((event, datetime.now(UTC)))  # when it was received: received_at, the message's time

    def _serve(self) -> None:
        while True:
            stopping = self._stop.wait(self.flush_seconds)
            while self._queue:
                for _ in range(min(self.chunk, len(self._queue))):
                    self._produce(*self._queue.popleft())
                self._producer.poll(0)
                if self._queue and not stopping:
                    time.sleep(self.pause_seconds)
            self._producer.poll(0)
            if stopping:
                return

    def _produce(self, event: dict[str, Any], received: datetime) -> None:
        try:
            [wire] = validate_batch({"batch": [event]}, received, 1, enrich)  # the collector's own rules
            self._producer.produce(self.topic, value=encode_event(wire), key=wire["event_id"],
                                   on_delivery=self._report, timestamp=kafka_timestamp(received))
        except Exception:  # an invalid event, librdkafka's queue full: counted, never raised
            self.dropped += 1

    def _report(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.dropped += 1

    def close(self, timeout: float = 10.0) -> None:
        """Produce what is queued, then wait up to ``timeout`` for Kafka to take it (what it did not is dropped)."""
        self._stop.set()
        self._thread.join()
        self.dropped += self._producer.flush(timeout)
