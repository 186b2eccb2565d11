"""Read `kafka-metadata-quorum.sh describe` output for the kafka role's cluster gates."""

from __future__ import annotations

import re
from typing import Any

_VOTERS = re.compile(r"^CurrentVoters:\s*(?P<voters>.*)$", re.MULTILINE)
_VOTER_ID = re.compile(r'"id"\s*:\s*(\d+)')
_LEADER = re.compile(r"^LeaderId:\s*(-?\d+)", re.MULTILINE)


def kafka_quorum_replication(output: str) -> list[dict[str, Any]]:
    """Rows of `describe --replication`: {id, directory_id, log_end_offset, lag, status}."""
    rows: list[dict[str, Any]] = []
    header: list[str] | None = None
    for line in output.splitlines():
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "NodeId":
            header = fields
            continue
        if header is None or not fields[0].isdigit() or len(fields) < len(header):
            continue
        row = dict(zip(header, fields, strict=False))
        rows.append(
            {
                "id": int(row["NodeId"]),
                "directory_id": row.get("DirectoryId", ""),
                "log_end_offset": int(row.get("LogEndOffset", "-1")),
                "lag": int(row.get("Lag", "-1")),
                "status": fields[-1],
            }
        )
    return rows


def kafka_quorum_voters(output: str) -> list[int]:
    """Voter ids from `describe --status` (CurrentVoters: [{"id": 1, ...}, ...] or [1,2,3])."""
    match = _VOTERS.search(output)
    if not match:
        return []
    text = match["voters"]
    ids = _VOTER_ID.findall(text) or re.findall(r"\d+", text)
    return sorted({int(i) for i in ids})


def kafka_quorum_leader(output: str) -> int:
    """LeaderId from `describe --status`; -1 when there is none."""
    match = _LEADER.search(output)
    return int(match.group(1)) if match else -1


def kafka_quorum_problems(output: str, node_ids: list[Any], max_lag: Any) -> list[str]:
    """Why the quorum is not whole, from `describe --replication`: every voter must replicate the
    metadata log within max_lag records of the leader (a stopped voter falls behind at once: the
    leader writes a record every 500 ms), and every node of node_ids must be among the voters or
    observers, equally close. Empty when all is well."""
    rows = kafka_quorum_replication(output)
    if not rows:
        return ["no replication state (is the quorum reachable?)"]
    problems = []
    seen = {row["id"]: row for row in rows}
    if not any(row["status"] == "Leader" for row in rows):
        problems.append("no leader")
    for row in rows:
        if row["status"] in ("Leader", "Follower") and not 0 <= row["lag"] <= int(max_lag):
            problems.append(f"voter {row['id']} lags {row['lag']} records")
    for node_id in sorted({int(i) for i in node_ids}):
        found = seen.get(node_id)
        if found is None:
            problems.append(f"node {node_id} does not fetch the metadata log")
        elif found["status"] == "Observer" and not 0 <= found["lag"] <= int(max_lag):
            problems.append(f"node {node_id} lags {found['lag']} records")
    return problems


class FilterModule:
    """Quorum filters of the kafka role."""

    def filters(self) -> dict[str, Any]:
        return {
            "kafka_quorum_replication": kafka_quorum_replication,
            "kafka_quorum_voters": kafka_quorum_voters,
            "kafka_quorum_leader": kafka_quorum_leader,
            "kafka_quorum_problems": kafka_quorum_problems,
        }
