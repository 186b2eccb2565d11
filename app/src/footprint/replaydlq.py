"""``footprint replay --dead-letters``: re-drive the dead-letter topic into both stores after a fix.

The dead letters from ``--from`` (earliest, or the first at or after a time) up to the topic's end
at the start are read with ``assign`` (no group joined, nothing committed: the dead letters stay
where they are). Each one's original event is its value, or, for a dead letter cut to size (header
``footprint.truncated``), the source message its headers point at, read from the source topic while
Kafka still has it. It is decoded with the consumer's decoder, events of users with a kept erasure
request are dropped (``ErasedUsers``), and the rest go to both stores through the consumer's sinks,
where the first write of an event_id wins: a second re-drive stores nothing again. Messages that still
fail (decode, or a store refuses them) are counted by reason.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from footprint.auditkafka import KafkaView
from footprint.batch import Docs
from footprint.contract import decode_message
from footprint.erasure import ErasedUsers
from footprint.interfaces import Sink
from footprint.replay import target_offsets
from footprint.settings import Settings
from footprint.sinks import ClickHouseSink, PostgresSink
from footprint.stores import StoreUnavailable

BATCH = 500
Out = Callable[[str], None]


@dataclass
class Redrive:
    read: int = 0
    stored: Counter[str] = field(default_factory=Counter)  # per store: events newly stored
    already: Counter[str] = field(default_factory=Counter)  # per store: events it already held
    erased: int = 0
    failing: Counter[str] = field(default_factory=Counter)  # reason -> messages

    @property
    def exit_code(self) -> int:
        """0: every dead letter read (none is fine) is stored, now or before, or erased; 1: some still fail."""
        return 1 if self.failing else 0

    def lines(self, dry_run: bool) -> list[str]:
        stores = ("postgres", "clickhouse")
        out = [f"dead letters read: {self.read}"]
        if dry_run:
            out.append(f"would be written to both stores: {self.stored['dry run']} (dry run: nothing written)")
        else:
            out.append("stored (new): " + ", ".join(f"{s} {self.stored[s]}" for s in stores))
            out.append("already stored: " + ", ".join(f"{s} {self.already[s]}" for s in stores))
        out.append(f"erased users' events (not stored): {self.erased}")
        out.append(f"still failing: {sum(self.failing.values())}")
        out.extend(f"  {n}  {reason}" for reason, n in self.failing.most_common())
        return out


class _Writer:
    """Batches of decoded events to both stores, counting what each newly stored and what failed."""

    def __init__(self, settings: Settings, result: Redrive, dry_run: bool) -> None:
        self.result = result
        self.dry_run = dry_run
        self.erased = ErasedUsers(settings.pg_dsn.get_secret_value(), settings.erasure_refresh_seconds)
        self.sinks: list[Sink] = [] if dry_run else [
            PostgresSink(settings.pg_dsn.get_secret_value()), ClickHouseSink(settings)]
        self.docs: Docs = {}

    def add(self, key: str, doc: bytes) -> None:
        self.docs.setdefault(key, doc)
        if len(self.docs) >= BATCH:
            self.flush()

    def flush(self) -> None:
        docs, self.docs = self.docs, {}
        kept = self.erased.filter(docs)
        self.result.erased += len(docs) - len(kept)
        if self.dry_run:
            self.result.stored["dry run"] += len(kept)
        if self.dry_run or not kept:
            return
        refused: dict[str, str] = {}  # event_id -> the first store's reason
        for sink in self.sinks:
            here: dict[str, str] = {}
            try:
                new = sink.write(kept)
            except Exception:  # one by one: which events this store refuses (if it is up at all)
                new = self._one_by_one(sink, kept, here)
            self.result.stored[sink.name] += new
            self.result.already[sink.name] += len(kept) - new - len(here)
            refused = here | refused
        self.result.failing.update(refused.values())

    @staticmethod
    def _one_by_one(sink: Sink, docs: Docs, refused: dict[str, str]) -> int:
        new = 0
        for key, doc in docs.items():
            try:
                new += sink.write({key: doc})
            except Exception as exc:
                try:
                    sink.probe()
                except Exception as down:
                    raise StoreUnavailable(f"{sink.name} does not take a known-good event: {down}; nothing"
                                           " is lost (the dead letters stay), run the re-drive again when it is up"
                                           ) from None
                refused[key] = f"{sink.name} refused it: {' '.join(str(exc).split())[:120]}"
        return new

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


def _auth_fix(settings: Settings) -> str:
    return (f"add READ on topic {settings.kafka_dlq_topic} (and on {settings.kafka_topic}, for dead letters cut to"
            " size) for the consumer's principal (FOOTPRINT_KAFKA_CONSUMER_USER; the kafka role's kafka_principals)")


def _headers(raw: Any) -> dict[str, str]:
    """A message's headers as text (the dead-letter headers are ASCII, ``deadletter.py``)."""
    out: dict[str, str] = {}
    for name, value in raw or []:
        out[str(name)] = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")
    return out


def _source(headers: dict[str, str]) -> tuple[str, int, int] | None:
    """The source (topic, partition, offset) a dead letter's headers point at, None if they do not."""
    topic = headers.get("footprint.source.topic", "")
    partition, offset = headers.get("footprint.source.partition", ""), headers.get("footprint.source.offset", "")
    if not topic or not partition.isdigit() or not offset.isdigit():
        return None
    return topic, int(partition), int(offset)


def redrive(settings: Settings, when: datetime | None, *, dry_run: bool = False, out: Out = print) -> Redrive:
    """Re-drive the dead letters from ``when`` (None: the earliest) to the topic's end at the start."""
    result = Redrive()
    topic = settings.kafka_dlq_topic
    view = KafkaView(settings, auth_fix=_auth_fix(settings), client_id="footprint-replay")
    writer = _Writer(settings, result, dry_run)
    try:
        parts = view.partitions(topic)
        marks = {p: view.watermarks(topic, p) for p in parts}
        at = view.offsets_at(topic, parts, when) if when is not None else None
        starts = target_offsets(marks, at)
        for p in parts:
            end = marks[p][1]
            out(f"reading {topic}[{p}] offsets {starts[p]} to {end}")
            cut: list[tuple[str, int, int]] = []  # the sources of dead letters cut to size, read after
            for m in view.read(topic, p, starts[p], end, end):
                result.read += 1
                headers = _headers(m.headers())
                if "footprint.truncated" in headers:
                    source = _source(headers)
                    if source is None:
                        result.failing["cut to size, and its headers name no source message"] += 1
                    else:
                        cut.append(source)
                    continue
                _decode(m.value(), writer, result)
            for source_topic, partition, offset in cut:
                _decode(_original(view, source_topic, partition, offset), writer, result)
        writer.flush()
    finally:
        writer.close()
        view.close()
    for line in result.lines(dry_run):
        out(line)
    return result


def _original(view: KafkaView, topic: str, partition: int, offset: int) -> bytes | Exception | None:
    """The source message's value, or why it cannot be had (no longer in Kafka)."""
    gone = LookupError(f"cut to size, and its original is no longer in {topic} (past its retention)")
    low, high = view.watermarks(topic, partition)
    if not low <= offset < high:
        return gone
    with contextlib.closing(view.read(topic, partition, offset, offset + 1, high)) as messages:
        m = next(messages, None)
    return gone if m is None or m.offset() != offset else m.value()


def _decode(value: bytes | Exception | None, writer: _Writer, result: Redrive) -> None:
    if isinstance(value, Exception):
        result.failing[str(value)] += 1
        return
    try:
        key, doc = decode_message(value)
    except ValueError as exc:
        result.failing[" ".join(str(exc).split())[:120]] += 1
        return
    writer.add(key, doc)
