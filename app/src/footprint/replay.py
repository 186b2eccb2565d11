"""``footprint replay --from``: move the consumer group's committed offsets back, in one command.

The group is joined as the consumer itself: its principal (``kafka_client_config("consumer")``:
no admin credentials on an app host), its group and its static member id (``group.instance.id``).
A static member that comes back with its id takes over its old membership at once, so there is no
waiting for the stopped consumer's session to time out (static members send no LeaveGroup). On the
assignment, the target offsets of the assigned partitions (the earliest retained, or the first at
or after a time: ``offsets_for_times``) are committed synchronously; the consumer, started again
with the same id, takes the membership back and reads from there. It stores nothing twice: both
sinks keep the first write of an event_id.

The local consumer must be stopped first (two members with one instance id fence each other): a
consumer answering on its /healthz endpoint (``consumer_http_host``:``consumer_http_port``) makes
the replay refuse. With several app hosts, each host's static member holds its own partitions:
the partitions this run was not assigned are named, with the members holding them where the group
can be described, to be replayed on those hosts.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from footprint.auditbook import parse_when
from footprint.auditkafka import kafka_failure
from footprint.consumer import consumer_config
from footprint.contract import kafka_timestamp
from footprint.settings import Settings
from footprint.stores import StoreUnavailable

STOP_CONSUMER = "sudo systemctl stop footprint-consumer"
_GIVE_UP = {KafkaError._ALL_BROKERS_DOWN, KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED,
            KafkaError.GROUP_AUTHORIZATION_FAILED, KafkaError.TOPIC_AUTHORIZATION_FAILED,
            KafkaError.FENCED_INSTANCE_ID, KafkaError._FATAL}

Out = Callable[[str], None]


def parse_from(spec: str, now: datetime) -> datetime | None:
    """``earliest`` (None), a span before ``now`` (``90m``, ``24h``, ``7d``) or an ISO 8601 time
    (UTC unless it says); ``ValueError`` names the forms understood."""
    text = spec.strip()
    if text == "earliest":
        return None
    try:
        when = parse_when(text, now) if text != "now" else now
    except ValueError:
        when = None
    if when is None or when >= now:
        raise ValueError(f"--from {spec}: want earliest, a span before now (90m, 24h, 7d) or an ISO time in the"
                         " past (2026-03-01T10:00Z, UTC unless it says)")
    return when


def target_offsets(marks: dict[int, tuple[int, int]], at: dict[int, int | None] | None) -> dict[int, int]:
    """Per partition of ``marks`` (low, high watermarks): the low watermark (``at`` None: earliest), or
    ``at``'s offset (the first at or after the time) within the watermarks, the end where none is."""
    out: dict[int, int] = {}
    for partition, (low, high) in marks.items():
        found = None if at is None else at.get(partition)
        out[partition] = low if at is None else high if found is None else min(max(found, low), high)
    return out


def consumer_running(settings: Settings, timeout: float = 2.0) -> str | None:
    """The address of this host's consumer when its /healthz answers (any status: a consumer that waits
    or is stuck runs too); None when nothing listens there or it has no endpoint (port 0)."""
    if not settings.consumer_http_port:
        return None
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(settings.consumer_http_host,
                                                                     settings.consumer_http_host)
    url = f"http://{f'[{host}]' if ':' in host else host}:{settings.consumer_http_port}/healthz"
    try:
        urllib.request.urlopen(url, timeout=timeout).close()
    except urllib.error.HTTPError:
        return url
    except (urllib.error.URLError, OSError) as exc:
        if isinstance(getattr(exc, "reason", exc), ConnectionRefusedError):
            return None
        return url  # something holds the port and does not answer: not safe to assume it stopped
    return url


@dataclass(frozen=True)
class Reset:
    partition: int
    old: int | None  # the group's committed offset before (None: it had none)
    new: int


@dataclass
class GroupReset:
    topic: str
    group: str
    resets: list[Reset] = field(default_factory=list)
    unassigned: list[int] = field(default_factory=list)  # partitions other members hold
    owners: dict[int, str] = field(default_factory=dict)  # those partitions' members, where known
    committed: bool = False

    @property
    def exit_code(self) -> int:
        """0: every partition reset; 1: none, or only some (the others belong to other hosts)."""
        return 0 if self.resets and not self.unassigned else 1


def _auth_fix(settings: Settings) -> str:
    return (f"add READ on group {settings.kafka_group} and READ on topic {settings.kafka_topic} for the consumer's"
            " principal (FOOTPRINT_KAFKA_CONSUMER_USER; the kafka role's kafka_principals)")


class _Member:
    """The replay's membership of the group: joined as the consumer, assignment recorded, fetching paused."""

    def __init__(self, settings: Settings, timeout: float) -> None:
        self.settings = settings
        self.timeout = timeout
        self.errors: list[KafkaError] = []
        self.assigned: list[int] | None = None
        self.consumer = Consumer({**consumer_config(settings), "client.id": "footprint-replay",
                                  "error_cb": self.errors.append})

    def fail(self, what: str, err: Any) -> StoreUnavailable:
        return kafka_failure(self.settings, what, err, _auth_fix(self.settings))

    def join(self) -> list[int]:
        def on_assign(consumer: Any, parts: list[TopicPartition]) -> None:
            consumer.assign(parts)
            consumer.pause(parts)  # nothing is read: only the offsets are moved
            self.assigned = sorted(tp.partition for tp in parts if tp.topic == self.settings.kafka_topic)

        what = f"joining the group {self.settings.kafka_group}"
        self.consumer.subscribe([self.settings.kafka_topic], on_assign=on_assign)
        end = time.monotonic() + self.timeout
        while self.assigned is None:
            m = self.consumer.poll(0.2)
            err = m.error() if m is not None else None
            if err is not None and err.code() != KafkaError._PARTITION_EOF:
                raise self.fail(what, err)
            given_up = [e for e in self.errors if e.code() in _GIVE_UP or e.fatal()]
            if given_up:
                raise self.fail(what, given_up[0])
            if time.monotonic() > end:
                last = f" (last error: {self.errors[-1].str()})" if self.errors else ""
                raise StoreUnavailable(
                    f"Kafka ({self.settings.kafka_bootstrap}): {what}: no assignment within {self.timeout:.0f} s{last};"
                    " a member without FOOTPRINT_KAFKA_GROUP_INSTANCE_ID that was killed holds the group until its"
                    " session times out: run replay again in a minute")
        return self.assigned

    def offsets(self, what: str, ask: Callable[[], list[TopicPartition]]) -> dict[int, int | None]:
        try:
            found = ask()
        except KafkaException as exc:
            raise self.fail(what, exc) from None
        for tp in found:
            if tp.error is not None:
                raise self.fail(f"{what} [{tp.partition}]", tp.error)
        return {tp.partition: tp.offset if tp.offset >= 0 else None for tp in found}

    def partitions(self) -> list[int]:
        topic = self.settings.kafka_topic
        try:
            meta = self.consumer.list_topics(topic, timeout=self.timeout).topics.get(topic)
        except KafkaException as exc:
            raise self.fail(f"reading the metadata of {topic}", exc) from None
        if meta is None or meta.error is not None:
            raise self.fail(f"topic {topic}", meta.error if meta is not None else "no such topic")
        return sorted(meta.partitions)

    def watermarks(self, partition: int) -> tuple[int, int]:
        tp = TopicPartition(self.settings.kafka_topic, partition)
        try:
            marks = self.consumer.get_watermark_offsets(tp, timeout=self.timeout, cached=False)
        except KafkaException as exc:
            raise self.fail(f"listing the offsets of {tp.topic}[{partition}]", exc) from None
        if marks is None:
            raise self.fail(f"listing the offsets of {tp.topic}[{partition}]", KafkaError(KafkaError._TIMED_OUT))
        return int(marks[0]), int(marks[1])


def reset_group(settings: Settings, when: datetime | None, *, dry_run: bool = False, out: Out = print,
                timeout: float | None = None) -> GroupReset:
    """Commit the group's offsets of the partitions this member is assigned to the earliest (``when``
    None) or the first at or after ``when``; ``dry_run``: say what would be committed, commit nothing."""
    topic, group = settings.kafka_topic, settings.kafka_group
    result = GroupReset(topic, group)
    instance = settings.kafka_group_instance_id
    wait = timeout if timeout is not None else settings.kafka_session_timeout_ms / 1000 + 15
    out(f"joining group {group} on {topic}" + (f" as static member {instance}" if instance else " (dynamic member)"))
    member = _Member(settings, wait)
    try:
        assigned = member.join()
        result.unassigned = [p for p in member.partitions() if p not in assigned]
        out(f"assigned partitions: {', '.join(map(str, assigned)) or 'none'}")
        marks = {p: member.watermarks(p) for p in assigned}
        at = None
        if when is not None and assigned:
            at = member.offsets(f"listing the offsets of {topic} at {when:%Y-%m-%d %H:%M:%S}", lambda: (
                member.consumer.offsets_for_times([TopicPartition(topic, p, kafka_timestamp(when)) for p in assigned],
                                                  timeout=wait)))
        old = member.offsets(f"reading the committed offsets of the group {group}", lambda: (
            member.consumer.committed([TopicPartition(topic, p) for p in assigned], timeout=wait)))
        targets = target_offsets(marks, at)
        result.resets = [Reset(p, old.get(p), targets[p]) for p in assigned]
        for r in result.resets:
            out(f"  {topic}[{r.partition}]: {'none' if r.old is None else r.old} -> {r.new}")
        if result.resets and not dry_run:
            done = member.offsets(f"committing the offsets of the group {group}", lambda: (
                member.consumer.commit(offsets=[TopicPartition(topic, r.partition, r.new) for r in result.resets],
                                       asynchronous=False) or []))
            result.committed = True
            out(f"committed {len(done)} offsets of group {group}")
        elif dry_run:
            out("dry run: nothing committed")
    finally:
        member.consumer.close()  # a static member sends no LeaveGroup: the consumer takes the id back at once
    if result.unassigned:
        result.owners = _owners(settings, result.unassigned)
        for p in result.unassigned:
            out(f"  {topic}[{p}]: not assigned to this host" + (f" (held by {result.owners[p]})"
                                                                 if p in result.owners else ""))
        out("run footprint replay with the same --from on the other app hosts (each resets its own partitions)")
    return result


def _owners(settings: Settings, partitions: list[int]) -> dict[int, str]:
    """Who holds ``partitions`` in the group, where the consumer's principal may describe it (else empty)."""
    admin = AdminClient(settings.kafka_client_config("consumer"))
    try:
        group = admin.describe_consumer_groups([settings.kafka_group], request_timeout=10)[settings.kafka_group]
        description = group.result(15)
    except Exception:  # describing is a courtesy: the partitions are named anyway
        return {}
    owners: dict[int, str] = {}
    for m in description.members:
        name = f"{m.group_instance_id or m.client_id} on {m.host.lstrip('/')}"
        for tp in m.assignment.topic_partitions if m.assignment else []:
            if tp.topic == settings.kafka_topic and tp.partition in partitions:
                owners[tp.partition] = name
    return owners
