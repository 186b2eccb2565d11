"""The consumer's work as a chain of small steps behind one interface.

    decode -> accumulate -> write to the stores -> dead-letter -> commit

Each step takes items with ``submit`` (raising ``Backpressure`` when it cannot take one now),
makes progress in ``poll`` (never blocking), and hands its output to the next step. The slow steps
(the stores, the dead-letter topic) work in threads: while batch N is written, batch N+1 is read and
validated, and each store may start N+1 while the other still writes N; a batch reaches ``Commit``
only after every step before it accepted it, and batches reach it in order. The interface is
``interfaces.Step``; the chain is assembled by ``pipeline.py`` and driven by the processor
(``processor.py``), which owns polling, rebalances, pause/resume and the Kafka client (``Commit``
commits through it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

from confluent_kafka import KafkaException, TopicPartition

from footprint.batch import Batch, Msg, Partition
from footprint.contract import decode_message
from footprint.interfaces import Backpressure, Step

log = logging.getLogger("footprint.consumer")


@dataclass
class Decoded:
    message: Msg
    key: str | None = None
    doc: bytes | None = None
    reason: str = ""


class Decode:
    """Validates each message against the event contract into its canonical document, or a reason."""

    def __init__(self, next_step: Step[Decoded]) -> None:
        self.next = next_step

    def submit(self, m: Msg) -> None:
        try:
            key, doc = decode_message(m.value())
            item = Decoded(m, key, doc)
        except ValueError as exc:
            item = Decoded(m, reason=str(exc)[:1000])
        self.next.submit(item)

    def poll(self) -> None:
        self.next.poll()

    def busy(self) -> bool:
        return self.next.busy()

    def empty(self) -> bool:
        return self.next.empty()

    def drop(self, parts: set[Partition]) -> None:
        self.next.drop(parts)

    def flush(self) -> None:
        self.next.flush()


class Accumulate:
    """Builds batches bounded in size and in time (from the batch's first message).

    A batch is also handed over as soon as the next step frees up after having been busy while
    this batch grew: under load, batches are as large as what arrives during one write.
    """

    def __init__(self, next_step: Step[Batch], max_events: int, max_seconds: float) -> None:
        self.next = next_step
        self.max_events = max_events
        self.max_seconds = max_seconds
        self.batch: Batch | None = None
        self._next_was_busy = False

    def submit(self, item: Decoded) -> None:
        if self.batch is not None and len(self.batch) >= self.max_events:
            self._flush()  # raises Backpressure when the next step is still busy: the loop holds `item`
        if self.batch is None:
            self.batch = Batch()
            self._next_was_busy = self.next.busy()
        if item.key is not None and item.doc is not None:
            self.batch.add(item.message, item.key, item.doc)
        else:
            self.batch.add_bad(item.message, item.reason)

    def poll(self) -> None:
        self.next.poll()
        batch = self.batch
        if batch is None:
            return
        busy = self.next.busy()
        self._next_was_busy |= busy
        due = len(batch) >= self.max_events or time.monotonic() - batch.started >= self.max_seconds
        if (due or (self._next_was_busy and not busy)) and not busy:
            self._flush()

    def _flush(self) -> None:
        assert self.batch is not None
        self.next.submit(self.batch)
        self.batch = None

    def busy(self) -> bool:
        return self.batch is not None and len(self.batch) >= self.max_events and self.next.busy()

    def empty(self) -> bool:
        return self.batch is None and self.next.empty()

    def drop(self, parts: set[Partition]) -> None:
        if self.batch is not None:
            self.batch.drop_partitions(parts)
            if not self.batch.messages:
                self.batch = None
        self.next.drop(parts)

    def flush(self) -> None:
        """Hand over the batch being built whatever its bounds (on stop); Backpressure if not now."""
        if self.batch is not None:
            self._flush()


R = TypeVar("R")


class InThread(Generic[R]):
    """A step whose work on a batch runs elsewhere (a worker thread), up to ``depth`` batches at a time;
    each finished batch goes to the next step in the order they came.

    ``start(batch)`` starts the work on a snapshot it takes itself and returns its future;
    ``finish(batch, result)`` applies the result in the loop's thread (where rebalances happen).
    With ``depth`` 2, the store write of batch N+1 is started while N's is still running: each store
    writes the batches one after the other (``StoreWrite``), so a store never waits for the other one
    to finish a batch before it starts the next.
    """

    def __init__(self, name: str, next_step: Step[Batch], start: Callable[[Batch], Future[R]],
                 finish: Callable[[Batch, R], None], wake: threading.Event | None = None, depth: int = 1) -> None:
        self.name = name
        self.wake = wake  # set when the work is done, so the loop does not sleep through it
        self.next = next_step
        self.start = start
        self.finish = finish
        self.depth = depth
        self.running: deque[_Running[R]] = deque()  # oldest first

    def submit(self, batch: Batch) -> None:
        if self.busy():
            raise Backpressure(self.name)
        future = self.start(batch)
        self.running.append(_Running(batch, future))
        if self.wake is not None:
            future.add_done_callback(lambda _f: self.wake.set() if self.wake else None)

    def poll(self) -> None:
        while self.running:
            oldest = self.running[0]
            if not oldest.done:
                if not oldest.future.done():
                    break
                self.finish(oldest.batch, oldest.future.result())  # Aborted propagates to the loop
                oldest.done = True
            try:
                self.next.submit(oldest.batch)
            except Backpressure:
                break
            self.running.popleft()
        self.next.poll()

    def busy(self) -> bool:
        return len(self.running) >= self.depth

    def empty(self) -> bool:
        return not self.running and self.next.empty()

    def drop(self, parts: set[Partition]) -> None:
        for running in self.running:
            running.batch.drop_partitions(parts)  # the work runs on its own snapshot
        self.next.drop(parts)

    def flush(self) -> None:
        self.next.flush()


@dataclass
class _Running(Generic[R]):
    batch: Batch
    future: Future[R]
    done: bool = False  # finished, waiting for the next step to take it


class Commit:
    """Commits a batch's offsets (``commit``: synchronously, explicit offsets): the end of the chain.

    A failed commit is tried again every ``retry_seconds`` until a later batch's commit or a
    rebalance supersedes it: otherwise, on a topic that goes quiet, the group's offset would stay
    behind what is stored (the lag the stuck verdict reads) until the next event.
    """

    def __init__(self, commit: Callable[[list[TopicPartition]], None], on_commit: Callable[[Batch], None],
                 on_failure: Callable[[Exception], None], retry_seconds: float = 5.0) -> None:
        self.commit = commit
        self.on_commit = on_commit
        self.on_failure = on_failure
        self.retry_seconds = retry_seconds
        self.failed: Batch | None = None  # stored, its commit failed; retried until superseded
        self.retry_at = 0.0

    def submit(self, batch: Batch) -> None:
        self.failed = None  # this batch's offsets are later than a failed one's
        self._commit(batch)

    def _commit(self, batch: Batch) -> None:
        offsets: list[TopicPartition] = batch.offsets()
        if offsets:
            try:
                self.commit(offsets)
            except KafkaException as exc:
                # data is stored; a redelivery after the rebalance is deduplicated by event_id
                self.on_failure(exc)
                log.warning("offset commit failed", extra={"error": str(exc), "batch": len(batch),
                                                           "offsets": [(tp.partition, tp.offset) for tp in offsets]})
                self.failed, self.retry_at = batch, time.monotonic() + self.retry_seconds
                return
        self.on_commit(batch)

    def poll(self) -> None:
        if self.failed is not None and time.monotonic() >= self.retry_at:
            batch, self.failed = self.failed, None
            self._commit(batch)

    def busy(self) -> bool:
        return False

    def empty(self) -> bool:
        return True

    def drop(self, parts: set[Partition]) -> None:
        if self.failed is not None:  # never commit an old offset of a partition that moved
            self.failed.drop_partitions(parts)
            if not self.failed.messages:
                self.failed = None

    def flush(self) -> None:
        pass
