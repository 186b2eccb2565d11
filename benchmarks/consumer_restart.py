#!/usr/bin/env python3
"""Benchmark (4): how long after a `kill -9` of the consumer does its replacement commit again?

Same run, same services (PostgreSQL, Kafka 4.0 KRaft, ClickHouse engine, all on this machine), a
steady trickle of events, the real `footprint consume` process killed with SIGKILL and restarted at
once, N times, for each of:
  static  : FOOTPRINT_KAFKA_GROUP_INSTANCE_ID set (what the role deploys): the replacement takes
            the dead member's place at once
  dynamic : no instance id: the group waits out the dead member's session (45 s) first
The figure is seconds from the kill to the first offset commit made by the replacement. Target
(issue 11): <= 10 s with static membership.

  python benchmarks/consumer_restart.py [--kills 5] [--dynamic-kills 2]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _services import committed_total, machine, services
from helpers import gen_events, produce, settings_env


def trickle(settings: Any, stop: threading.Event, per_second: int = 500) -> None:
    seed = 0
    while not stop.is_set():
        seed += 1
        produce(settings, gen_events(per_second // 5, seed=seed))
        stop.wait(0.2)


def measure(settings: Any, kills: int, instance_id: str, log: Path) -> list[float]:
    from confluent_kafka import Consumer, TopicPartition

    env = settings_env(settings, kafka_group_instance_id=instance_id, consumer_http_port=0, log_level="WARNING",
                       batch_max_seconds=0.5)
    probe = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": settings.kafka_group})
    parts = [TopicPartition(settings.kafka_topic, p) for p in range(3)]

    def start() -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen([sys.executable, "-m", "footprint.cli", "consume"], env=env, stdout=out,
                                    stderr=subprocess.STDOUT)

    def wait_commit(after: int, timeout: float = 120) -> None:
        end = time.monotonic() + timeout
        while committed_total(probe, parts) <= after:
            if time.monotonic() > end:
                raise TimeoutError("no commit")
            time.sleep(0.05)

    proc = start()
    times = []
    try:
        wait_commit(committed_total(probe, parts))
        for i in range(kills):
            time.sleep(2)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            killed = time.monotonic()
            at_kill = committed_total(probe, parts)
            proc = start()
            wait_commit(at_kill)
            times.append(time.monotonic() - killed)
            print(f"  {instance_id or 'dynamic'} kill {i + 1}: first commit after {times[-1]:.1f} s", flush=True)
    finally:
        proc.terminate()
        proc.wait(60)
        probe.close()
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--dynamic-kills", type=int, default=2)
    args = ap.parse_args()
    print(machine())
    with services() as base:
        stop = threading.Event()
        feeder = threading.Thread(target=trickle, args=(base, stop), daemon=True)
        feeder.start()
        log = Path(tempfile.mkdtemp(prefix="fp-restart-")) / "consumer.log"
        try:
            static = measure(base, args.kills, "bench-consumer-1", log)
            dynamic = measure(base.model_copy(update={"kafka_group": base.kafka_group + "-dyn"}),
                              args.dynamic_kills, "", log)
        finally:
            stop.set()
            feeder.join(30)
    s_med, d_med = statistics.median(static), statistics.median(dynamic)
    print("\nkill -9 -> first commit of the replacement, seconds (median / max over kills):")
    print(f"  static membership  : {s_med:5.1f} / {max(static):5.1f}  ({len(static)} kills)  target <= 10")
    print(f"  dynamic membership : {d_med:5.1f} / {max(dynamic):5.1f}  ({len(dynamic)} kills)")
    print(f"  ratio dynamic/static (median): {d_med / s_med:.1f}x")


if __name__ == "__main__":
    main()
