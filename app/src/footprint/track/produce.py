"""Page events to Kafka as the collector would take them: validated and enriched by the collector's own rules,
encoded in the canonical form, produced fire-and-forget, every failure counted (``KafkaSender``'s thread and the
relay process of ``KafkaRelaySender`` both produce through it)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from footprint.contract import encode_event, kafka_timestamp, validate_batch
from footprint.enrich import enrich


class PageProducer:
    """A producer of page events that counts in ``dropped`` every event it could not produce or Kafka did not
    take. Producing in bursts (``linger.ms`` 100) costs librdkafka far less CPU than one message at a time
    (benchmarks/RESULTS.md section 15)."""

    def __init__(self, bootstrap: str, topic: str, queue_max: int, config: dict[str, Any] | None = None) -> None:
        from confluent_kafka import Producer  # the "kafka" extra (with the enrichment's parsers)

        self.topic = topic
        self.dropped = 0
        self._producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                                   "linger.ms": 100, "compression.type": "lz4",
                                   "delivery.report.only.error": True,  # no Python call per delivered event
                                   "queue.buffering.max.messages": queue_max, **(config or {})})

    def produce(self, event: dict[str, Any], received: datetime) -> None:
        """One inbound page event, received at ``received`` (its ``received_at`` and the message's time)."""
        try:
            [wire] = validate_batch({"batch": [event]}, received, 1, enrich)  # the collector's own rules
            self._producer.produce(self.topic, value=encode_event(wire), key=wire["event_id"],
                                   on_delivery=self._report, timestamp=kafka_timestamp(received))
        except Exception:  # an invalid event, librdkafka's queue full: counted, never raised
            self.dropped += 1

    def _report(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.dropped += 1

    def poll(self) -> None:
        """Serve the delivery reports due (the failed ones count)."""
        self._producer.poll(0)

    def flush(self, timeout: float) -> None:
        """Wait up to ``timeout`` for Kafka to take what is queued; what it did not is counted."""
        self.dropped += self._producer.flush(timeout)
