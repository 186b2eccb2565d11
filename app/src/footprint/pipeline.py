"""The pipeline builder: the consumer's steps, assembled in their order.

    decode -> accumulate -> write to the stores -> dead-letter -> commit

The store writes follow the store-write policy (``storewrite.py``: bisection, the outage probe,
retries); a batch's dead letters are sent after its writes (the events a store refused join
them); its offsets are committed through the processor's Kafka client, and the commit is counted
(metrics, ``Progress``). The processor drives the head step and calls ``close`` on its way out.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from confluent_kafka import TopicPartition

from footprint.batch import Batch, Msg, Rejected
from footprint.deadletter import DeadLetters, Key
from footprint.interfaces import Step
from footprint.metrics import ConsumerMetrics
from footprint.progress import Progress
from footprint.steps import Accumulate, Commit, Decode, InThread
from footprint.storewrite import StoreWrite

STORE_DEPTH = 2  # batches being written at once (each store writes them one after the other)


class Pipeline:
    """The assembled steps (``head`` takes each message), and what they hold until the consumer stops."""

    def __init__(self, commit: Callable[[list[TopicPartition]], None], policy: StoreWrite, dead_letters: DeadLetters,
                 metrics: ConsumerMetrics, progress: Progress, max_events: int, max_seconds: float,
                 wake: threading.Event) -> None:
        self.policy = policy
        self.dead_letters = dead_letters
        self.metrics = metrics
        self.progress = progress
        self.batches_committed = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dead-letter")
        last = Commit(commit, self._committed, lambda _exc: metrics.commit_failures.inc())
        dead_letter: InThread[set[Key]] = InThread("dead-letter", last, self._dead_letter_start,
                                                   self._dead_letter_done, wake)
        # two batches in the stores at once: each store starts the next as soon as it is done with one
        write: InThread[Rejected] = InThread("stores", dead_letter, policy.start, Batch.reject, wake,
                                             depth=STORE_DEPTH)
        self.head: Step[Msg] = Decode(Accumulate(write, max_events, max_seconds))

    def _dead_letter_start(self, batch: Batch) -> Future[set[Key]]:
        bad = list(batch.bad)

        def send() -> set[Key]:
            sent: set[Key] = set()
            if bad:
                self.policy.retried("dlq", lambda: self.dead_letters.send(bad, sent))
            return sent

        return self._pool.submit(send)

    def _dead_letter_done(self, batch: Batch, sent: set[Key]) -> None:
        self.metrics.dead_lettered.inc(len(sent))

    def _committed(self, batch: Batch) -> None:
        self.batches_committed += 1
        self.progress.moved()
        self.metrics.stored.inc(len(batch.docs))
        self.metrics.batch_seconds.observe(time.monotonic() - batch.started)

    def close(self) -> None:
        """After the Kafka client closed: the dead letters still queued, the workers, the stores."""
        self.dead_letters.producer.flush(10)
        self._pool.shutdown(wait=True)
        self.policy.close()
