from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from confluent_kafka import KafkaError
from fakes import FakeMessage as Msg
from fakes import MemoryProducer

from footprint.batch import Batch
from footprint.deadletter import DeadLetters, DeadLetterUnavailable
from footprint.interfaces import StoreOutage
from footprint.migrate import load, split_statements
from footprint.settings import Settings
from footprint.storewrite import store


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


def test_migrations_are_numbered_and_split() -> None:
    for name in ("postgres", "clickhouse"):
        migs = load(name)
        versions = [m.version for m in migs]  # one number per release across both stores: gaps allowed
        assert versions == sorted(set(versions)) and versions[0] == 1, (name, versions)
    ch = split_statements(load("clickhouse")[0].text)
    assert len(ch) == 3 and all("IF NOT EXISTS" in s for s in ch)
    assert len(split_statements(load("clickhouse")[1].text)) == 3


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
    for cmd in ("serve", "consume", "migrate", "retention", "stats", "audit", "tail", "check", "version"):
        assert cmd in out
    for cmd in ("serve", "consume", "migrate", "stats", "audit", "tail", "check"):
        subprocess.run([sys.executable, "-m", "footprint.cli", cmd, "--help"], check=True, capture_output=True)


def test_invalid_setting_is_one_line_exit_2() -> None:
    import os

    env = dict(os.environ, FOOTPRINT_CH_PORT="not-a-port")
    res = subprocess.run([sys.executable, "-m", "footprint.cli", "version"], capture_output=True, text=True, env=env)
    assert res.returncode == 2 and "ch_port" in res.stderr and "Traceback" not in res.stderr


class PickySink:
    """A store that refuses some content while it takes a known-good event (its probe)."""

    name = "picky"

    def __init__(self, up: bool = True, fail_first: int = 0) -> None:
        self.stored: dict[str, bytes] = {}
        self.calls = 0
        self.up = up
        self.fail_first = fail_first

    def write(self, docs: dict[str, bytes]) -> int:
        self.calls += 1
        if not self.up or self.calls <= self.fail_first:
            raise ConnectionError("connection refused")
        if any(b"BAD" in d for d in docs.values()):
            raise ValueError("cannot store BAD")
        self.stored.update(docs)
        return len(docs)

    def probe(self) -> None:
        if not self.up:
            raise ConnectionError("connection refused")

    def close(self) -> None:
        pass


def test_a_refused_batch_is_bisected_and_only_the_refused_events_are_rejected() -> None:
    sink = PickySink()
    docs = {str(i): (b"BAD %d" if i in (3, 17) else b"ok %d") % i for i in range(32)}
    rejected = store(sink, docs)
    assert sink.stored == {k: d for k, d in docs.items() if b"BAD" not in d}
    assert sorted(key for key, _ in rejected) == ["17", "3"]
    assert all("picky refused it: cannot store BAD" in reason for _k, reason in rejected)
    assert sink.calls < 32  # bisected, not one write per event


def test_a_single_refused_event_is_rejected_with_the_stores_reason() -> None:
    assert store(PickySink(), {"a": b"BAD"}) == [("a", "picky refused it: cannot store BAD")]


def test_a_store_that_refuses_its_probe_is_an_outage_and_nothing_is_rejected() -> None:
    sink = PickySink(up=False)
    with pytest.raises(StoreOutage, match="picky: connection refused"):
        store(sink, {"a": b"ok", "b": b"BAD"})
    assert sink.stored == {}


def test_a_passing_failure_of_a_healthy_store_rejects_nothing() -> None:
    sink = PickySink(fail_first=1)
    docs = {str(i): b"ok" for i in range(10)}
    assert store(sink, docs) == []
    assert sink.stored == docs


def test_batch_reject_moves_refused_events_to_the_dead_letters() -> None:
    msgs = [Msg("t", 0, i) for i in range(3)]
    b = Batch(list(msgs), docs={"a": b"1", "b": b"2", "c": b"3"},  # type: ignore[arg-type]
              origin={"a": msgs[0], "b": msgs[1], "c": msgs[2]})  # type: ignore[dict-item]
    b.reject([("b", "refused"), ("zz", "already gone")])
    assert list(b.docs) == ["a", "c"] and [(m.offset(), r) for m, r in b.bad] == [(1, "refused")]


# ---------------------------------------------------------------- dead letters (in-memory producer)


def test_dead_letters_carry_the_reason_and_the_source_and_large_values_are_cut() -> None:
    producer = MemoryProducer()
    dlq = DeadLetters(producer, "t.dlq", max_value_bytes=10)
    sent: set[tuple[str, int, int]] = set()
    dlq.send([(Msg("t", 2, 40, value=b"x" * 25), "bad: why"), (Msg("t", 0, 7, value=None), "tombstone")],
             sent)  # type: ignore[list-item]
    assert sent == {("t", 2, 40), ("t", 0, 7)}
    big, tomb = producer.delivered
    assert big["value"] == b"x" * 10 and big["headers"]["footprint.truncated"] == b"25"
    assert big["headers"]["footprint.reason"] == b"bad: why"
    assert (big["headers"]["footprint.source.partition"], big["headers"]["footprint.source.offset"]) == (b"2", b"40")
    assert tomb["value"] is None and "footprint.truncated" not in tomb["headers"]
    dlq.send([(Msg("t", 2, 40), "again")], sent)  # type: ignore[list-item]
    assert len(producer.delivered) == 2  # acknowledged keys are not sent twice


def test_a_message_the_dlq_refuses_as_such_goes_as_a_minimal_copy() -> None:
    too_large = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
    producer = MemoryProducer(errors=lambda v: too_large if v and len(v) > 2000 else None)
    sent: set[tuple[str, int, int]] = set()
    DeadLetters(producer, "t.dlq", max_value_bytes=900_000).send([(Msg("t", 0, 1, value=b"y" * 5000), "r")], sent)  # type: ignore[list-item]
    assert sent == {("t", 0, 1)}
    [copy] = producer.delivered
    assert len(copy["value"]) == 1024 and copy["headers"]["footprint.truncated"] == b"5000"


def test_a_message_refused_before_sending_goes_as_a_minimal_copy() -> None:
    producer = MemoryProducer(max_bytes=3000)
    sent: set[tuple[str, int, int]] = set()
    DeadLetters(producer, "t.dlq", max_value_bytes=900_000).send(
        [(Msg("t", 0, 1, value=b"z" * 5000, key=b"k" * 4000), "r")], sent)  # type: ignore[list-item]
    [copy] = producer.delivered
    assert sent == {("t", 0, 1)} and len(copy["key"]) == 256


@pytest.mark.parametrize("code", [KafkaError._MSG_TIMED_OUT, KafkaError._ALL_BROKERS_DOWN,
                                  KafkaError.TOPIC_AUTHORIZATION_FAILED])
def test_a_dlq_outage_is_an_outage_not_a_skip(code: int) -> None:
    producer = MemoryProducer(errors=lambda v: KafkaError(code))
    sent: set[tuple[str, int, int]] = set()
    with pytest.raises(DeadLetterUnavailable):
        DeadLetters(producer, "t.dlq", 1000).send([(Msg("t", 0, 1), "r")], sent)  # type: ignore[list-item]
    assert sent == set() and producer.delivered == []


def test_when_even_the_minimal_copy_is_refused_it_is_an_outage() -> None:
    producer = MemoryProducer(errors=lambda v: KafkaError(KafkaError.INVALID_RECORD))
    with pytest.raises(DeadLetterUnavailable, match="minimal copy"):
        DeadLetters(producer, "t.dlq", 1000).send([(Msg("t", 0, 1), "r")], set())  # type: ignore[list-item]


def test_erasure_rebuilds_each_rollup_with_the_filter_its_view_has_now() -> None:
    """erasure.py repeats each rollup view's filter (it rebuilds erased hours): it must match the
    latest definition of the view in the migrations (CREATE or MODIFY QUERY)."""
    import re

    from footprint.erasure import _ROLLUPS

    text = "\n".join(m.text for m in load("clickhouse"))
    for table, rollup in _ROLLUPS.items():
        defs = re.findall(rf"{table}_mv (?:MODIFY QUERY|TO \{{db\}}\.{table} AS)\s+SELECT.*?WHERE (.*?)\s+GROUP BY",
                          text, re.S)
        assert defs, table
        assert " ".join(defs[-1].split()) == rollup.where, (table, defs[-1], rollup.where)


class FullSink(PickySink):
    """Out of room: every write that adds a row fails, the known-good probe (already stored) passes."""

    def write(self, docs: dict[str, bytes]) -> int:
        import psycopg

        self.calls += 1
        raise psycopg.errors.DiskFull('could not extend file "base/16384/16385": No space left on device')


def test_a_full_store_is_an_outage_although_its_probe_passes() -> None:
    sink = FullSink()
    with pytest.raises(StoreOutage, match="No space left on device"):
        store(sink, {str(i): b"ok" for i in range(8)})
    assert sink.calls == 1, "never bisected into dead letters"


@pytest.mark.parametrize(("error", "full"), [
    (lambda: __import__("psycopg").errors.DiskFull("no space"), True),
    (lambda: __import__("psycopg").errors.OutOfMemory("out of memory"), True),
    (lambda: __import__("psycopg").errors.InvalidTextRepresentation("No space left on device"), False),
    (lambda: Exception("Received ClickHouse exception, code: 243, server response: Code: 243. DB::Exception:"
                       " Cannot reserve 1.00 MiB, not enough space. (NOT_ENOUGH_SPACE)"), True),
    (lambda: Exception("Received ClickHouse exception, code: 75, server response: Code: 75. DB::Exception:"
                       " Cannot write to file /x/data.bin, errno: 28, strerror: No space left on device"), True),
    # a value that quotes the words is the data's problem, never an outage (it would stall the consumer)
    (lambda: Exception("Received ClickHouse exception, code: 27, server response: Code: 27. DB::Exception:"
                       " Cannot parse input: 'Code: 243. errno: 28, No space left on device'"), False),
    (lambda: Exception("No space left on device"), False),
])
def test_out_of_room_is_told_by_the_stores_codes_never_by_the_data(error: Any, full: bool) -> None:
    from footprint.stores import exhausted

    assert exhausted(error()) is full
