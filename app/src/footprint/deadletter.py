"""The dead-letter topic: where messages that cannot be stored go, with the reason, never lost.

Every dead letter carries headers naming the reason and the source topic, partition and offset,
and the source message's Kafka timestamp as its own (the event's ``received_at``): ``footprint
audit`` counts the dead letters of an hour by Kafka's offsets at that time, without reading them.
The dead-letter topic's retention (30 days by default) then counts from the original message's
time, not from the dead-lettering (the events topic keeps 7 days: a dead letter lives 23 days at
least).
A value larger than ``max_value_bytes`` is cut (header ``footprint.truncated`` with the original
size): the original stays in the source topic until its retention, and the headers point at it.
A message the dead-letter topic refuses as such (too large for the broker, an invalid record) is
sent once more as a minimal copy (headers and the first KiB); only if that fails too, or the
failure is the topic's or the cluster's (unreachable, timed out), is it an outage: the consumer
pauses and retries, it never skips.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, KafkaError, KafkaException, Message

from footprint.batch import Msg

log = logging.getLogger("footprint.deadletter")

MINIMAL_VALUE_BYTES = 1024
# delivery failures that say "Kafka is not there right now" (retry the batch), not "this message"
_OUTAGE_CODES = frozenset({
    KafkaError._MSG_TIMED_OUT, KafkaError._TIMED_OUT, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN,
    KafkaError._UNKNOWN_TOPIC, KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED, KafkaError._FATAL, KafkaError.NOT_ENOUGH_REPLICAS,
    KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
})


class DeadLetterUnavailable(Exception):
    """The dead-letter topic did not acknowledge: treated as an outage (pause, retry, never skip)."""


class DeadLetterProducer(Protocol):
    """What ``DeadLetters`` needs from a Kafka producer (``confluent_kafka.Producer`` has it)."""

    def produce(self, topic: str, value: Any = ..., key: Any = ..., *args: Any, **kwargs: Any) -> None: ...
    def flush(self, timeout: float = ...) -> int: ...


def dlq_producer_config(bootstrap: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "message.timeout.ms": 30_000,
        "client.id": "footprint-dlq",
        "logger": logging.getLogger("footprint.librdkafka"),
    }


def _is_outage(err: KafkaError) -> bool:
    return err.code() in _OUTAGE_CODES or err.retriable()


Key = tuple[str, int, int]  # source (topic, partition, offset)


class DeadLetters:
    """Sends messages with their reasons to the dead-letter topic and waits for the acknowledgement."""

    def __init__(self, producer: DeadLetterProducer, topic: str, max_value_bytes: int,
                 flush_seconds: float = 35.0) -> None:
        self.producer = producer
        self.topic = topic
        self.max_value_bytes = max_value_bytes
        self.flush_seconds = flush_seconds

    def send(self, bad: list[tuple[Msg, str]], sent: set[Key]) -> None:
        """Dead-letter every message of ``bad`` not yet in ``sent`` (acknowledged keys are added to it).

        Raises ``DeadLetterUnavailable`` when some were not acknowledged; a retry sends only those.
        """
        todo = [(m, reason) for m, reason in bad if _key(m) not in sent]
        if not todo:
            return
        refused = self._round(todo, sent, minimal=False)
        if refused:
            log.warning("dead-letter topic refused messages as they are; sending minimal copies",
                        extra={"count": len(refused), "error": refused[0][1]})
            still = self._round([item for item, _err in refused], sent, minimal=True)
            if still:
                raise DeadLetterUnavailable(f"dead-letter topic refused even a minimal copy: {still[0][1]}")
        for m, reason in todo:
            log.warning("message dead-lettered", extra={"reason": reason[:200], "partition": m.partition(),
                                                        "offset": m.offset()})

    def _round(self, items: list[tuple[Msg, str]], sent: set[Key],
               minimal: bool) -> list[tuple[tuple[Msg, str], str]]:
        """One produce-and-flush round; returns the items refused as messages (not by an outage)."""
        refused: list[tuple[tuple[Msg, str], str]] = []
        outage: list[str] = []
        for item in items:
            m, reason = item
            value, headers = self._letter(m, reason, minimal)
            try:
                self.producer.produce(self.topic, value=value, key=self._key_of(m, minimal), headers=headers,
                                      timestamp=_timestamp(m), on_delivery=self._report(item, sent, refused, outage))
            except BufferError:
                self.producer.flush(self.flush_seconds)
                outage.append("local producer queue full")
            except KafkaException as exc:  # refused before sending, e.g. larger than message.max.bytes
                err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                if err is not None and _is_outage(err):
                    outage.append(str(err))
                else:
                    refused.append((item, str(exc)))
        left = self.producer.flush(self.flush_seconds)
        if outage or left:
            why = outage[0] if outage else f"{left} messages still unacknowledged"
            raise DeadLetterUnavailable(f"dead-letter topic did not acknowledge: {why}")
        return refused

    def _report(self, item: tuple[Msg, str], sent: set[Key], refused: list[tuple[tuple[Msg, str], str]],
                outage: list[str]) -> Callable[[KafkaError | None, Message], None]:
        def cb(err: KafkaError | None, _msg: Message) -> None:
            if err is None:
                sent.add(_key(item[0]))
            elif _is_outage(err):
                outage.append(str(err))
            else:
                refused.append((item, str(err)))
        return cb

    @staticmethod
    def _key_of(m: Msg, minimal: bool) -> bytes | None:
        key = m.key()
        if minimal and key is not None and len(key) > MINIMAL_VALUE_BYTES // 4:
            return key[: MINIMAL_VALUE_BYTES // 4]
        return key if isinstance(key, bytes | None) else str(key).encode()

    def _letter(self, m: Msg, reason: str, minimal: bool) -> tuple[bytes | None, list[tuple[str, bytes]]]:
        value = m.value()
        headers = [
            ("footprint.reason", reason.encode("utf-8", "replace")[:1000]),
            ("footprint.source.topic", (m.topic() or "").encode()),
            ("footprint.source.partition", str(m.partition()).encode()),
            ("footprint.source.offset", str(m.offset()).encode()),
        ]
        limit = MINIMAL_VALUE_BYTES if minimal else self.max_value_bytes
        if value is not None and len(value) > limit:
            headers.append(("footprint.truncated", str(len(value)).encode()))
            value = value[:limit]
        return value, headers


def _timestamp(m: Msg) -> int:
    """The source message's timestamp (ms), or 0 (librdkafka's now) when it has none."""
    kind, value = m.timestamp()
    return value if kind != TIMESTAMP_NOT_AVAILABLE and value > 0 else 0


def _key(m: Msg) -> Key:
    return (m.topic() or "", m.partition() or 0, m.offset() or 0)
