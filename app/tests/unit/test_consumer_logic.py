from __future__ import annotations

import subprocess
import sys
from typing import Any

from footprint.consumer import Batch
from footprint.migrate import load, split_statements
from footprint.settings import Settings


class Msg:
    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self._t, self._p, self._o = topic, partition, offset

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o


def test_batch_commits_the_next_offset_per_partition_and_drops_revoked() -> None:
    b = Batch([Msg("t", 0, 5), Msg("t", 1, 9), Msg("t", 0, 7), Msg("t", 2, 0)])  # type: ignore[list-item]
    assert [(tp.partition, tp.offset) for tp in b.offsets()] == [(0, 8), (1, 10), (2, 1)]
    assert b.drop_partitions({("t", 1), ("t", 2)}) == 2
    assert [(tp.partition, tp.offset) for tp in b.offsets()] == [(0, 8)]


def test_revoked_partitions_leave_docs_and_pending_dead_letters_too() -> None:
    msgs = [Msg("t", 0, 1), Msg("t", 1, 2), Msg("t", 0, 3), Msg("t", 1, 4)]
    b = Batch(list(msgs), docs={"a": b"a", "b": b"b"}, origin={"a": msgs[0], "b": msgs[1]},  # type: ignore[arg-type]
              bad=[(msgs[2], "bad 0"), (msgs[3], "bad 1")])  # type: ignore[list-item]
    assert b.drop_partitions({("t", 1)}) == 2
    assert list(b.docs) == ["a"] and list(b.origin) == ["a"]
    assert [reason for _m, reason in b.bad] == ["bad 0"]  # the new owner dead-letters partition 1's itself


def test_postgres_data_errors_are_told_from_outages_by_sqlstate_class() -> None:
    import psycopg

    from footprint.sinks import is_pg_data_error

    for exc in (psycopg.errors.ProgramLimitExceeded("index row size 3000 exceeds btree maximum, 2704"),
                psycopg.errors.CheckViolation("type"), psycopg.errors.InvalidTextRepresentation("x"),
                psycopg.DataError("x")):
        assert is_pg_data_error(exc), exc
    for exc in (psycopg.OperationalError("connection refused"), psycopg.errors.AdminShutdown("bye"),
                psycopg.errors.InsufficientPrivilege("no"), psycopg.errors.DiskFull("full"), ValueError("x")):
        assert not is_pg_data_error(exc), exc


def test_a_failed_offset_commit_is_counted() -> None:
    from confluent_kafka import KafkaError, KafkaException

    from footprint.consumer import BatchConsumer

    class FailingCommit:
        def commit(self, **_kw: Any) -> None:
            raise KafkaException(KafkaError(KafkaError.REBALANCE_IN_PROGRESS))

        def close(self) -> None:
            pass

    consumer = BatchConsumer(Settings(kafka_bootstrap="127.0.0.1:9"), [], consumer=FailingCommit())  # type: ignore[arg-type]
    try:
        consumer._commit(Batch([Msg("t", 0, 4)]))  # type: ignore[list-item]
    finally:
        consumer.close()
    assert consumer.metrics.commit_failures._value.get() == 1
    assert consumer.batches_committed == 0


def test_migrations_are_numbered_and_split() -> None:
    for store in ("postgres", "clickhouse"):
        migs = load(store)
        assert [m.version for m in migs] == list(range(1, len(migs) + 1))
    ch = split_statements(load("clickhouse")[0].text)
    assert len(ch) == 3 and all("IF NOT EXISTS" in s for s in ch)


def test_settings_from_environment(monkeypatch: Any) -> None:
    monkeypatch.setenv("FOOTPRINT_API_KEYS", " key-aa1, key-bb2 ,,key-cc3")
    monkeypatch.setenv("FOOTPRINT_CH_PORT", "18123")
    monkeypatch.setenv("FOOTPRINT_KAFKA_TOPIC", "x")
    s = Settings()
    assert [k.get_secret_value() for k in s.api_keys] == ["key-aa1", "key-bb2", "key-cc3"]
    assert (s.ch_port, s.kafka_topic, s.kafka_dlq_topic) == (18123, "x", "web-logs-topic.dlq")
    assert "key-aa1" not in repr(s)


def test_help_lists_every_command() -> None:
    out = subprocess.run([sys.executable, "-m", "footprint.cli", "--help"], capture_output=True, text=True,
                         check=True).stdout
    for cmd in ("serve", "consume", "migrate", "stats", "tail", "check", "version"):
        assert cmd in out
    for cmd in ("serve", "consume", "migrate", "stats", "tail", "check"):
        subprocess.run([sys.executable, "-m", "footprint.cli", cmd, "--help"], check=True, capture_output=True)


def test_invalid_setting_is_one_line_exit_2() -> None:
    import os

    env = dict(os.environ, FOOTPRINT_CH_PORT="not-a-port")
    res = subprocess.run([sys.executable, "-m", "footprint.cli", "version"], capture_output=True, text=True, env=env)
    assert res.returncode == 2 and "ch_port" in res.stderr and "Traceback" not in res.stderr


class PickySink:
    """A store that refuses some content (a data error, not an outage)."""

    name = "picky"

    def __init__(self) -> None:
        self.stored: list[bytes] = []
        self.calls = 0

    def write(self, docs: list[bytes]) -> int:
        from footprint.sinks import DataRejected

        self.calls += 1
        if any(b"BAD" in d for d in docs):
            raise DataRejected("cannot store BAD")
        self.stored.extend(docs)
        return len(docs)

    def close(self) -> None:
        pass


def test_a_refused_batch_is_bisected_and_only_the_refused_events_are_dead_lettered() -> None:
    from footprint.consumer import BatchConsumer

    sink = PickySink()
    consumer = BatchConsumer(Settings(kafka_bootstrap="127.0.0.1:9"), [sink])
    try:
        docs = {i: (b"BAD %d" if i in (3, 17) else b"ok %d") % i for i in range(32)}
        batch = Batch([Msg("t", 0, i) for i in range(32)], docs=dict(docs),  # type: ignore[misc]
                      origin={i: Msg("t", 0, i) for i in range(32)})
        consumer._isolate(sink, batch)
    finally:
        consumer._pool.shutdown()
    assert sorted(sink.stored) == sorted(d for i, d in docs.items() if i not in (3, 17))
    assert sorted(m.offset() for m, _reason in batch.bad) == [3, 17]
    assert all("picky rejected: cannot store BAD" in reason for _m, reason in batch.bad)
    assert set(batch.docs) == set(range(32)) - {3, 17}
    assert sink.calls < 32  # bisected, not one write per event
