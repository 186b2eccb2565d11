"""A batch of consumed messages on its way through the consumer's steps."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from confluent_kafka import TopicPartition

Docs = dict[str, bytes]  # event_id -> canonical document
Rejected = list[tuple[str, str]]  # (event_id, why a store refused it)
Partition = tuple[str, int]


class Msg(Protocol):
    """What the consumer reads from a Kafka message (``confluent_kafka.Message`` has it)."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def timestamp(self) -> tuple[int, int]: ...


@dataclass
class Batch:
    """Messages read but not yet committed, their canonical documents and their dead letters.

    ``docs`` holds each event_id once (the first message wins); ``bad`` holds the messages that
    will be dead-lettered, with the reason. Rebalances drop revoked partitions from it.
    """

    messages: list[Msg] = field(default_factory=list)
    docs: Docs = field(default_factory=dict)
    origin: dict[str, Msg] = field(default_factory=dict)
    bad: list[tuple[Msg, str]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def add(self, m: Msg, key: str, doc: bytes) -> None:
        self.messages.append(m)
        if key not in self.docs:
            self.docs[key] = doc
            self.origin[key] = m

    def add_bad(self, m: Msg, reason: str) -> None:
        self.messages.append(m)
        self.bad.append((m, reason))

    def drop_partitions(self, parts: set[Partition]) -> int:
        """Forget the messages of revoked partitions: their docs and their pending dead letters
        (the new owner re-reads, re-validates and dead-letters them itself)."""

        def revoked(m: Msg) -> bool:
            return (m.topic(), m.partition()) in parts

        before = len(self.messages)
        self.messages = [m for m in self.messages if not revoked(m)]
        self.bad = [(m, reason) for m, reason in self.bad if not revoked(m)]
        for key in [k for k, m in self.origin.items() if revoked(m)]:
            del self.origin[key]
            self.docs.pop(key, None)
        return before - len(self.messages)

    def reject(self, rejected: Rejected) -> None:
        """Move events a store refused from the docs to the dead letters."""
        for key, reason in rejected:
            if key in self.docs:
                del self.docs[key]
                self.bad.append((self.origin.pop(key), reason))

    def offsets(self) -> list[TopicPartition]:
        """Next offset to read per partition (what gets committed)."""
        nxt: dict[Partition, int] = {}
        for m in self.messages:
            key = (m.topic() or "", m.partition() or 0)
            nxt[key] = max(nxt.get(key, 0), (m.offset() or 0) + 1)
        return [TopicPartition(t, p, o) for (t, p), o in sorted(nxt.items())]

    def __len__(self) -> int:
        return len(self.messages)
