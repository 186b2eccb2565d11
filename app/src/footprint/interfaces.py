"""What the consumer's parts know of each other: the step interface, the protocols of the stores
and of the Kafka client, and the exceptions that cross between them.

    processor (processor.py) -> steps (steps.py, assembled by pipeline.py) -> store-write policy
    (storewrite.py) -> sinks (sinks.py) and dead letters (deadletter.py)

The processor knows only ``Step``; the steps know only ``Sink`` through the store-write policy.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from confluent_kafka import Message, TopicPartition

from footprint.batch import Docs, Partition

T = TypeVar("T", contravariant=True)


class Backpressure(Exception):
    """The step cannot take the item now; submit it again later (the loop pauses reading meanwhile)."""


class Aborted(Exception):
    """Work given up because the consumer is stopping during an outage: nothing after it is committed."""


class StoreOutage(Exception):
    """A store cannot take even a known-good event: retry, never skip."""


class Step(Protocol[T]):
    def submit(self, item: T) -> None: ...  # may raise Backpressure
    def poll(self) -> None: ...  # make progress, never block
    def busy(self) -> bool: ...  # True: a submit now would raise Backpressure
    def empty(self) -> bool: ...  # True: nothing in this step or after it
    def drop(self, parts: set[Partition]) -> None: ...  # forget revoked partitions
    def flush(self) -> None: ...  # hand over what is partly built whatever its bounds (on stop); may raise Backpressure


class Sink(Protocol):
    name: str

    def write(self, docs: Docs) -> int: ...
    def probe(self) -> None: ...
    def close(self) -> None: ...


class Erased(Protocol):
    def filter(self, docs: Docs) -> Docs: ...


class KafkaClient(Protocol):
    """What the processor needs from a Kafka consumer (``confluent_kafka.Consumer`` has it)."""

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
