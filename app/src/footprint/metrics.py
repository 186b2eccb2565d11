"""Prometheus metrics, one registry per process object (no import-time globals)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class CollectorMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.enqueued = Counter(
            "footprint_events_enqueued", "events handed to the producer queue", ["type"], registry=r
        )
        self.dropped = Counter(
            "footprint_events_dropped",
            "events not enqueued (local producer queue full or producer error)",
            ["reason"],
            registry=r,
        )
        self.delivered = Counter("footprint_events_delivered", "events acknowledged by Kafka", registry=r)
        self.delivery_failures = Counter(
            "footprint_delivery_failures", "events Kafka did not acknowledge (delivery callback error)",
            registry=r,
        )
        self.rejected = Counter(
            "footprint_api_rejected", "POST /v1/events requests rejected", ["status"], registry=r
        )
        self.queue_len = Gauge("footprint_producer_queue_length", "messages waiting in the producer", registry=r)


@dataclass
class ConsumerMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.consumed = Counter("footprint_consumed", "messages consumed", registry=r)
        self.stored = Counter("footprint_stored", "events accepted by both stores", registry=r)
        self.dead_lettered = Counter("footprint_dead_lettered", "messages sent to the DLQ", registry=r)
        self.store_errors = Counter("footprint_store_errors", "failed store writes", ["store"], registry=r)
        self.commit_failures = Counter(
            "footprint_commit_failures",
            "offset commits that failed (batch stored; it is re-read and deduplicated)",
            registry=r,
        )
        self.batch_seconds = Histogram("footprint_batch_seconds", "batch write time", registry=r)
        self.retrying_seconds = Gauge(
            "footprint_consumer_retrying_seconds",
            "how long the current batch has been retried for a store or dead-letter outage (0: not retrying);"
            " above a minute the consumer also logs an error",
            registry=r,
        )
        self.stuck = Gauge(
            "footprint_consumer_stuck",
            "1 while the consumer has lag but consumes and commits nothing (or its loop does not turn), "
            "outside a store outage it is retrying; systemd's watchdog restarts it then",
            registry=r,
        )
        self.lag = Gauge(
            "footprint_consumer_lag",
            "messages in the assigned partitions past the group's committed offsets, measured when nothing "
            "moved for 10 s (-1: not measured since the last progress)",
            registry=r,
        )
        self.watchdog_restarts = Gauge(
            "footprint_consumer_watchdog_restarts",
            "times systemd restarted this consumer because it stopped making progress (its watchdog), "
            "as recorded in the consumer's state directory",
            registry=r,
        )
