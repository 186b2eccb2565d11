"""In-memory stand-ins for the consumer's injected parts: a Kafka consumer, a dead-letter producer,
and stores. No network: the real ones are tested in tests/integration."""

from __future__ import annotations

import threading
import time
from typing import Any

from confluent_kafka import TIMESTAMP_CREATE_TIME, KafkaError, KafkaException, TopicPartition


class FakeMessage:
    def __init__(self, topic: str, partition: int, offset: int, value: bytes | None = b"v",
                 key: bytes | None = b"k", error: KafkaError | None = None) -> None:
        self._t, self._p, self._o, self._v, self._k, self._e = topic, partition, offset, value, key, error

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def value(self) -> bytes | None:
        return self._v

    def key(self) -> bytes | None:
        return self._k

    def timestamp(self) -> tuple[int, int]:
        return TIMESTAMP_CREATE_TIME, 1_700_000_000_000 + self._o

    def error(self) -> KafkaError | None:
        return self._e


class FakeKafka:
    """A consumer of one topic: every partition is assigned at the first consume; commits are recorded.

    As librdkafka does: rebalance callbacks run inside ``consume``; a revoke of everything and the
    next assignment come in different ``consume`` calls (the group's join takes time); the
    assignment takes effect after ``on_assign`` unless it called ``assign`` itself; and a paused
    partition stays paused across a revoke and a re-assignment (the pause belongs to the partition).
    """

    def __init__(self, topic: str, partitions: int = 3) -> None:
        self.topic = topic
        self.logs: dict[int, list[FakeMessage]] = {p: [] for p in range(partitions)}
        self.position = dict.fromkeys(self.logs, 0)
        self.assigned: set[int] = set()
        self.paused: set[int] = set()
        self.pauses = 0  # calls to pause
        self.committed_offsets: dict[int, int] = {}
        self.commits: list[list[tuple[int, int]]] = []
        self.callbacks: dict[str, Any] = {}
        self.lock = threading.Lock()
        self.pending_revoke: set[int] = set()
        self.closed = False
        self._assigning = False
        self.ignore_resume = False  # True: a partition once paused never reads again (a wedged client)

    def append(self, partition: int, value: bytes | None, key: bytes | None = b"k") -> None:
        with self.lock:
            log = self.logs[partition]
            log.append(FakeMessage(self.topic, partition, len(log), value, key))

    def subscribe(self, topics: list[str], on_assign: Any = None, on_revoke: Any = None, **_: Any) -> None:
        self.callbacks = {"assign": on_assign, "revoke": on_revoke}

    def revoke(self, partition: int) -> None:
        """Revoke at the next consume (callbacks run inside consume, as in librdkafka)."""
        self.pending_revoke.add(partition)

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[FakeMessage]:
        if not self.assigned and not self.pending_revoke and self.callbacks:
            self._assigning = True
            parts = [TopicPartition(self.topic, p) for p in sorted(self.logs)]
            self.callbacks["assign"](self, parts)
            if self._assigning:  # the callback did not assign: the client does it after the callback
                self.assign(parts)
            return []  # the revoke (if any) and this assignment were separate turns of the loop
        if self.pending_revoke:
            gone, self.pending_revoke = self.pending_revoke & self.assigned, set()
            self.callbacks["revoke"](self, [TopicPartition(self.topic, p) for p in sorted(gone)])
            self.assigned -= gone
        out: list[FakeMessage] = []
        with self.lock:
            for p in sorted(self.assigned - self.paused):
                log = self.logs[p]
                while self.position[p] < len(log) and len(out) < num_messages:
                    out.append(log[self.position[p]])
                    self.position[p] += 1
        if not out:
            time.sleep(min(max(timeout, 0), 0.01))
        return out

    def assign(self, parts: list[TopicPartition]) -> None:
        self._assigning = False
        self.assigned = {tp.partition for tp in parts}
        for p in self.assigned:  # a (re-)assigned partition is read again from its committed offset
            self.position[p] = self.committed_offsets.get(p, 0)

    def committed(self, parts: list[TopicPartition], timeout: float = -1) -> list[TopicPartition]:
        return [TopicPartition(self.topic, tp.partition, self.committed_offsets.get(tp.partition, -1001))
                for tp in parts]

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float = -1,
                              cached: bool = False) -> tuple[int, int]:
        return 0, len(self.logs[tp.partition])

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(self.topic, p) for p in sorted(self.assigned)]

    def pause(self, parts: list[TopicPartition]) -> None:
        self.pauses += 1
        self.paused |= {tp.partition for tp in parts}

    def resume(self, parts: list[TopicPartition]) -> None:
        if not self.ignore_resume:
            self.paused -= {tp.partition for tp in parts}

    def commit(self, offsets: list[TopicPartition], asynchronous: bool = False) -> None:
        for tp in offsets:
            if tp.partition not in self.assigned:
                raise KafkaException(KafkaError(KafkaError.UNKNOWN_MEMBER_ID))  # not ours any more
        self.commits.append([(tp.partition, tp.offset) for tp in offsets])
        for tp in offsets:
            self.committed_offsets[tp.partition] = tp.offset

    def close(self) -> None:
        self.closed = True

    def end_offsets(self) -> dict[int, int]:
        return {p: len(log) for p, log in self.logs.items() if log}


class MemoryProducer:
    """A Kafka producer in memory: ``errors`` decides each message's delivery report."""

    def __init__(self, errors: Any = None, max_bytes: int = 10**9) -> None:
        self.errors = errors or (lambda value: None)
        self.max_bytes = max_bytes
        self.pending: list[tuple[Any, Any]] = []
        self.delivered: list[dict[str, Any]] = []

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None, headers: Any = None,
                on_delivery: Any = None, timestamp: int = 0) -> None:
        if len(value or b"") + len(key or b"") > self.max_bytes:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        record = {"topic": topic, "value": value, "key": key, "headers": dict(headers or []), "timestamp": timestamp}
        self.pending.append((record, on_delivery))

    def flush(self, timeout: float = 0) -> int:
        for record, cb in self.pending:
            err = self.errors(record["value"])
            if err is None:
                self.delivered.append(record)
            cb(err, None)
        self.pending = []
        return 0


class MemoryStore:
    """A store: keeps documents by event_id (first write wins), refuses documents containing
    ``refuse``, and is down (refusing its probe too) while ``down`` is set."""

    def __init__(self, name: str, refuse: bytes | None = None) -> None:
        self.name = name
        self.refuse = refuse
        self.rows: dict[str, bytes] = {}
        self.writes = 0
        self.down = threading.Event()

    def write(self, docs: dict[str, bytes]) -> int:
        self.writes += 1
        if self.down.is_set():
            raise ConnectionError(f"{self.name}: connection refused")
        if self.refuse is not None and any(self.refuse in d for d in docs.values()):
            raise ValueError(f"{self.name} cannot store that")
        new = {k: d for k, d in docs.items() if k not in self.rows}
        self.rows.update(new)
        return len(new)

    def probe(self) -> None:
        if self.down.is_set():
            raise ConnectionError(f"{self.name}: connection refused")

    def close(self) -> None:
        pass
