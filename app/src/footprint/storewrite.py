"""The store-write policy: what the consumer does when a store fails a batch.

Data or outage is decided by the store itself, not by a list of error codes: when a write
fails, the sink is asked to take a known-good event (``probe``). If it cannot, the store is down:
that store's write is retried with backoff (the other store's is not), reading pauses once the
next batch is full, nothing is skipped. If it can, the batch is bisected down to the events that
store refuses; those (and only those) are dead-lettered with the store's reason and their offsets
committed, so no message can stall the consumer. One exception, as the probe cannot see it: a store
that says it ran out of room (``stores.exhausted``: no space left on its disk) may still take the
known-good event, which adds no row, while it refuses every new one, so such an error is an outage
whatever the probe says: retried, never bisected into dead letters.

A write retried for ``stuck_after`` seconds is logged as an error once a minute (the stuck alarm);
the dead-letter topic's sends are retried the same way, under the name "dlq".
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from footprint import backoff
from footprint.batch import Batch, Docs, Rejected
from footprint.interfaces import Aborted, Erased, Sink, StoreOutage
from footprint.metrics import ConsumerMetrics
from footprint.stores import exhausted

log = logging.getLogger("footprint.consumer")

R = TypeVar("R")
FIRST_RETRY_SECONDS = 0.5
ALARM_EVERY_SECONDS = 60.0


def short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def store(sink: Sink, docs: Docs) -> Rejected:
    """Write ``docs`` to ``sink``; returns the events a healthy store refused, with its reasons.

    Raises ``StoreOutage`` when the store does not take its known-good probe event either.
    """
    try:
        sink.write(docs)
        return []
    except Exception as exc:
        _require_up(sink, exc)
        first = short(exc)
    rejected: Rejected = []

    def split(keys: list[str]) -> None:
        mid = len(keys) // 2
        for part in (keys[:mid], keys[mid:]):
            try:
                sink.write({k: docs[k] for k in part})
            except Exception as exc:
                _require_up(sink, exc)
                if len(part) == 1:
                    rejected.append((part[0], f"{sink.name} refused it: {short(exc)}"))
                else:
                    split(part)

    if len(docs) == 1:
        rejected.append((next(iter(docs)), f"{sink.name} refused it: {first}"))
    else:
        split(list(docs))
    if rejected:
        log.warning("store refused events; dead-lettering them", extra={"store": sink.name, "rejected": len(rejected)})
    else:  # e.g. a write that timed out while the store hung: every half was then taken
        log.warning("store failed a batch write, then took all of it in smaller writes: nothing refused",
                    extra={"store": sink.name, "events": len(docs), "error": first})
    return rejected


def _require_up(sink: Sink, exc: BaseException) -> None:
    if exhausted(exc):
        raise StoreOutage(f"{sink.name}: {short(exc)}") from exc
    try:
        sink.probe()
    except Exception as probe_exc:
        raise StoreOutage(f"{sink.name}: {short(exc)}") from probe_exc


def rejected_union(results: list[Rejected]) -> Rejected:
    """The refusals of several stores, each event once."""
    seen: dict[str, str] = {}
    for rejected in results:
        for key, reason in rejected:
            seen.setdefault(key, reason)
    return list(seen.items())


class Retry:
    """One store's (or the dead-letter topic's) writes retried through the backoff after an outage.

    Knows since when it has been failing (for the metric and the "stuck" alarm) and how long the
    attempt running now has waited; gives up with ``Aborted`` when ``stop`` is set.
    """

    def __init__(self, stop: threading.Event, max_seconds: float) -> None:
        self.stop = stop
        self.max_seconds = max_seconds
        self.failing_since: float | None = None
        self.attempt_since: float | None = None  # the current attempt started then (None: none runs)

    def run(self, what: str, attempt: Callable[[], R], on_failure: Callable[[str, Exception, float], None]) -> R:
        def timed() -> R:
            self.attempt_since = time.monotonic()
            try:
                return attempt()
            finally:
                self.attempt_since = None

        def failed(exc: Exception, delay: float) -> None:
            if self.failing_since is None:
                self.failing_since = time.monotonic()
            on_failure(what, exc, delay)

        try:
            result = backoff.retry(timed, failed, self.stop, FIRST_RETRY_SECONDS, self.max_seconds,
                                   give_up_on=(Aborted,))
        except backoff.Stopped as stopped:
            raise Aborted(what) from stopped.__cause__
        self.failing_since = None
        return result

    def failing_seconds(self) -> float:
        since = self.failing_since
        return 0.0 if since is None else time.monotonic() - since

    def attempt_seconds(self) -> float:
        """How long the attempt running now has been waiting for its store (0: none runs)."""
        since = self.attempt_since
        return 0.0 if since is None else time.monotonic() - since


class StoreWrite:
    """Writes a batch to every store at once, each retried on its own after an outage; says which
    writes fail now, for how long, and raises the stuck alarm."""

    def __init__(self, sinks: list[Sink], stop: threading.Event, metrics: ConsumerMetrics, retry_max_seconds: float,
                 stuck_after_seconds: float, erased: Erased | None = None) -> None:
        self.sinks = sinks
        self.erased = erased
        self.metrics = metrics
        self.stuck_after_seconds = stuck_after_seconds
        # one thread per store: each writes the batches in the order they were started, one at a time
        self._queues = {s.name: ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sink-{s.name}") for s in sinks}
        self._retries = {name: Retry(stop, retry_max_seconds) for name in [*(s.name for s in sinks), "dlq"]}
        self._last_alarm = 0.0
        self._alarm_lock = threading.Lock()
        self._last_error: dict[str, str] = {}

    def start(self, batch: Batch) -> Future[Rejected]:
        """Queue the write of ``batch`` to every store; the future holds the events a healthy store refused.

        Each store writes its batches in the order they were started, each retried on its own after an
        outage, so a store can be one batch ahead of the other; the future is done when every store took
        the batch (or gave up: ``Aborted``).
        """
        docs = dict(batch.docs)  # a snapshot: rebalances change the batch in the loop's thread
        kept = _Once(lambda: self.erased.filter(docs) if self.erased is not None else docs)

        def write(sink: Sink) -> Rejected:
            mine = kept()  # erased users' events never reach a store (their offsets commit); one list for all
            return store(sink, mine) if mine else []

        futures = [self._queues[s.name].submit(self._retries[s.name].run, s.name, lambda s=s: write(s), self._failed)
                   for s in self.sinks]
        return _all_of(futures)

    def retried(self, what: str, attempt: Callable[[], R]) -> R:
        """``attempt`` retried as ``what``'s writes are (the dead-letter topic's: "dlq")."""
        return self._retries[what].run(what, attempt, self._failed)

    def _failed(self, what: str, exc: Exception, retry_in: float) -> None:
        """A store or the dead-letter topic is down (called from the workers)."""
        self.metrics.store_errors.labels(what).inc()
        self._last_error[what] = short(exc)
        log.warning("store write failed; batch kept, retrying",
                    extra={"store": what, "error": short(exc), "retry_in": retry_in})
        retrying = self.retrying_seconds()
        with self._alarm_lock:
            if retrying >= self.stuck_after_seconds and time.monotonic() - self._last_alarm >= ALARM_EVERY_SECONDS:
                self._last_alarm = time.monotonic()
                log.error(
                    "the same batch has been retrying for a while: nothing after it is committed until "
                    f"{what} takes it; fix {what} (see the error), the consumer goes on by itself",
                    extra={"store": what, "retrying_seconds": round(retrying), "error": short(exc)},
                )

    def failing(self) -> dict[str, str]:
        """The stores (and "dlq") whose write is being retried now -> the error of the last attempt."""
        return {what: self._last_error.get(what, "") for what, r in self._retries.items()
                if r.failing_since is not None}

    def retrying_seconds(self) -> float:
        """How long the oldest failing write has been retried (0: none is)."""
        return max((r.failing_seconds() for r in self._retries.values()), default=0.0)

    def writing_seconds(self) -> float:
        """How long the store write (or dead-letter send) running now has been waiting (0: none runs)."""
        return max((r.attempt_seconds() for r in self._retries.values()), default=0.0)

    def close(self) -> None:
        for queue in self._queues.values():
            queue.shutdown(wait=True)
        for sink in self.sinks:
            sink.close()


class _Once:
    """``make()`` run once, by whichever store's thread asks first; the others get the same value."""

    def __init__(self, make: Callable[[], Docs]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._value: Docs | None = None

    def __call__(self) -> Docs:
        with self._lock:
            if self._value is None:
                self._value = self._make()
            return self._value


def _all_of(futures: list[Future[Rejected]]) -> Future[Rejected]:
    """Done when every one of ``futures`` is: their refusals' union, or the first one's exception."""
    combined: Future[Rejected] = Future()
    left = [len(futures)]
    lock = threading.Lock()

    def one_done(_f: Future[Rejected]) -> None:
        with lock:
            left[0] -= 1
            if left[0]:
                return
        errors = [f.exception() for f in futures if f.exception() is not None]
        if errors:
            combined.set_exception(errors[0])
        else:
            combined.set_result(rejected_union([f.result() for f in futures]))

    if not futures:
        combined.set_result([])
    for f in futures:
        f.add_done_callback(one_done)
    return combined
