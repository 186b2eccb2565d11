"""``footprint audit``: nothing lost, shown as numbers.

Per hour of a window (``auditbook``), what the collectors put on the events topic against what
each store holds, the dead letters and the events in flight; then where they differ.

The snapshot is taken in the order that keeps it consistent without stopping anything: the
group's committed offsets first (every event before them is stored: the consumer commits only
after both stores took a batch), then the stores' counts, then Kafka's offsets (every event stored
by then was accepted before). Events that arrive meanwhile are past the committed offsets: in flight.

Offsets alone cannot tell an event dropped on purpose from a lost one. When the window's figures
do not balance, the audit reads the messages of the hours that do not (at most ``max_read``), each
with its own ``received_at``, and asks the stores for their ids (``auditbook.classify``): erased
users, months past the retention and ids stored from an earlier message are explained; the rest is
named, id by id. Reading never touches the consumer group (``auditkafka``).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TextIO

import msgspec
from confluent_kafka import Message

from footprint.auditbook import (
    DEFAULT_MAX_READ,
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
    partition_counts,
    pending,
    totals,
    unbalanced,
)
from footprint.auditkafka import KafkaView, from_ms
from footprint.auditstores import AuditStores
from footprint.contract import decode_message
from footprint.settings import Settings

log = logging.getLogger("footprint.audit")

# how much later than its neighbours a message may stand in a partition (collectors racing, a
# producer queue flushed late): the read of an hour goes on this far past its end
REORDER = timedelta(minutes=2)



class _Fields(msgspec.Struct):
    """The fields of a canonical event the audit needs; the others are skipped by the decoder."""

    user_id: str = ""
    footprint_time: datetime | None = None
    received_at: datetime | None = None


_FIELDS = msgspec.json.Decoder(_Fields)


class Progress:
    """Progress lines on stderr, at most one a second, only when it is a terminal (not the journal)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.on = self.stream.isatty()
        self._last = 0.0

    def say(self, text: str, force: bool = True) -> None:
        now = time.monotonic()
        if self.on and (force or now - self._last >= 1.0):
            self._last = now
            print(f"footprint audit: {text}", file=self.stream, flush=True)


def run(settings: Settings, since: datetime, until: datetime | None, max_read: int = DEFAULT_MAX_READ,
        progress: Progress | None = None, now: datetime | None = None) -> Audit:
    """Audit [since, until) (``until`` None: up to what Kafka and the stores hold now)."""
    started = time.monotonic()
    now = now or datetime.now(UTC)
    starts = bucket_starts(since, until, now)
    say = progress or Progress()
    topic, dlq = settings.kafka_topic, settings.kafka_dlq_topic
    kafka = KafkaView(settings)
    try:
        with AuditStores(settings) as stores:
            parts, dlq_parts = kafka.partitions(topic), kafka.partitions(dlq)
            committed = kafka.committed(topic, parts)
            dlq_committed = kafka.committed(dlq, dlq_parts)
            say.say("counting each store's events per hour")
            hours = stores.hours(since, until)
            say.say("listing Kafka's offsets at each hour")
            marks = {p: kafka.watermarks(topic, p) for p in parts}
            dlq_marks = {p: kafka.watermarks(dlq, p) for p in dlq_parts}
            bounds = _bounds(kafka, topic, marks, starts, until)
            dlq_bounds = _bounds(kafka, dlq, dlq_marks, starts, until)
            consumed = {p: c if (c := committed[p]) is not None else marks[p][0] for p in parts}
            audit = Audit(since, until, now, settings.kafka_group, topic, dlq, [Bucket(s) for s in starts], [
                *(PartitionState(topic, p, *marks[p], committed[p]) for p in parts),
                *(PartitionState(dlq, p, *dlq_marks[p], dlq_committed[p]) for p in dlq_parts)])
            _count(audit, bounds, dlq_bounds, consumed, hours)
            retained = _retained_start(kafka, topic, marks, now)
            _judge_from(audit, retained)
            if any(s.missing or s.extra for s in totals(audit.buckets).stores.values()):
                _read(audit, kafka, stores, bounds, consumed, max_read, say)
    finally:
        kafka.close()
    audit.seconds = time.monotonic() - started
    t = audit.totals
    log.info("audit finished", extra={
        "ok": t.ok, "accepted": t.accepted, "in_flight": t.in_flight, "dead_letters": t.dead_letters,
        **{f"{s}_missing": t.stores[s].missing for s in STORES}, **{f"{s}_extra": t.stores[s].extra for s in STORES},
        **{f"{s}_duplicates": t.stores[s].duplicates for s in STORES},
        "read_messages": audit.read_messages, "seconds": round(audit.seconds, 2)})
    return audit


def _bounds(kafka: KafkaView, topic: str, marks: dict[int, tuple[int, int]], starts: list[datetime],
            until: datetime | None) -> dict[int, list[int]]:
    """Per partition, the first offset of every bucket and the window's end offset."""
    times = [*starts, *([until] if until is not None else [])]
    found = [kafka.offsets_at(topic, sorted(marks), t) for t in times]
    out: dict[int, list[int]] = {}
    for p, (_low, end) in marks.items():
        offsets = [f.get(p) for f in found] + ([] if until is not None else [end])
        out[p] = monotonic(offsets, end)
    return out


def _count(audit: Audit, bounds: dict[int, list[int]], dlq_bounds: dict[int, list[int]], consumed: dict[int, int],
           hours: dict[str, dict[datetime, Stored]]) -> None:
    buckets = audit.buckets
    for p, b in bounds.items():
        accepted, in_flight = partition_counts(b, consumed[p])
        for i, bucket in enumerate(buckets):
            bucket.accepted = (bucket.accepted or 0) + accepted[i]
            bucket.in_flight += in_flight[i]
    for b in dlq_bounds.values():
        letters, _ = partition_counts(b, 0)
        for i, bucket in enumerate(buckets):
            bucket.dead_letters += letters[i]
    starts = [b.start for b in buckets]
    for store, per_hour in hours.items():
        for hour, stored in per_hour.items():
            at = bucket_of(max(hour, audit.since), starts, audit.until)
            if at is None:  # outside the window: the stores' ranges are the window's, kept safe
                continue
            have = buckets[at].stored.get(store, Stored())
            buckets[at].stored[store] = Stored(have.rows + stored.rows, have.distinct + stored.distinct)
    for part in audit.partitions:
        if part.topic == audit.topic and part.committed is not None and part.committed < part.low:
            audit.notes.append(
                f"{part.topic}[{part.partition}]: the group's committed offset {part.committed} is below the first"
                f" retained offset {part.low}: {part.low - part.committed} messages were deleted by the topic's"
                " retention before the consumer read them")


def _retained_start(kafka: KafkaView, topic: str, marks: dict[int, tuple[int, int]], now: datetime) -> datetime | None:
    """The time before which the topic may have lost messages to its retention (None: it lost none):
    the latest timestamp of the first message retained among the partitions that deleted some."""
    latest: datetime | None = None
    for p, (low, end) in marks.items():
        if low == 0:
            continue
        first = kafka.timestamp_at(topic, p, low, end) if low < end else None
        at = first if first is not None else now
        latest = at if latest is None or at > latest else latest
    return latest


def _judge_from(audit: Audit, retained: datetime | None) -> None:
    if retained is None or retained <= audit.since:
        return
    skipped = [b for b in audit.buckets if b.start < retained]
    for b in skipped:
        b.accepted, b.in_flight = None, 0
    audit.notes.append(
        f"the window begins before the events topic's retained start ({retained:%Y-%m-%d %H:%M:%S} UTC):"
        f" Kafka no longer holds all that was accepted in its first {len(skipped)} hour(s); they are shown,"
        " not judged")


def _read(audit: Audit, kafka: KafkaView, stores: AuditStores, bounds: dict[int, list[int]],
          consumed: dict[int, int], max_read: int, say: Progress) -> None:
    """Read the hours that do not balance (the largest differences first, at most ``max_read``
    messages) and explain what the stores do not hold."""
    buckets, n = audit.buckets, len(audit.buckets)
    chosen: set[int] = set()
    budget = max_read
    wanted = unbalanced(buckets)
    for i in wanted:
        size = sum(b[i + 1] - b[i] for b in bounds.values())
        if size <= budget:
            chosen.add(i)
            budget -= size
    if len(chosen) < len(wanted):
        left = sorted(set(wanted) - chosen)
        audit.notes.append(
            f"{len(left)} hour(s) that do not balance were not read (over --max-read {max_read} messages):"
            f" {', '.join(f'{buckets[i].start:%Y-%m-%d %H:%M}' for i in left)}; their differences stay unexplained")
    if not chosen:
        return
    starts = [b.start for b in buckets]
    total = sum(sum(b[i + 1] - b[i] for b in bounds.values()) for i in chosen)
    reads: list[Read] = []
    for message in _messages(kafka, audit, bounds, sorted(chosen)):
        reads.append(_to_read(message))
        say.say(f"reading {audit.topic}: {len(reads):,} of about {total:,} messages", force=False)
    audit.read_messages = len(reads)
    say.say("looking the messages' events up in the stores")
    ranges = [(starts[i], starts[i + 1] if i + 1 < n else audit.until) for i in sorted(chosen)]
    first = stores.first_rows(ranges)
    stored = {s: {event_id: g for event_id, at in first[s].items()
                  if (g := bucket_of(at, starts, audit.until)) is not None} for s in STORES}
    held = stores.held(pending(reads, starts, audit.until, chosen, consumed, stored))
    classified = classify(reads, bounds, starts, audit.until, chosen, consumed, stored, held, stores.erasures(),
                          stores.retention_cutoff(audit.ran_at.date()))
    apply(buckets, classified, chosen)
    audit.notes.append(
        f"{len(chosen)} hour(s) read ({len(reads):,} messages): their events are counted by their own received_at,"
        " and those no store holds on purpose (erased, expired, repeated) are explained")


def _messages(kafka: KafkaView, audit: Audit, bounds: dict[int, list[int]], chosen: list[int]) -> Iterator[Message]:
    """The messages of the ``chosen`` buckets, partition by partition, consecutive buckets as one range,
    each range read on past its end for ``REORDER`` (messages of its time that came later)."""
    n = len(audit.buckets)
    runs: list[tuple[int, int]] = []
    for i in chosen:
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    ends = {p.partition: p.end for p in audit.partitions if p.topic == audit.topic}
    for p, b in bounds.items():
        done = -1  # a range read on past its end may reach the next one: each message once
        for first, last in runs:
            end_time = audit.buckets[last].start if last < n else audit.until
            for m in kafka.read(audit.topic, p, max(b[first], done + 1), b[last], ends[p],
                                end_time + REORDER if end_time is not None else None):
                done = m.offset() or 0
                yield m


def _to_read(m: Message) -> Read:
    partition, offset = m.partition() or 0, m.offset() or 0
    at = from_ms(m.timestamp()[1])
    try:
        event_id, doc = decode_message(m.value())
        fields = _FIELDS.decode(doc)
    except (ValueError, msgspec.MsgspecError):  # not an event: the consumer dead-letters it
        return Read(partition, offset, at)
    return Read(partition, offset, fields.received_at or at, event_id, fields.user_id, fields.footprint_time)
