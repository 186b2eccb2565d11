"""The audit's bookkeeping (``auditbook``) without Kafka or the stores: windows, offsets, the balance,
the verdict, and the reading of the hours that do not balance; plus its output (table, JSON, textfile)."""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from footprint.auditbook import (
    STORES,
    Audit,
    Bucket,
    PartitionState,
    Read,
    Stored,
    apply,
    bucket_of,
    bucket_starts,
    classify,
    monotonic,
    outcome,
    parse_when,
    partition_counts,
    pending,
    settle,
    totals,
    unbalanced,
)
from footprint.auditreport import as_json, render, write_textfile

NOW = datetime(2026, 3, 2, 10, 17, 3, tzinfo=UTC)
T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)


def test_window_specs() -> None:
    assert parse_when("now", NOW) is None
    assert parse_when("24h", NOW) == NOW - timedelta(hours=24)
    assert parse_when("90m", NOW) == NOW - timedelta(minutes=90)
    assert parse_when("2w", NOW) == NOW - timedelta(days=14)
    assert parse_when("2026-03-01", NOW) == datetime(2026, 3, 1, tzinfo=UTC)
    assert parse_when("2026-03-01T10:00Z", NOW) == datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert parse_when("2026-03-01T12:00+02:00", NOW) == datetime(2026, 3, 1, 10, tzinfo=UTC)
    with pytest.raises(ValueError, match="a span before now"):
        parse_when("yesterday", NOW)


def test_buckets_are_whole_hours_between_partial_ends() -> None:
    since = datetime(2026, 3, 2, 8, 40, tzinfo=UTC)
    starts = bucket_starts(since, None, NOW)
    assert starts == [since, datetime(2026, 3, 2, 9, tzinfo=UTC), datetime(2026, 3, 2, 10, tzinfo=UTC)]
    assert bucket_of(since - timedelta(microseconds=1), starts, None) is None
    assert bucket_of(datetime(2026, 3, 2, 9, 59, 59, 999999, tzinfo=UTC), starts, None) == 1
    assert bucket_of(NOW + timedelta(hours=5), starts, None) == 2  # open end: the last bucket takes it
    assert bucket_of(NOW, starts, NOW) is None
    with pytest.raises(ValueError, match="window is empty"):
        bucket_starts(NOW, None, NOW)


@given(st.lists(st.integers(0, 50), min_size=2, max_size=10), st.integers(0, 600))
def test_offsets_count_every_message_once(steps: list[int], consumed: int) -> None:
    bounds = [sum(steps[:i + 1]) for i in range(len(steps))]
    accepted, in_flight = partition_counts(bounds, consumed)
    assert sum(accepted) == bounds[-1] - bounds[0]
    assert all(0 <= f <= a for a, f in zip(accepted, in_flight, strict=True))
    assert sum(in_flight) == max(bounds[-1] - max(bounds[0], consumed), 0)


@given(st.lists(st.one_of(st.none(), st.integers(-1, 100)), min_size=1, max_size=8), st.integers(0, 100))
def test_kafka_answers_become_monotonic_offsets(answers: list[int | None], end: int) -> None:
    out = monotonic(answers, end)
    assert out == sorted(out) and all(o <= end for o in out)
    assert all(o == end for a, o in zip(answers, out, strict=True) if a is None or a < 0)


@given(lost=st.integers(0, 50), extra_rows=st.integers(0, 50), flying=st.integers(0, 50),
       flying_stored=st.integers(0, 50), settled=st.integers(0, 500), dead=st.integers(0, 20),
       explained=st.integers(0, 20))
def test_balance_reports_losses_and_extras_never_more_than_there_are(
        lost: int, extra_rows: int, flying: int, flying_stored: int, settled: int, dead: int, explained: int) -> None:
    flying_stored = min(flying_stored, flying)
    accepted = settled + lost + flying + dead + explained
    stored = settled + flying_stored + extra_rows
    missing, extra = outcome(accepted - dead - explained - stored, flying)
    assert missing >= 0 and extra >= 0 and not (missing and extra)
    assert missing <= lost and extra <= extra_rows  # in-flight events can hide a difference, never make one
    if flying == 0:
        assert missing - extra == lost - extra_rows
    if lost == extra_rows == 0:
        assert (missing, extra) == (0, 0)


def _bucket(start: datetime, accepted: int, stored: int, flying: int = 0, dead: int = 0) -> Bucket:
    return Bucket(start, accepted, flying, dead, {s: Stored(stored, stored) for s in STORES})


@given(st.lists(st.integers(0, 100), min_size=2, max_size=6), st.data())
def test_an_event_counted_in_the_neighbouring_hour_changes_no_verdict(counts: list[int], data: st.DataObject) -> None:
    buckets = [_bucket(T0 + timedelta(hours=i), n, n) for i, n in enumerate(counts)]
    assert totals(buckets).ok and unbalanced(buckets) == []
    i = data.draw(st.integers(0, len(counts) - 2))
    if buckets[i].accepted:
        buckets[i].accepted = (buckets[i].accepted or 0) - 1  # Kafka's boundary put it one hour later
        buckets[i + 1].accepted = (buckets[i + 1].accepted or 0) + 1
        assert totals(buckets).ok and unbalanced(buckets) == []


def test_totals_judge_only_hours_kafka_still_holds_and_count_duplicates_everywhere() -> None:
    old = _bucket(T0, 0, 7)
    old.accepted = None
    old.stored["clickhouse"] = Stored(9, 7)
    buckets = [old, _bucket(T0 + timedelta(hours=1), 10, 9, flying=1), _bucket(T0 + timedelta(hours=2), 5, 3)]
    t = totals(buckets)
    assert (t.accepted, t.in_flight) == (15, 1)
    assert t.stores["postgresql"].missing == 2 and t.stores["postgresql"].duplicates == 0
    assert t.stores["clickhouse"].duplicates == 2 and not t.ok
    assert unbalanced(buckets) == [2]


# --------------------------------------------------------------------- reading the hours that differ

FATES = ("stored", "lost", "erased", "expired", "repeated", "not_event", "in_flight")


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 4), st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3599), st.sampled_from(FATES)),
                                   max_size=40), st.integers(1, 3), st.randoms(use_true_random=False))
def test_reading_an_hour_names_exactly_what_is_lost(hours: int, drawn: list[tuple[int, int, str]], partitions: int,
                                                    rnd: random.Random) -> None:
    """A world of messages with known fates, some out of order near the hours' boundaries: once read,
    every hour counts its own messages, and missing is exactly the lost ones, in each store."""
    starts = [T0 + timedelta(hours=i) for i in range(hours)]
    until = T0 + timedelta(hours=hours)
    cutoff = datetime(2025, 1, 1, tzinfo=UTC)
    events = [(b % hours, s, fate) for b, s, fate in drawn]
    stored_earlier = str(uuid.UUID(int=1 << 100))  # an id stored before the window
    msgs: dict[int, list[tuple[datetime, Read, str]]] = {p: [] for p in range(partitions)}
    for n, (b, second, fate) in enumerate(events):
        at = starts[b] + timedelta(seconds=second)
        p = rnd.randrange(partitions)
        event_id = stored_earlier if fate == "repeated" else str(uuid.UUID(int=n))
        read = Read(p, 0, at, None if fate == "not_event" else event_id, "gone" if fate == "erased" else "u",
                    datetime(2024, 5, 1, tzinfo=UTC) if fate == "expired" else at)
        msgs[p].append((at, read, fate))
    reads: list[Read] = []
    fates: list[tuple[Read, str]] = []
    bounds: dict[int, list[int]] = {}
    consumed: dict[int, int] = {}
    for p, items in msgs.items():
        items.sort(key=lambda x: x[0])
        for j in range(len(items) - 1):  # a few neighbours swapped: Kafka's order and time disagree
            if rnd.random() < 0.2:
                items[j], items[j + 1] = items[j + 1], items[j]
        placed = [(Read(p, o, r.at, r.event_id, r.user_id, r.footprint_time), f) for o, (_at, r, f) in enumerate(items)]
        # Kafka's answer at a boundary: the first offset whose timestamp is at or after it
        bounds[p] = [next((o for o, (r, _f) in enumerate(placed) if r.at >= t), len(placed)) for t in starts]
        bounds[p].append(next((o for o, (r, _f) in enumerate(placed) if r.at >= until), len(placed)))
        bounds[p] = monotonic(bounds[p], len(placed))
        # the group committed all but the last few: those are in flight, whatever their fate would be
        consumed[p] = len(placed) - rnd.randrange(0, min(3, len(placed)) + 1)
        for r, f in placed:
            if r.offset >= consumed[p]:
                f = "in_flight"
            elif f == "in_flight":
                f = "stored"
            reads.append(r)
            fates.append((r, f))
    buckets = [Bucket(s, 0) for s in starts]
    for p, b in bounds.items():
        accepted, in_flight = partition_counts(b, consumed[p])
        for i in range(hours):
            buckets[i].accepted = (buckets[i].accepted or 0) + accepted[i]
            buckets[i].in_flight += in_flight[i]
    first_rows: dict[str, int] = {}
    for r, f in fates:
        g = bucket_of(r.at, starts, until)
        assert g is not None
        if f == "not_event":
            buckets[g].dead_letters += 1
        if f == "stored" and r.event_id is not None:
            first_rows[r.event_id] = g
    for i, b in enumerate(buckets):
        n = sum(1 for g in first_rows.values() if g == i)
        b.stored = {s: Stored(n, n) for s in STORES}
    read = set(range(hours))
    stored = {s: first_rows for s in STORES}
    lookups = pending(reads, starts, until, read, consumed, stored)
    held = {s: {stored_earlier} & lookups[s] for s in STORES}
    classified = classify(reads, bounds, starts, until, read, consumed, stored, held,
                          {"gone": until + timedelta(days=7)}, cutoff)
    apply(buckets, classified, read)
    for i, b in enumerate(buckets):
        own = [(r, f) for r, f in fates if bucket_of(r.at, starts, until) == i]
        assert b.accepted == len(own)
        assert b.in_flight == sum(1 for _r, f in own if f == "in_flight")
        lost = sum(1 for _r, f in own if f == "lost")
        for store in STORES:
            assert settle(buckets, store)[i] == (lost, 0), (i, store)
            assert len(b.lost.get(store, [])) == min(lost, 10)
            assert b.explained.get(store, {}).get("erased", 0) == sum(1 for _r, f in own if f == "erased")
            assert b.explained.get(store, {}).get("expired", 0) == sum(1 for _r, f in own if f == "expired")
    assert totals(buckets).ok == (not any(f == "lost" for _r, f in fates))


def test_a_message_just_past_the_window_is_counted_in_it_once_read() -> None:
    """Kafka's offset at --until is the first message at or after it; a message of the window's last
    second written after that one is read (the read goes on past the end) and counted back in."""
    starts, until = [T0], T0 + timedelta(hours=1)
    late = Read(0, 1, until - timedelta(milliseconds=1), "a" * 8, "", until)
    early = Read(0, 0, until, "b" * 8, "", until)
    bounds = {0: [0, 0]}  # offset 0 is already at `until`: Kafka counts nothing in the window
    stored = {s: {"a" * 8: 0} for s in STORES}
    classified = classify([early, late], bounds, starts, until, {0}, {0: 2}, stored, {s: set() for s in STORES},
                          {}, None)
    bucket = Bucket(T0, 0, 0, 0, {s: Stored(1, 1) for s in STORES})
    apply([bucket], classified, {0})
    assert bucket.accepted == 1 and all(settle([bucket], s) == [(0, 0)] for s in STORES)


# --------------------------------------------------------------------------------------------- output

def _audit() -> Audit:
    ok = _bucket(T0, 10, 10, flying=2, dead=1)
    ok.stored = {s: Stored(9, 9) for s in STORES}
    bad = _bucket(T0 + timedelta(hours=1), 5, 5)
    bad.stored = {"postgresql": Stored(4, 4), "clickhouse": Stored(6, 5)}
    bad.lost = {"postgresql": ["0f9e5c1e-62a4-4a0e-9ef0-7ad3b5d6cf11"]}
    bad.read = True
    parts = [PartitionState("events", 0, 0, 120, 110), PartitionState("events", 1, 3, 50, None),
             PartitionState("events.dlq", 0, 0, 4, None)]
    return Audit(T0, None, T0 + timedelta(hours=1, minutes=30), "g", "events", "events.dlq", [ok, bad], parts,
                 notes=["a note"])


def test_table_and_json_say_where_the_numbers_differ() -> None:
    audit = _audit()
    text = render(audit)
    assert "verdict: NOT OK" in text and "postgresql: 1 missing" in text and "clickhouse: 1 stored twice" in text
    assert "0f9e5c1e-62a4-4a0e-9ef0-7ad3b5d6cf11" in text and "note: a note" in text
    doc = json.loads(json.dumps(as_json(audit)))
    assert doc["ok"] is False and doc["totals"]["stores"]["postgresql"]["missing"] == 1
    assert doc["hours"][1]["stores"]["clickhouse"]["duplicates"] == 1
    assert doc["hours"][1]["stores"]["postgresql"]["not_stored_ids"] == ["0f9e5c1e-62a4-4a0e-9ef0-7ad3b5d6cf11"]
    assert [p["lag"] for p in doc["kafka"]] == [10, 47, 4]


def test_textfile_carries_the_contracted_names(tmp_path: Path) -> None:
    path = tmp_path / "footprint_audit.prom"
    write_textfile(_audit(), str(path))
    assert [p.name for p in tmp_path.iterdir()] == ["footprint_audit.prom"]  # the temporary file renamed
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(path.read_text()) for s in family.samples}
    assert samples[("footprint_audit_ok", ())] == 0
    ran = (T0 + timedelta(hours=1, minutes=30)).timestamp()
    assert samples[("footprint_audit_last_run_timestamp_seconds", ())] == ran
    assert samples[("footprint_audit_window_seconds", ())] == 5400
    assert samples[("footprint_audit_in_flight", ())] == 2
    assert samples[("footprint_audit_events", (("source", "accepted"),))] == 15
    assert samples[("footprint_audit_events", (("source", "dead_letter"),))] == 1
    assert samples[("footprint_audit_events", (("source", "postgresql"),))] == 13
    assert samples[("footprint_audit_events", (("source", "clickhouse"),))] == 14
    assert samples[("footprint_audit_missing", (("store", "postgresql"),))] == 1
    assert samples[("footprint_audit_missing", (("store", "clickhouse"),))] == 0
    assert samples[("footprint_audit_duplicates", (("store", "clickhouse"),))] == 1
    group = (("group", "g"),)
    assert samples[("footprint_kafka_group_committed_offset", (*group, ("partition", "0"), ("topic", "events")))] == 110
    assert ("footprint_kafka_group_committed_offset", (*group, ("partition", "1"), ("topic", "events"))) not in samples
    assert samples[("footprint_kafka_group_lag", (("group", "g"), ("partition", "1"), ("topic", "events")))] == 47
    assert samples[("footprint_kafka_topic_end_offset", (("partition", "0"), ("topic", "events.dlq")))] == 4
    assert not any(name == "footprint_kafka_group_lag" and ("topic", "events.dlq") in labels
                   for name, labels in samples)
