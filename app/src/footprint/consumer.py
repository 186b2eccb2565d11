"""The consumer: Kafka -> (PostgreSQL AND ClickHouse), commit only after both accepted the batch.

Three parts, as getsentry/arroyo has them, each in its own module:

- ``processor.py``: polls Kafka, holds what the steps cannot take yet, pauses and resumes reading,
  follows rebalances, commits offsets; it knows the steps only by their interface;
- ``pipeline.py``: assembles the steps (``steps.py``): decode -> accumulate -> write to the stores
  -> dead-letter (``deadletter.py``) -> commit;
- ``storewrite.py``: the store-write policy (bisection, the outage probe, retries through the one
  backoff of ``backoff.py``, the stuck alarm) over the sinks (``sinks.py``).

Their shared types and exceptions are in ``interfaces.py`` and ``batch.py``. Only the CLI puts
the parts together (``cli.assemble_consumer``); this module holds the Kafka client's configuration
and ``AssembledConsumer``, the consumer as ``/healthz``, the metrics and the tests see it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from footprint.batch import Partition
from footprint.interfaces import StoreOutage
from footprint.metrics import ConsumerMetrics
from footprint.pipeline import Pipeline
from footprint.processor import Processor
from footprint.progress import Progress
from footprint.settings import KafkaSettings, Settings
from footprint.storewrite import StoreWrite, store

if TYPE_CHECKING:
    from footprint.deadletter import DeadLetters
    from footprint.interfaces import Erased, KafkaClient, Sink

__all__ = ["AssembledConsumer", "BatchConsumer", "StoreOutage", "consumer_config", "store"]


def consumer_config(settings: KafkaSettings) -> dict[str, Any]:
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


@dataclass
class AssembledConsumer:
    """The three parts of a running consumer, and what is read of them from other threads."""

    processor: Processor
    pipeline: Pipeline
    policy: StoreWrite
    stop: threading.Event = field(init=False)  # set: finish the batches in memory, commit them, return
    metrics: ConsumerMetrics = field(init=False)
    progress: Progress = field(init=False)

    def __post_init__(self) -> None:
        self.stop, self.metrics, self.progress = self.processor.stop, self.processor.metrics, self.processor.progress

    def run(self) -> None:
        self.processor.run()

    @property
    def assigned(self) -> list[Partition]:
        return self.processor.assigned

    @property
    def paused(self) -> bool:
        return self.processor.paused

    @property
    def batches_committed(self) -> int:
        return self.pipeline.batches_committed

    def stuck(self) -> str | None:
        """Why the consumer makes no progress although it has work (None: it moves, or waits on a store)."""
        return self.processor.liveness.verdict()

    def retrying_seconds(self) -> float:
        """How long the oldest failing write has been retried (0: none is)."""
        return self.policy.retrying_seconds()

    def failing(self) -> dict[str, str]:
        """The stores (and "dlq") whose write is being retried now -> the error of the last attempt."""
        return self.policy.failing()


def BatchConsumer(settings: Settings, sinks: list[Sink], metrics: ConsumerMetrics | None = None,
                  consumer: KafkaClient | None = None, dead_letters: DeadLetters | None = None,
                  erased: Erased | None = None) -> AssembledConsumer:
    """The consumer as ``footprint consume`` assembles it, under its name before the split, for the
    scripts outside the app that still call it so (``benchmarks/``); new code calls
    ``cli.assemble_consumer``."""
    from footprint.cli import assemble_consumer

    return assemble_consumer(settings, sinks, metrics, kafka=consumer, dead_letters=dead_letters, erased=erased)
