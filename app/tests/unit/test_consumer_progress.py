"""The consumer never stays stalled after a rebalance, and says so when it makes no progress:
the pause state across revoke and assign, the stuck verdict, and systemd's watchdog (issue 26)."""

from __future__ import annotations

import logging
import os
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from fakes import FakeMessage, MemoryStore
from test_consumer_loop import Rig, count, running, wait

from footprint import processor as consumer_module
from footprint.progress import Progress
from footprint.storewrite import store
from footprint.watchdog import RESTARTS_FILE, Watchdog, restarts_recorded


class HangingStore(MemoryStore):
    """A store whose writes hang (no error, no answer) while ``hang`` is set."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.hang = threading.Event()
        self.release = threading.Event()

    def write(self, docs: dict[str, bytes]) -> int:
        if self.hang.is_set():
            self.release.wait(30)
        return super().write(docs)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_partition_paused_before_a_rebalance_reads_again_after_it() -> None:
    """The sequence of issue 26: a write hangs, reading pauses (backpressure), every partition is
    revoked and assigned again in a later turn, the write returns: everything is stored once."""
    ch = HangingStore("ch")
    rig = Rig([MemoryStore("pg"), ch], batch_max_events=20)
    first = rig.fill(30)
    with running(rig):
        wait(rig.caught_up, what="first events committed")
        ch.hang.set()
        later = rig.fill(300)
        wait(lambda: rig.kafka.paused == {0, 1, 2}, what="paused by backpressure")
        for p in (0, 1, 2):
            rig.kafka.revoke(p)
        wait(lambda: rig.consumer.assigned == [], what="revoked")
        wait(lambda: rig.consumer.assigned == [("t", 0), ("t", 1), ("t", 2)], what="assigned again")
        ch.hang.clear()
        ch.release.set()
        wait(rig.caught_up, what="everything committed after the rebalance, no restart")
        wait(lambda: rig.kafka.paused == set(), what="resumed")
    assert set(ch.rows) == set(first + later) and set(rig.stores[0].rows) == set(ch.rows)


def test_a_consumer_with_lag_that_reads_nothing_is_stuck_and_starves_the_watchdog(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever the cause (here a client that never resumes a paused partition): lag, and nothing
    consumed or committed for ``stuck_after_seconds``, is stuck; the watchdog hears nothing."""
    monkeypatch.setattr(consumer_module, "LAG_EVERY_SECONDS", 0.3)  # 10 s in service
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(tmp_path / "notify"))
    listener.settimeout(0.1)
    ch = MemoryStore("ch")
    rig = Rig([MemoryStore("pg"), ch], batch_max_events=20, stuck_after_seconds=1.0)
    dog = Watchdog({"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "300000"})
    stop_feeding = threading.Event()
    dog.keep_fed(lambda: rig.consumer.stuck() is None, stop_feeding)
    rig.fill(30)
    with running(rig):
        wait(rig.caught_up, what="first events committed")
        assert listener.recv(64) == b"WATCHDOG=1"  # fed while it moves
        rig.kafka.ignore_resume = True
        ch.down.set()  # an outage pauses reading (retrying: not stuck)
        rig.fill(300)
        wait(lambda: rig.kafka.paused == {0, 1, 2}, what="paused")
        ch.down.clear()  # the outage ends, but the client never reads those partitions again
        wait(lambda: rig.consumer.stuck() is not None, timeout=10, what="the stuck verdict")
        assert "wait in its partitions" in (rig.consumer.stuck() or "")
        wait(lambda: rig.consumer.metrics.registry.get_sample_value("footprint_consumer_stuck") == 1,
             what="the stuck gauge")
        while True:  # drain pings sent before the verdict
            try:
                listener.recv(64)
            except TimeoutError:
                break
        with pytest.raises(TimeoutError):
            listener.settimeout(1.0)
            listener.recv(64)  # no ping while stuck
    stop_feeding.set()
    assert any("consumer stuck" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
    listener.close()


def test_the_pause_state_is_applied_again_even_if_the_client_lost_it() -> None:
    """A client whose partitions got paused behind the loop's back is resumed within seconds."""
    rig = Rig([MemoryStore("pg"), MemoryStore("ch")])
    rig.fill(9)
    with running(rig):
        wait(rig.caught_up, what="committed")
        rig.kafka.paused = {0, 1, 2}  # e.g. a pause kept by the client across a re-assignment
        ids = rig.fill(30)
        wait(rig.caught_up, timeout=15, what="resumed by the loop's reconciliation")
    assert set(ids) <= set(rig.stores[1].rows)


def test_progress_verdicts() -> None:
    clock = Clock()
    p = Progress(60, clock=clock)
    clock.now += 120
    p.turned()
    assert p.verdict() is None  # idle, lag unknown: not stuck
    p.measured(0)
    assert p.verdict() is None  # idle with no lag: not stuck
    p.measured(500)
    assert p.verdict() == "500 messages wait in its partitions, but nothing was consumed or committed for 120 s"
    assert p.verdict(retrying=5) is None  # an outage being retried is known, not stuck
    p.moved()
    assert p.lag is None and p.verdict() is None  # movement: the old lag is stale
    clock.now += 61
    assert p.verdict() == "the consume loop has not turned for 61 s"
    assert not p.lag_due(10) or p.idle_seconds() >= 10


def test_the_stuck_window_starts_again_once_a_store_is_no_longer_waited_on() -> None:
    """An outage longer than ``stuck_after`` ends: the write that was retried returns a moment before its batch
    commits, and that moment is not "stuck" (nothing moved for 120 s, but the consumer waited on a store)."""
    clock = Clock()
    p = Progress(60, clock=clock)
    p.measured(500)
    clock.now += 120
    p.turned()
    assert p.verdict(retrying=120) is None  # the outage, retried
    clock.now += 1
    p.turned()
    assert p.verdict() is None  # the write returned; its commit comes next turn
    clock.now += 60
    p.turned()
    assert p.verdict() == "500 messages wait in its partitions, but nothing was consumed or committed for 181 s"


def test_a_write_is_waited_for_until_it_hangs_and_a_blocked_loop_until_its_own_limit() -> None:
    clock = Clock()
    p = Progress(60, loop_after=135, hang_after=180, clock=clock)
    p.measured(500)
    clock.now += 100
    p.turned()
    assert p.verdict(writing=100) is None  # a slow write: waited for
    assert p.verdict(retrying=90, writing=100) is None
    assert p.verdict(writing=181) == "a store write has not returned for 181 s"  # hung, retried or not
    assert p.verdict(retrying=5, writing=200) == "a store write has not returned for 200 s"
    clock.now += 100
    assert p.verdict(writing=10) is None  # the loop blocked 100 s (a commit waiting for Kafka): not yet
    clock.now += 40
    assert p.verdict() == "the consume loop has not turned for 140 s"


def test_a_failed_commit_is_retried_so_a_quiet_topic_shows_no_lag() -> None:
    rig = Rig([MemoryStore("pg"), MemoryStore("ch")])
    real_commit = rig.kafka.commit
    failures = [1]

    def flaky(offsets: Any, asynchronous: bool = False) -> None:
        if failures:
            failures.pop()
            raise KafkaException(KafkaError(KafkaError.REQUEST_TIMED_OUT))
        real_commit(offsets, asynchronous)

    rig.kafka.commit = flaky  # type: ignore[method-assign]
    rig.fill(9)
    with running(rig):
        wait(rig.caught_up, timeout=15, what="the failed commit retried (nothing else arrives)")
    assert count(rig.consumer.metrics.commit_failures) == 1


def test_a_fatal_kafka_error_ends_the_loop() -> None:
    rig = Rig([MemoryStore("pg"), MemoryStore("ch")])
    rig.kafka.logs[0].append(FakeMessage("t", 0, 0, error=KafkaError(KafkaError._FENCED, fatal=True)))
    with pytest.raises(KafkaException):
        rig.consumer.run()
    assert rig.kafka.closed


def test_the_watchdog_is_fed_from_its_own_thread_only_while_moving(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        listener.settimeout(1.0)
        moving = threading.Event()
        moving.set()
        stop = threading.Event()
        Watchdog({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "300000"}).keep_fed(moving.is_set, stop)
        try:
            assert listener.recv(64) == b"WATCHDOG=1"
            moving.clear()
            while True:  # drain what was sent before
                try:
                    listener.settimeout(0.3)
                    listener.recv(64)
                except TimeoutError:
                    break
            with pytest.raises(TimeoutError):
                listener.settimeout(1.0)
                listener.recv(64)
        finally:
            stop.set()
    assert Watchdog({}).keep_fed(lambda: True, threading.Event()) is None  # outside systemd: no thread


def test_watchdog_pings_systemd_at_most_three_times_per_period(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        listener.settimeout(0.2)
        dog = Watchdog({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())})
        assert dog.enabled and dog.interval == 1.0
        dog.ping()
        dog.ping()  # within the interval: not sent
        assert listener.recv(64) == b"WATCHDOG=1"
        with pytest.raises(TimeoutError):
            listener.recv(64)
    assert not Watchdog({}).enabled
    assert not Watchdog({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}).enabled
    Watchdog({}).ping()  # outside systemd: nothing, no error


def test_watchdog_restarts_are_counted_from_the_state_directory(tmp_path: Path) -> None:
    assert restarts_recorded("") == 0 and restarts_recorded(str(tmp_path)) == 0
    (tmp_path / RESTARTS_FILE).write_text("2026-12-04T10:00:00Z\n2026-12-04T11:00:00Z\n")
    assert restarts_recorded(str(tmp_path)) == 2


def test_a_failed_write_whose_halves_all_succeed_says_nothing_was_refused(caplog: pytest.LogCaptureFixture) -> None:
    class FlakyOnce(MemoryStore):
        def write(self, docs: dict[str, bytes]) -> Any:
            if self.writes == 0:
                self.writes += 1
                raise TimeoutError("read timed out")
            return super().write(docs)

    s = FlakyOnce("ch")
    assert store(s, {"a": b"1", "b": b"2"}) == []  # type: ignore[arg-type]
    messages = [r.getMessage() for r in caplog.records]
    assert not any("dead-lettering" in m for m in messages)
    assert any("nothing refused" in m for m in messages)
    assert set(s.rows) == {"a", "b"}


def test_consumed_counter_still_counts() -> None:
    rig = Rig([MemoryStore("pg"), MemoryStore("ch")])
    rig.fill(12)
    with running(rig):
        wait(rig.caught_up, what="committed")
    assert count(rig.consumer.metrics.consumed) == 12
