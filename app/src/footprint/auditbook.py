"""The audit's bookkeeping (``footprint audit``), apart from any I/O: per hour of a window, the events
Kafka accepted against the events each store holds.

The window [since, until) is cut at every whole UTC hour into buckets (the first and the last may
be partial; an open ``until`` is "now": the last bucket takes everything from its start on). In
each bucket:

- ``accepted``: messages on the events topic whose Kafka timestamp (the collector sets it to the
  event's ``received_at``) falls in the bucket, told by Kafka's offsets at the bucket's boundaries;
- ``in_flight``: of those, the ones at or past the consumer group's committed offset: being
  consumed, they may or may not be stored yet;
- ``dead_letters``: messages on the dead-letter topic whose timestamp (the original message's)
  falls in the bucket;
- per store, ``rows`` (raw, ``received_at`` in the bucket) and ``distinct`` (the event ids whose
  first row in the window is in the bucket); ``duplicates`` = rows - distinct;
- per store, ``explained``: events of the bucket no store is meant to hold (the user's erasure,
  a month past the retention, an id already stored from an earlier message), known where the
  bucket's messages were read (``classify``).

Per store, gap = accepted - dead_letters - explained - distinct. From 0 to in_flight the bucket
balances; above, ``missing`` = gap - in_flight; below 0, ``extra`` = -gap (rows that no accepted
event accounts for). Neither is ever negative: each is a finding of its own. A message whose Kafka
position and timestamp disagree near a boundary (collectors racing by milliseconds) moves one event
to the neighbouring bucket: a bucket below 0 next to one above it cancel first (``settle``); what
remains is read message by message where it can be (``classify``).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise

STORES = ("postgresql", "clickhouse")
REASONS = ("erased", "expired", "repeated")
LOST_SAMPLE = 10  # event ids named per store and bucket
DEFAULT_MAX_READ = 2_000_000  # messages read at most to explain the hours that do not balance

_SPAN = re.compile(r"^(\d+)\s*([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_when(spec: str, now: datetime) -> datetime | None:
    """``now`` (None: open, what Kafka and the stores hold when asked), a span before ``now``
    (``90m``, ``24h``, ``7d``, ``2w``) or an ISO 8601 date or time (UTC unless it has an offset).
    ``ValueError`` says which forms are understood."""
    text = spec.strip()
    if text == "now":
        return None
    m = _SPAN.match(text)
    if m:
        return now - timedelta(seconds=int(m.group(1)) * _UNIT[m.group(2)])
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{spec!r}: want now, a span before now (90m, 24h, 7d, 2w) or an ISO time"
                         " (2026-03-01, 2026-03-01T10:00Z)") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def bucket_starts(since: datetime, until: datetime | None, now: datetime) -> list[datetime]:
    """The start of every bucket of [since, until or now): ``since``, then each whole hour after it."""
    end = until or now
    if since >= end:
        raise ValueError(f"the window is empty: since {since:%Y-%m-%d %H:%M:%S} is not before "
                         f"{'until' if until else 'now'} {end:%Y-%m-%d %H:%M:%S} (UTC)")
    starts = [since]
    hour = since.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    while hour < end:
        starts.append(hour)
        hour += timedelta(hours=1)
    return starts


def bucket_of(at: datetime, starts: Sequence[datetime], until: datetime | None) -> int | None:
    """The bucket ``at`` falls in (None: outside the window)."""
    if at < starts[0] or (until is not None and at >= until):
        return None
    return bisect_right(starts, at) - 1


def partition_counts(bounds: Sequence[int], consumed: int) -> tuple[list[int], list[int]]:
    """One partition: ``bounds[i]`` is the first offset of bucket i, ``bounds[-1]`` the window's end;
    ``consumed`` the group's committed offset (the low watermark when it has none) -> the messages
    of each bucket and, of those, the ones in flight (at or past ``consumed``)."""
    accepted = [b - a for a, b in pairwise(bounds)]
    in_flight = [max(b - max(a, consumed), 0) for a, b in pairwise(bounds)]
    return accepted, in_flight


def monotonic(offsets: Sequence[int | None], end: int) -> list[int]:
    """Kafka's answers at the boundaries (None: no message at or after it) as non-decreasing offsets
    no later than ``end``."""
    out: list[int] = []
    for offset in offsets:
        value = end if offset is None or offset < 0 else min(offset, end)
        out.append(max(value, out[-1]) if out else value)
    return out


@dataclass(frozen=True)
class Stored:
    rows: int = 0  # raw rows
    distinct: int = 0  # event ids whose first row in the window is in the bucket

    @property
    def duplicates(self) -> int:
        return self.rows - self.distinct


def outcome(gap: int, in_flight: int) -> tuple[int, int]:
    """(missing, extra) of a store's gap in a bucket with ``in_flight`` events: see the module's doc."""
    return max(gap - in_flight, 0), max(-gap, 0)


@dataclass
class Bucket:
    start: datetime
    accepted: int | None = 0  # None: before the events topic's retained start (not judged)
    in_flight: int = 0
    dead_letters: int = 0
    stored: dict[str, Stored] = field(default_factory=dict)
    explained: dict[str, dict[str, int]] = field(default_factory=dict)  # store -> reason -> events
    lost: dict[str, list[str]] = field(default_factory=dict)  # store -> a sample of ids not stored
    read: bool = False  # its messages were read (classify)

    def explained_total(self, store: str) -> int:
        return sum(self.explained.get(store, {}).values())

    def gap(self, store: str) -> int:
        return (self.accepted or 0) - self.dead_letters - self.explained_total(store) - \
            self.stored.get(store, Stored()).distinct


def settle(buckets: Sequence[Bucket], store: str) -> list[tuple[int, int] | None]:
    """Per bucket, (missing, extra) of ``store`` (None: not judged). At every boundary between two
    judged buckets, one below 0 (extra) and one above 0 first cancel as far as they match: the
    event Kafka counted on one side is stored on the other."""
    gaps = [b.gap(store) if b.accepted is not None else None for b in buckets]
    for i in range(len(gaps) - 1):
        a, b = gaps[i], gaps[i + 1]
        if a is None or b is None:
            continue
        moved = min(-a, b) if a < 0 < b else -min(-b, a) if b < 0 < a else 0
        gaps[i], gaps[i + 1] = a + moved, b - moved
    return [None if g is None else outcome(g, b.in_flight) for g, b in zip(gaps, buckets, strict=True)]


@dataclass(frozen=True)
class StoreTotal:
    stored: int
    duplicates: int
    explained: dict[str, int]
    missing: int
    extra: int

    @property
    def ok(self) -> bool:
        return self.missing == 0 and self.extra == 0 and self.duplicates == 0


@dataclass(frozen=True)
class Totals:
    accepted: int  # judged buckets only (those after the topic's retained start)
    in_flight: int
    dead_letters: int
    stores: dict[str, StoreTotal]

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.stores.values())


def totals(buckets: Sequence[Bucket]) -> Totals:
    """The window's figures: the judged buckets' sums, and their settled missing and extra.
    Duplicates count in every bucket (a store holds them whether Kafka still does or not)."""
    judged = [b for b in buckets if b.accepted is not None]
    stores: dict[str, StoreTotal] = {}
    for store in STORES:
        settled = [f for f in settle(buckets, store) if f is not None]
        stores[store] = StoreTotal(
            stored=sum(b.stored.get(store, Stored()).distinct for b in judged),
            duplicates=sum(b.stored.get(store, Stored()).duplicates for b in buckets),
            explained={r: sum(b.explained.get(store, {}).get(r, 0) for b in judged) for r in REASONS},
            missing=sum(m for m, _ in settled), extra=sum(e for _, e in settled))
    return Totals(sum(b.accepted or 0 for b in judged), sum(b.in_flight for b in judged),
                  sum(b.dead_letters for b in judged), stores)


def unbalanced(buckets: Sequence[Bucket]) -> list[int]:
    """The judged buckets with something missing or extra in some store, the largest first."""
    worst: dict[int, int] = {}
    for store in STORES:
        for i, f in enumerate(settle(buckets, store)):
            if f is not None and (f[0] or f[1]):
                worst[i] = max(worst.get(i, 0), f[0] + f[1])
    return sorted(worst, key=lambda i: (-worst[i], i))


# ----------------------------------------------------------------------------------- read messages

@dataclass(frozen=True)
class Read:
    """One message of the events topic, as the audit reads the buckets that do not balance."""

    partition: int
    offset: int
    at: datetime  # the event's received_at (its Kafka timestamp when it is not an event)
    event_id: str | None = None  # None: not an event (the consumer dead-letters it)
    user_id: str = ""
    footprint_time: datetime | None = None


@dataclass
class Classified:
    """What the messages read say: moves between buckets (a message's Kafka position and its own
    time disagree, or it lies just outside the window's offsets), and for every bucket read, the
    events explained and a sample of those not stored, per store."""

    accepted: dict[int, int] = field(default_factory=dict)  # bucket -> correction
    in_flight: dict[int, int] = field(default_factory=dict)
    explained: dict[int, dict[str, dict[str, int]]] = field(default_factory=dict)  # bucket -> store -> reason
    lost: dict[int, dict[str, list[str]]] = field(default_factory=dict)  # bucket -> store -> ids


def offset_bucket(bounds: Sequence[int], offset: int) -> int | None:
    """The bucket whose offsets (``partition_counts``' bounds) hold ``offset`` (None: none)."""
    i = bisect_right(bounds, offset) - 1
    return i if 0 <= i < len(bounds) - 1 else None


def pending(reads: Iterable[Read], starts: Sequence[datetime], until: datetime | None, read: set[int],
            consumed: Mapping[int, int], stored: Mapping[str, Mapping[str, int]]) -> dict[str, set[str]]:
    """Per store, the ids of settled messages of the buckets ``read`` that the store does not hold in
    their own bucket: the ones to look up elsewhere in the store before ``classify``."""
    out: dict[str, set[str]] = {s: set() for s in STORES}
    for r in reads:
        g = bucket_of(r.at, starts, until)
        if g in read and r.event_id is not None and r.offset < consumed[r.partition]:
            for store in STORES:
                if stored[store].get(r.event_id) != g:
                    out[store].add(r.event_id)
    return out


def classify(reads: Iterable[Read], bounds: Mapping[int, Sequence[int]], starts: Sequence[datetime],
             until: datetime | None, read: set[int], consumed: Mapping[int, int],
             stored: Mapping[str, Mapping[str, int]], elsewhere: Mapping[str, set[str]],
             erasures: Mapping[str, datetime], cutoff: datetime | None) -> Classified:
    """The messages read (every message of the buckets ``read``, and some around them) against the
    stores.

    ``bounds``: per partition, the offsets of ``partition_counts``; ``consumed``: per partition, the
    group's committed offset (or the low watermark); ``stored``: per store, event id -> the bucket of
    its first row, for the buckets read; ``elsewhere``: per store, the ids of ``pending`` it holds at
    all; ``erasures``: user id -> the last ``keep_until`` of their erasure requests; ``cutoff``: the
    first ``footprint_time`` the retention keeps (None: forever).

    A settled message of a bucket read is, in each store, in this order: ``repeated`` (its id came
    in an earlier message), stored (the id's first row is in its bucket), ``erased`` (its user's
    request is kept until after it arrived), ``expired`` (its time is older than the retention),
    ``repeated`` (the id is stored from another message), else lost. A message that is not an
    event is none of these: the consumer dead-letters it (``dead_letters`` counts it).
    """
    out = Classified()
    seen: set[str] = set()
    for r in sorted(reads, key=lambda r: (r.at, r.partition, r.offset)):
        f = offset_bucket(bounds[r.partition], r.offset)
        g = bucket_of(r.at, starts, until)
        flying = r.offset >= consumed[r.partition]
        if f != g:
            for counts, moved in ((out.accepted, True), (out.in_flight, flying)):
                if moved and f is not None:
                    counts[f] = counts.get(f, 0) - 1
                if moved and g is not None:
                    counts[g] = counts.get(g, 0) + 1
        if g not in read or flying or r.event_id is None:
            continue
        repeat = r.event_id in seen
        seen.add(r.event_id)
        for store in STORES:
            reason = _reason(r, g, repeat, stored[store], elsewhere[store], erasures, cutoff)
            if reason is None:
                continue
            if reason == "lost":
                sample = out.lost.setdefault(g, {}).setdefault(store, [])
                if len(sample) < LOST_SAMPLE:
                    sample.append(r.event_id)
                continue
            reasons = out.explained.setdefault(g, {}).setdefault(store, {})
            reasons[reason] = reasons.get(reason, 0) + 1
    return out


def _reason(r: Read, g: int, repeat: bool, stored: Mapping[str, int], elsewhere: set[str],
            erasures: Mapping[str, datetime], cutoff: datetime | None) -> str | None:
    assert r.event_id is not None
    if repeat:
        return "repeated"
    if stored.get(r.event_id) == g:
        return None
    keep = erasures.get(r.user_id) if r.user_id else None
    if keep is not None and keep >= r.at:
        return "erased"
    if cutoff is not None and r.footprint_time is not None and r.footprint_time < cutoff:
        return "expired"
    if r.event_id in elsewhere or r.event_id in stored:
        return "repeated"
    return "lost"


def apply(buckets: Sequence[Bucket], classified: Classified, read: set[int]) -> None:
    """The corrections and explanations of ``classify`` into ``buckets``."""
    for i, b in enumerate(buckets):
        if b.accepted is None:
            continue
        b.accepted += classified.accepted.get(i, 0)
        b.in_flight += classified.in_flight.get(i, 0)
        if i in read:
            b.read = True
            b.explained = classified.explained.get(i, {})
            b.lost = classified.lost.get(i, {})


# ---------------------------------------------------------------------------------------- the report

@dataclass(frozen=True)
class PartitionState:
    """One partition of the events or the dead-letter topic when the audit ran."""

    topic: str
    partition: int
    low: int  # the first offset retained
    end: int  # the next offset to be written
    committed: int | None  # the group's (None: it has none)

    @property
    def lag(self) -> int:
        """Messages the group has yet to consume: from its committed offset (the low watermark when it
        has none, or when the retention deleted past it) to the end."""
        return max(self.end - max(self.committed if self.committed is not None else self.low, self.low), 0)


@dataclass
class Audit:
    since: datetime
    until: datetime | None  # None: open ("now": what Kafka and the stores held when asked)
    ran_at: datetime
    group: str
    topic: str
    dlq_topic: str
    buckets: list[Bucket]
    partitions: list[PartitionState]
    notes: list[str] = field(default_factory=list)
    read_messages: int = 0
    seconds: float = 0.0

    @property
    def totals(self) -> Totals:
        return totals(self.buckets)

    @property
    def window_seconds(self) -> float:
        return ((self.until or self.ran_at) - self.since).total_seconds()
