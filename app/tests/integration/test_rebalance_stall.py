"""A rebalance while a store write hangs must not stop the group (issue 26).

The sequence seen on a cluster: one consumer's ClickHouse insert hangs (its store stopped), the
other consumer stops answering and leaves the group by session timeout, both come back. The
consumer whose write hung was paused (backpressure) when its partitions were revoked and assigned
again; it must read again without a restart, and the group must store every event exactly once.
Real Kafka, real stores: the hang is the ClickHouse process itself stopped with SIGSTOP.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from footprint.contract import encode_event
from footprint.settings import Settings
from helpers import RunningConsumer, caught_up, ch_ids, gen_events, pg_ids, settings_env, wait_for

SESSION_TIMEOUT_MS = 6_000  # the broker's minimum: the stopped consumer leaves the group quickly


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "footprint.cli", "consume"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)


def test_a_rebalance_during_a_hung_store_write_does_not_stall_the_group(
    settings: Settings, clickhouse: Any, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"kafka_session_timeout_ms": SESSION_TIMEOUT_MS, "batch_max_events": 100,
                                           "batch_max_seconds": 0.2, "kafka_group_instance_id": "stall-a"})
    events = gen_events(6_000, seed=2626)
    ids = [e["event_id"] for e in events]
    env = settings_env(settings, kafka_group_instance_id="stall-b", log_level="INFO")
    log = tmp_path / "consumer-b.log"
    stop_feeding = threading.Event()

    def feed() -> None:  # ~300 events/s for ~20 s
        producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "enable.idempotence": True,
                             "acks": "all", "linger.ms": 20})
        for i, event in enumerate(events):
            producer.produce(settings.kafka_topic, value=encode_event(event), key=event["event_id"])
            if i % 30 == 29 and stop_feeding.wait(0.1):
                break
            producer.poll(0)
        assert producer.flush(60) == 0

    other = _start(env, log)
    feeder = threading.Thread(target=feed)
    standin = clickhouse._proc
    try:
        with RunningConsumer(settings) as rc:
            feeder.start()
            wait_for(lambda: rc.consumer.batches_committed >= 3, what="the consumer in this process commits")
            # the store hangs and the other consumer stops answering, past the session timeout
            os.kill(standin.pid, signal.SIGSTOP)
            os.kill(other.pid, signal.SIGSTOP)
            try:
                time.sleep(SESSION_TIMEOUT_MS / 1000 * 2.5)  # the other consumer leaves: a rebalance
                os.kill(other.pid, signal.SIGCONT)
                time.sleep(SESSION_TIMEOUT_MS / 1000 * 1.5)  # it comes back: a second one, the store still hung
            finally:
                os.kill(standin.pid, signal.SIGCONT)
                os.kill(other.pid, signal.SIGCONT)
            resumed = time.monotonic()
            feeder.join(120)
            wait_for(lambda: caught_up(settings), timeout=90, what="the group stores every event, no restart")
            print(f"from the stores' return to the last event committed: {time.monotonic() - resumed:.1f} s")
            assert rc.consumer.stuck() is None
    finally:
        stop_feeding.set()
        other.terminate()
        other.wait(60)
    assert pg_ids(settings, ids) == {i: 1 for i in ids}
    assert ch_ids(settings, ids, final=False) == {i: 1 for i in ids}
    assert "Traceback" not in log.read_text()
