"""Parse `kafka-topics.sh --describe` output for the kafka role."""

from __future__ import annotations

import re
from typing import Any

_HEADER = re.compile(
    r"^Topic:\s*(?P<name>\S+)\s+TopicId:\s*\S+\s+PartitionCount:\s*(?P<partitions>\d+)"
    r"\s+ReplicationFactor:\s*(?P<rf>\d+)\s+Configs:\s*(?P<configs>.*)$"
)
_PARTITION = re.compile(
    r"^\s*Topic:\s*(?P<name>\S+)\s+Partition:\s*(?P<partition>\d+)\s+Leader:\s*\S+"
    r"\s+Replicas:\s*(?P<replicas>[0-9,]*)\s+Isr:\s*(?P<isr>[0-9,]*)"
)


def _configs(text: str) -> dict[str, str]:
    """Split `a=1,cleanup.policy=compact,delete,b=2`: a token without '=' continues the value."""
    configs: dict[str, str] = {}
    last = None
    for token in text.strip().split(","):
        if not token:
            continue
        if "=" in token:
            key, value = token.split("=", 1)
            configs[key] = value
            last = key
        elif last is not None:
            configs[last] += "," + token
    return configs


def kafka_topics_describe(output: str) -> dict[str, dict[str, Any]]:
    """Map topic name -> {partitions, replication_factor, configs} from the describe output."""
    topics: dict[str, dict[str, Any]] = {}
    for line in output.splitlines():
        match = _HEADER.match(line)
        if match:
            topics[match["name"]] = {
                "partitions": int(match["partitions"]),
                "replication_factor": int(match["rf"]),
                "configs": _configs(match["configs"]),
                "assignment": {},
            }
            continue
        match = _PARTITION.match(line)
        if match and match["name"] in topics:
            replicas = [int(r) for r in match["replicas"].split(",") if r]
            topics[match["name"]]["assignment"][int(match["partition"])] = replicas
    return topics


def kafka_reassignment(
    existing: dict[str, Any], wanted_rf: dict[str, Any], broker_ids: list[Any]
) -> dict[str, Any]:
    """The reassignment (kafka-reassign-partitions JSON) raising each topic of wanted_rf whose
    replication factor is lower to the wanted one: every partition keeps its replicas (the
    leader first) and gains brokers in a rotation that starts at a different broker for each
    partition, so new replicas spread evenly. Topics already at (or above) it are left alone."""
    brokers = sorted({int(b) for b in broker_ids})
    partitions = []
    for topic in sorted(wanted_rf):
        info = existing.get(topic)
        rf = int(wanted_rf[topic])
        if not info or info["replication_factor"] >= rf:
            continue
        for partition, replicas in sorted(info["assignment"].items(), key=lambda kv: int(kv[0])):
            new = list(replicas)
            start = (int(partition) + sum(map(ord, topic))) % len(brokers) if brokers else 0
            for broker in brokers[start:] + brokers[:start]:
                if len(new) >= rf:
                    break
                if broker not in new:
                    new.append(broker)
            partitions.append({"topic": topic, "partition": int(partition), "replicas": new})
    return {"version": 1, "partitions": partitions}


def kafka_topic_wanted_configs(topic: dict[str, Any]) -> dict[str, str]:
    """The topic-level configs a kafka_topics entry asks for, as strings."""
    wanted = {str(k): str(v) for k, v in (topic.get("config") or {}).items()}
    if topic.get("retention_ms") is not None:
        wanted["retention.ms"] = str(int(topic["retention_ms"]))
    if topic.get("retention_bytes") is not None:
        wanted["retention.bytes"] = str(int(topic["retention_bytes"]))
    if topic.get("cleanup_policy") is not None:
        wanted["cleanup.policy"] = str(topic["cleanup_policy"])
    return wanted


def kafka_topic_config_args(topic: dict[str, Any]) -> list[str]:
    """`--config key=value` arguments for `kafka-topics.sh --create`."""
    args: list[str] = []
    for key, value in sorted(kafka_topic_wanted_configs(topic).items()):
        args += ["--config", f"{key}={value}"]
    return args


def kafka_topic_config_drift(topic: dict[str, Any], existing: dict[str, Any]) -> str:
    """The `--add-config` value setting every wanted config the topic lacks or differs on.

    Empty when the topic already matches (configs the entry does not declare are left alone).
    """
    current = (existing.get(topic["name"]) or {}).get("configs", {})
    changes = []
    for key, value in sorted(kafka_topic_wanted_configs(topic).items()):
        if current.get(key) != value:
            changes.append(f"{key}=[{value}]" if "," in value else f"{key}={value}")
    return ",".join(changes)


def kafka_retention_need(
    topics: list[dict[str, Any]],
    brokers: Any,
    default_rf: Any,
    broker_configs: dict[str, Any],
) -> list[dict[str, Any]]:
    """What each declared topic may hold on one broker's log dirs at most (tasks/retention.yml).

    A broker holds ceil(partitions x replication factor / brokers) replicas of the topic, and a
    replica up to retention.bytes plus one segment.bytes (deletion drops whole segments, so up
    to one segment beyond retention.bytes stays; the active segment is never deleted). A topic
    whose retention.bytes is -1, or that is compacted without delete, is unbounded (bytes 0).
    broker_configs: the broker's defaults (log.retention.bytes, log.segment.bytes,
    log.cleanup.policy) for what a topic does not set.
    """
    plan = []
    for topic in topics:
        wanted = kafka_topic_wanted_configs(topic)
        partitions = int(topic.get("partitions", 1))
        rf = int(topic.get("replication_factor", default_rf))
        replicas = -(-partitions * rf // max(int(brokers), 1))
        retention = int(wanted.get("retention.bytes", broker_configs.get("log.retention.bytes", -1)))
        segment = int(wanted.get("segment.bytes", broker_configs.get("log.segment.bytes", 1073741824)))
        policy = str(wanted.get("cleanup.policy", broker_configs.get("log.cleanup.policy", "delete")))
        unbounded = retention < 0 or "delete" not in policy
        plan.append({
            "name": topic["name"],
            "replicas": replicas,
            "retention_bytes": retention,
            "segment_bytes": segment,
            "unbounded": unbounded,
            "bytes": 0 if unbounded else replicas * (retention + segment),
        })
    return plan


class FilterModule:
    """Filters of the kafka role."""

    def filters(self) -> dict[str, Any]:
        return {
            "kafka_topics_describe": kafka_topics_describe,
            "kafka_topic_wanted_configs": kafka_topic_wanted_configs,
            "kafka_topic_config_args": kafka_topic_config_args,
            "kafka_topic_config_drift": kafka_topic_config_drift,
            "kafka_reassignment": kafka_reassignment,
            "kafka_retention_need": kafka_retention_need,
        }
