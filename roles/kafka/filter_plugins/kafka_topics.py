"""Parse `kafka-topics.sh --describe` output for the kafka role."""

from __future__ import annotations

import re
from typing import Any

_HEADER = re.compile(
    r"^Topic:\s*(?P<name>\S+)\s+TopicId:\s*\S+\s+PartitionCount:\s*(?P<partitions>\d+)"
    r"\s+ReplicationFactor:\s*(?P<rf>\d+)\s+Configs:\s*(?P<configs>.*)$"
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
            }
    return topics


def kafka_topic_wanted_configs(topic: dict[str, Any]) -> dict[str, str]:
    """The topic-level configs a kafka_topics entry asks for, as strings."""
    wanted = {str(k): str(v) for k, v in (topic.get("config") or {}).items()}
    if topic.get("retention_ms") is not None:
        wanted["retention.ms"] = str(int(topic["retention_ms"]))
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


class FilterModule:
    """Filters of the kafka role."""

    def filters(self) -> dict[str, Any]:
        return {
            "kafka_topics_describe": kafka_topics_describe,
            "kafka_topic_wanted_configs": kafka_topic_wanted_configs,
            "kafka_topic_config_args": kafka_topic_config_args,
            "kafka_topic_config_drift": kafka_topic_config_drift,
        }
