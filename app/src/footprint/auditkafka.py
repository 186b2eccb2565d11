"""What ``footprint audit`` asks Kafka, as the consumer's principal, without joining its group.

One ``confluent_kafka.Consumer`` with the group's id, never subscribed: it lists offsets (by time
and the watermarks), fetches the group's committed offsets and reads ranges of the events topic it
assigns itself; it never commits, so the group's members and offsets stay as they are. The ACLs
this needs are the consumer principal's own (the kafka role's ``kafka_principals``): Describe on
both topics (implied by its Read on the events topic and Write on the dead-letter topic), Describe
on the group (implied by Read) and Read on the events topic.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Generator
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from footprint.contract import kafka_timestamp as ms
from footprint.settings import KafkaSettings
from footprint.stores import StoreUnavailable

_AUTH = {KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED,
         KafkaError.CLUSTER_AUTHORIZATION_FAILED, KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED}
_UNREACHABLE = {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT,
                KafkaError._RESOLVE, KafkaError.REQUEST_TIMED_OUT}
_MISSING = {KafkaError._UNKNOWN_TOPIC, KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_PARTITION}


def from_ms(value: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=value)


def kafka_failure(settings: KafkaSettings, what: str, err: Any, auth_fix: str) -> StoreUnavailable:
    """``err`` (a ``KafkaError``, a ``KafkaException`` or else) of doing ``what`` as a user-facing error
    naming the fix: ``auth_fix`` when Kafka refused the principal."""
    error = err if isinstance(err, KafkaError) else (
        err.args[0] if isinstance(err, KafkaException) and err.args and isinstance(err.args[0], KafkaError)
        else None)
    text = error.str() if error is not None else str(err)
    code = error.code() if error is not None else None
    if code in _AUTH:
        fix = auth_fix
    elif code in _MISSING:
        fix = "set FOOTPRINT_KAFKA_TOPIC and FOOTPRINT_KAFKA_DLQ_TOPIC to the app's topics (the kafka role makes them)"
    elif code in _UNREACHABLE:
        fix = "check FOOTPRINT_KAFKA_BOOTSTRAP and that a broker runs and answers there"
    else:
        fix = "see the broker's log"
    return StoreUnavailable(f"Kafka ({settings.kafka_bootstrap}): {what}: {text}; {fix}")


class KafkaView:
    """Offsets and reads of the app's topics, errors as ``StoreUnavailable`` naming cause and fix."""

    def __init__(self, settings: KafkaSettings, timeout: float = 15.0, auth_fix: str = "",
                 client_id: str = "footprint-audit") -> None:
        """``auth_fix``: what to grant when Kafka refuses the principal (default: the audit's ACLs)."""
        self.settings = settings
        self.timeout = timeout
        self.auth_fix = auth_fix
        self._consumer = Consumer({
            **settings.kafka_client_config("consumer"),
            "group.id": settings.kafka_group,  # only to read its committed offsets: never subscribed
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "client.id": client_id,
            "logger": logging.getLogger("footprint.librdkafka"),
        })

    def close(self) -> None:
        self._consumer.close()

    def _fail(self, what: str, err: Any) -> StoreUnavailable:
        auth_fix = self.auth_fix or (
            "the audit uses the consumer's principal (FOOTPRINT_KAFKA_CONSUMER_USER/_PASSWORD): it needs"
            f" Describe on {self.settings.kafka_topic} and {self.settings.kafka_dlq_topic}, Read on"
            f" {self.settings.kafka_topic} and Describe on the group {self.settings.kafka_group}"
            " (the kafka role's kafka_principals grant them)")
        return kafka_failure(self.settings, what, err, auth_fix)

    def partitions(self, topic: str) -> list[int]:
        try:
            md = self._consumer.list_topics(topic, timeout=self.timeout)
        except KafkaException as exc:
            raise self._fail(f"reading the metadata of {topic}", exc) from None
        meta = md.topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise self._fail(f"topic {topic}", meta.error if meta is not None and meta.error is not None
                             else KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))
        return sorted(meta.partitions)

    def watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        try:
            marks = self._consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=self.timeout,
                                                         cached=False)
        except KafkaException as exc:
            raise self._fail(f"listing the offsets of {topic}[{partition}]", exc) from None
        if marks is None:
            raise self._fail(f"listing the offsets of {topic}[{partition}]", KafkaError(KafkaError._TIMED_OUT))
        low, high = marks
        return int(low), int(high)

    def offsets_at(self, topic: str, partitions: list[int], when: datetime) -> dict[int, int | None]:
        """Per partition, the first offset whose timestamp is at or after ``when`` (None: none is)."""
        return self._offsets(f"listing the offsets of {topic} at {when:%Y-%m-%d %H:%M:%S}", lambda: (
            self._consumer.offsets_for_times([TopicPartition(topic, p, ms(when)) for p in partitions],
                                             timeout=self.timeout)))

    def committed(self, topic: str, partitions: list[int]) -> dict[int, int | None]:
        """The group's committed offset per partition (None: it has none)."""
        return self._offsets(f"reading the committed offsets of the group {self.settings.kafka_group} on {topic}",
                             lambda: self._consumer.committed([TopicPartition(topic, p) for p in partitions],
                                                              timeout=self.timeout))

    def _offsets(self, what: str, ask: Callable[[], list[TopicPartition]]) -> dict[int, int | None]:
        """Kafka's per-partition answer of ``ask`` (a negative offset: None), errors named with ``what``."""
        try:
            found = ask()
        except KafkaException as exc:
            raise self._fail(what, exc) from None
        out: dict[int, int | None] = {}
        for tp in found:
            if tp.error is not None:
                raise self._fail(f"{what} [{tp.partition}]", tp.error)
            out[tp.partition] = tp.offset if tp.offset >= 0 else None
        return out

    def timestamp_at(self, topic: str, partition: int, offset: int, end: int) -> datetime | None:
        """The timestamp of the first message at or after ``offset`` (None: there is none before ``end``)."""
        with contextlib.closing(self.read(topic, partition, offset, offset + 1, end)) as messages:
            first = next(messages, None)
        return from_ms(first.timestamp()[1]) if first is not None else None

    def read(self, topic: str, partition: int, start: int, stop: int, end: int,
             past_stop_until: datetime | None = None) -> Generator[Message, None, None]:
        """The messages of [start, stop), then on past ``stop`` while their timestamp is before
        ``past_stop_until`` (messages of the range's time that came later), never at or past ``end``."""
        if start >= min(stop, end) and past_stop_until is None:
            return
        horizon = ms(past_stop_until) if past_stop_until is not None else None
        self._consumer.assign([TopicPartition(topic, partition, start)])
        position, idle_since = start, time.monotonic()
        try:
            while position < end:
                # never more than there are before `end`: a batch call waits its timeout for the count
                batch = self._consumer.consume(num_messages=max(1, min(5000, end - position)), timeout=1.0)
                if not batch:
                    if time.monotonic() - idle_since > self.timeout:
                        raise self._fail(f"reading {topic}[{partition}] at offset {position}",
                                         KafkaError(KafkaError._TIMED_OUT))
                    continue
                idle_since = time.monotonic()
                for m in batch:
                    err = m.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            return
                        raise self._fail(f"reading {topic}[{partition}]", err)
                    offset = m.offset() or 0
                    position = offset + 1
                    if offset >= end:
                        return
                    if offset >= stop and (horizon is None or m.timestamp()[1] >= horizon):
                        return
                    yield m
        finally:
            self._consumer.unassign()
