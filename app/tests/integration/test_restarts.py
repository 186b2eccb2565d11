"""The consumer killed with SIGKILL again and again under load: every event stored exactly once, and
each replacement (same static group member id) resumes its partitions within seconds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from footprint.settings import Settings
from helpers import caught_up, ch_ids, committed, gen_events, pg_ids, produce, settings_env, wait_for

KILLS = 4


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "footprint.cli", "consume"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)


def test_kill_9_in_a_row_under_load_loses_and_duplicates_nothing(settings: Settings, tmp_path: Path) -> None:
    events = gen_events(24_000, seed=141)
    ids = [e["event_id"] for e in events]
    env = settings_env(settings, kafka_group_instance_id="restart-test-1", consumer_http_port=0,
                       batch_max_events=2000, log_level="WARNING")
    log = tmp_path / "consumer.log"

    def feed() -> None:
        for i in range(0, len(events), 2000):
            produce(settings, events[i:i + 2000])
            time.sleep(0.5)

    feeder = threading.Thread(target=feed)
    proc = _start(env, log)
    feeder.start()
    recoveries = []
    try:
        for _ in range(KILLS):
            before = dict(committed(settings))
            wait_for(lambda b=before: committed(settings) != b, timeout=60, what="a commit before the kill")
            time.sleep(0.7)  # kill somewhere inside a later batch
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            killed_at = time.monotonic()
            at_kill = dict(committed(settings))
            proc = _start(env, log)
            # the replacement's first commit (or the end of the data, if nothing was left to do)
            wait_for(lambda a=at_kill: committed(settings) != a or (not feeder.is_alive()
                     and caught_up(settings)), timeout=60, what="first commit after restart")
            recoveries.append(time.monotonic() - killed_at)
        feeder.join(120)
        wait_for(lambda: caught_up(settings), timeout=120, what="everything committed")
    finally:
        proc.terminate()
        proc.wait(60)
    print("kill -9 -> first commit of the replacement (s):", [round(r, 1) for r in recoveries])
    assert pg_ids(settings, ids) == {i: 1 for i in ids}
    assert ch_ids(settings, ids, final=False) == {i: 1 for i in ids}  # no second row, not even before a merge
    assert "Traceback" not in log.read_text()


def test_the_consumer_is_a_static_group_member(settings: Settings, tmp_path: Path) -> None:
    """What makes the restart fast: the member carries its group.instance.id (timings: benchmarks/)."""
    from confluent_kafka.admin import AdminClient

    env = settings_env(settings, kafka_group_instance_id="static-test-1", consumer_http_port=0)
    proc = _start(env, tmp_path / "consumer.log")
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    try:
        def members() -> list[str | None]:
            group = admin.describe_consumer_groups([settings.kafka_group])[settings.kafka_group].result(10)
            return [m.group_instance_id for m in group.members]

        wait_for(lambda: members() == ["static-test-1"], timeout=60, what="the static member in the group")
    finally:
        proc.terminate()
        assert proc.wait(60) == 0
