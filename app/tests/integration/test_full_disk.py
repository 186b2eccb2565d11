"""A full disk loses nothing. Each data directory under test sits on a small filesystem made for the
test (a tmpfs of a few MB mounted at it), which is filled to the brim while events flow, then freed.

- PostgreSQL's or ClickHouse's data directory full: the consumer pauses that store's writes (no commit
  past what is not stored, nothing dead-lettered), its /healthz names the store and the error; when
  space is freed, every event lands once in both stores. (PostgreSQL's WAL sits elsewhere here: a full
  WAL disk makes PostgreSQL stop, which the consumer sees as the store being down, the same pause.)
- Kafka's log directory full: the broker takes its log directory offline and stops; the collector
  answers 503 with Retry-After (never a 500, never a 202 for an event that is not in Kafka); when space
  is freed and the broker started again, traffic resumes and every event answered 202 lands once.

Mounting needs root (CI runs as root: there the tests fail instead of skipping).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from footprint.collector import create_app
from footprint.metrics import CollectorMetrics
from footprint.migrate import migrate_clickhouse, migrate_postgres
from footprint.producer import EventProducer
from footprint.settings import Settings
from footprint.stores import ch_client, pg_connect
from helpers import (
    caught_up,
    committed,
    create_topics,
    end_offsets,
    gen_events,
    produce,
    read_dlq,
    settings_env,
    wait_for,
)
from services import CH_PASSWORDS, LocalPostgres, free_port, private_kafka, start_clickhouse


@pytest.fixture(autouse=True)
def _root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the full-disk tests mount small filesystems: run the suite as root (CI does)")
        pytest.skip("mounting a small filesystem needs root")


@contextlib.contextmanager
def small_filesystem(path: Path, megabytes: int, owner: str = "root") -> Iterator[Path]:
    """A tmpfs of ``megabytes`` mounted at ``path`` (made empty), owned by ``owner``."""
    path.mkdir(parents=True, exist_ok=True)
    user = pwd.getpwnam(owner)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m,mode=0700,uid={user.pw_uid},gid={user.pw_gid}",
                    "footprint-full-disk-test", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=False)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(path: Path, leave: int) -> Path:
    """Fill the filesystem of ``path`` until ``leave`` bytes are free; returns the filler file."""
    filler = path / "footprint-test-filler"
    with filler.open("wb") as f:
        os.posix_fallocate(f.fileno(), 0, max(free_bytes(path) - leave, 0))
    return filler


def _counts(s: Settings) -> tuple[tuple[int, int], tuple[int, int]]:
    """(rows, distinct ids) of the events in PostgreSQL and in ClickHouse, synthetic ones (probes) left out
    (no FINAL: a second row of an id waiting for a merge counts)."""
    with pg_connect(s.pg_owner_dsn.get_secret_value(), "owner") as conn:
        pg = conn.execute("SELECT count(*), count(DISTINCT event_id) FROM events WHERE NOT synthetic").fetchone()
    ch = ch_client(s, "owner")
    try:
        row = ch.query("SELECT count(), uniqExact(event_id) FROM events WHERE NOT synthetic").result_rows[0]
    finally:
        ch.close()
    assert pg is not None
    return (int(pg[0]), int(pg[1])), (int(row[0]), int(row[1]))


def _health(port: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return dict(json.loads(r.read()))
    except urllib.error.HTTPError as exc:  # 503 while stuck: the same document
        return dict(json.loads(exc.read()))


def test_a_full_store_pauses_the_consumer_and_loses_nothing(settings: Settings, tmp_path: Path) -> None:
    pg = LocalPostgres()
    ch: Any = None
    with small_filesystem(pg.data, 96, owner="postgres"), small_filesystem(tmp_path / "ch" / "data", 96):
        pg.init(waldir=pg.base / "wal")
        pg.start()
        try:
            pg.setup_roles()
            ch = start_clickhouse(tmp_path / "ch")
            s = settings.model_copy(update={
                "pg_dsn": SecretStr(pg.dsn("footprint_writer")), "pg_owner_dsn": SecretStr(pg.dsn("footprint_owner")),
                "pg_reader_dsn": SecretStr(pg.dsn("footprint_reader")), "ch_host": ch.host, "ch_port": ch.http_port,
                "ch_password": SecretStr(CH_PASSWORDS["footprint_writer"]),
                "ch_owner_password": SecretStr(CH_PASSWORDS["footprint_owner"]),
                "ch_reader_password": SecretStr(CH_PASSWORDS["footprint_reader"])})
            migrate_postgres(s)
            migrate_clickhouse(s)
            _fill_each_store_while_events_flow(s, pg.data, tmp_path / "ch" / "data", tmp_path)
        finally:
            if ch is not None:
                ch.stop()
            pg.destroy()


def _fill_each_store_while_events_flow(s: Settings, pg_data: Path, ch_data: Path, tmp_path: Path) -> None:
    port = free_port()
    env = settings_env(s, consumer_http_port=port, kafka_group_instance_id="full-disk-1", batch_max_events=2000,
                       retry_max_seconds=2, log_level="WARNING")
    log = tmp_path / "consumer.log"
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "footprint.cli", "consume"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    total = humans = 0
    try:
        for seed, (store, data, n) in enumerate((("postgres", pg_data, 10_000), ("clickhouse", ch_data, 6_000))):
            first = gen_events(2000, seed=700 + seed)
            produce(s, first)
            total, humans = total + len(first), humans + sum(not e["synthetic"] for e in first)
            wait_for(lambda: caught_up(s), timeout=90, what=f"the first events stored before {store} fills")
            filler = fill(data, leave=64 * 1024)
            at_full = sum(committed(s).values())
            more = gen_events(n, seed=800 + seed)
            produce(s, more)
            total, humans = total + n, humans + sum(not e["synthetic"] for e in more)
            wait_for(lambda st=store: st in _health(port).get("failing", {}), timeout=90,
                     what=f"/healthz to name {store} as failing")
            health = _health(port)
            why = health["failing"][store]
            assert "No space left on device" in why or "not enough space" in why.lower(), health
            assert health["status"] in ("retrying", "stuck"), health
            time.sleep(3)  # the consumer keeps retrying, and commits nothing it did not store in both
            assert sum(committed(s).values()) < at_full + n, "committed past events a full store did not take"
            assert proc.poll() is None, log.read_text()[-3000:]
            filler.unlink()
            wait_for(lambda: caught_up(s), timeout=180, what=f"every event stored once {store} had room again")
            assert _counts(s) == ((humans, humans), (humans, humans)), f"after {store}'s disk was full"
            assert _health(port)["failing"] == {}
    finally:
        proc.terminate()
        proc.wait(60)
    assert read_dlq(s, 1, timeout=3) == [], "a full disk never makes a dead letter"
    assert sum(end_offsets(s).values()) == total


def test_a_full_kafka_disk_is_a_503_and_every_accepted_event_lands_once(settings: Settings, tmp_path: Path) -> None:
    """The collector with Kafka's log directory on a small filesystem: filled while batches are posted."""
    from confluent_kafka.admin import NewTopic

    from helpers import RunningConsumer

    broker: Any = private_kafka(tmp_path / "kafka")
    accepted: list[str] = []
    statuses: dict[int, int] = {}
    with small_filesystem(broker.kraft_dir, 64):
        broker.start()
        try:
            s = settings.model_copy(update={"kafka_bootstrap": broker.bootstrap, "api_ack_timeout_seconds": 3.0})
            create_topics(broker.bootstrap, [NewTopic(s.kafka_topic, 3, 1, config={"segment.bytes": "1048576"}),
                                             NewTopic(s.kafka_dlq_topic, 1, 1)])
            producer = EventProducer(s.kafka_bootstrap, s.kafka_topic, CollectorMetrics(), message_timeout_ms=3000)
            producer.start()
            auth = {"Authorization": "Bearer test-key"}

            def post(i: int) -> int:
                batch = [{"type": "track", "event": f"full-{i}", "userId": f"u{j}", "messageId": f"full-{i}-{j}",
                          "properties": {"pad": "x" * 400}} for j in range(100)]
                r = client.post("/v1/events", json={"batch": batch}, headers=auth)
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                if r.status_code == 202:
                    accepted.extend(r.json()["event_ids"])
                else:
                    assert r.status_code == 503 and r.headers["retry-after"], (r.status_code, r.text)
                return r.status_code

            try:
                with TestClient(create_app(s, producer), client=("127.0.0.1", 50000)) as client:
                    assert all(post(i) == 202 for i in range(5))
                    filler = fill(broker.kraft_dir, leave=2 * 1024 * 1024)
                    i = 5
                    while post(i) == 202:  # until the disk is full: the broker stops
                        i += 1
                        assert i < 2000, "the disk never filled"
                    assert post(i + 1) == 503, "the broker is gone: every answer is a 503"
                    broker.stop()
                    filler.unlink()
                    broker.start()
                    assert all(post(j) == 202 for j in range(i + 2, i + 7)), "traffic resumes with room again"
            finally:
                producer.close()
            with RunningConsumer(s):
                wait_for(lambda: caught_up(s), timeout=120, what="every accepted event consumed")
            # what the stores hold of this test's events: every 202's, and those of a 503 that Kafka had
            # taken in part (a client retries them with the same messageIds: first write wins)
            with pg_connect(s.pg_reader_dsn.get_secret_value(), "reader") as conn:
                pg = dict(conn.execute("SELECT event_id::text, count(*) FROM events WHERE event LIKE 'full-%'"
                                       " GROUP BY 1").fetchall())
            chc = ch_client(s, "owner")
            try:
                rows, in_ch = chc.query("SELECT count(), groupUniqArray(toString(event_id)) FROM events"
                                        " WHERE event LIKE 'full-%'").result_rows[0]
            finally:
                chc.close()
        finally:
            broker.stop()
    assert statuses.get(500, 0) == 0 and statuses[503] >= 1, statuses
    assert set(accepted) <= set(pg), "every event answered 202 is stored"
    assert set(pg.values()) == {1} and int(rows) == len(in_ch), "once"
    assert set(in_ch) == set(pg), "the same events in both stores"
