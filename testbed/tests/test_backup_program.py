"""footprint-backup's bookkeeping (roles/backup/files/footprint_backup.py), without a host.

The decisions that lose data when wrong, on made-up sets in a temporary directory: which sets
pruning keeps (hypothesis: any history of full and incremental ClickHouse backups), which set a
restore takes (by name, by point in time), the base of the next ClickHouse backup, a damaged copy
found by verify, the Kafka tools' output read back. The real services run in the docker
scenario's drill (tests/test_backup.py).
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "roles/backup/files/footprint_backup.py"
_spec = importlib.util.spec_from_file_location("footprint_backup", SCRIPT)
assert _spec and _spec.loader
fb: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fb)

UTC = datetime.timezone.utc  # noqa: UP017 (the program's own spelling, Python 3.10)
START = datetime.datetime(2026, 12, 1, 2, 30, tzinfo=UTC)


def config(tmp: Path, keep: int = 3, full_every_days: int = 7) -> Any:
    (tmp / "etc").mkdir(exist_ok=True)
    (tmp / "etc" / "backup.json").write_text(json.dumps(
        {"dir": str(tmp / "backups"), "keep": keep, "clickhouse_full_every_days": full_every_days, "host": "h1"}))
    return fb.Config(tmp / "etc")


def make_set(cfg: Any, when: datetime.datetime, parts: dict[str, dict[str, Any]]) -> str:
    """A set with a one-file directory per part and its manifest (what footprint-backup run writes)."""
    name = when.strftime("%Y%m%dT%H%M%SZ")
    set_dir = cfg.sets / name
    for part, entry in parts.items():
        (set_dir / part).mkdir(parents=True)
        (set_dir / part / "data").write_text(f"{name} {part}\n")
        fb.record_part(set_dir, "h1", part, dict(entry))
    return name


def test_prune_keeps_the_newest_sets_and_the_bases_they_build_on(tmp_path: Path) -> None:
    cfg = config(tmp_path, keep=2)
    a = make_set(cfg, START, {"clickhouse": {"base_set": None}})
    b = make_set(cfg, START + datetime.timedelta(days=1), {"clickhouse": {"base_set": a}})
    c = make_set(cfg, START + datetime.timedelta(days=2), {"clickhouse": {"base_set": b}})
    old = make_set(cfg, START - datetime.timedelta(days=1), {"clickhouse": {"base_set": None}})
    result = fb.prune(cfg)
    assert result["removed"] == [old]
    assert sorted(result["kept"]) == [a, b, c]  # c needs b needs a
    assert sorted(p.name for p in cfg.sets.iterdir()) == [a, b, c]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=st.lists(st.tuples(st.booleans(), st.integers(1, 3)), min_size=1, max_size=12),
       keep=st.integers(1, 5))
def test_prune_never_removes_a_set_a_kept_set_needs(tmp_path_factory: pytest.TempPathFactory,
                                                    history: list[tuple[bool, int]], keep: int) -> None:
    """Any history of daily backups, each full or incremental on the newest (the program's rule), any keep."""
    cfg = config(tmp_path_factory.mktemp("sets"), keep=keep)
    when, names = START, []
    for full, gap in history:
        when += datetime.timedelta(days=gap)
        base = fb.clickhouse_base(cfg, when) if not full else None
        names.append(make_set(cfg, when, {"clickhouse": {"base_set": base}}))
        fb.prune(cfg)
        left = {p.name for p in cfg.sets.iterdir()}
        assert set(names[-keep:]) <= left, "a set among the newest `keep` was pruned"
        for name in left:  # every set left can be restored: its whole chain is there
            assert set(fb.clickhouse_chain(cfg, name)) <= left


def test_the_next_clickhouse_backup_is_full_once_the_chain_is_old(tmp_path: Path) -> None:
    cfg = config(tmp_path, keep=30, full_every_days=7)
    assert fb.clickhouse_base(cfg, START) is None  # nothing yet: full
    a = make_set(cfg, START, {"clickhouse": {"base_set": None}})
    b = make_set(cfg, START + datetime.timedelta(days=3), {"clickhouse": {"base_set": a}})
    assert fb.clickhouse_base(cfg, START + datetime.timedelta(days=6)) == b  # incremental on the newest
    assert fb.clickhouse_base(cfg, START + datetime.timedelta(days=7, seconds=1)) is None  # a's chain too old


def test_a_restore_takes_the_newest_set_with_its_part_not_newer_than_asked(tmp_path: Path) -> None:
    cfg = config(tmp_path, keep=10)
    a = make_set(cfg, START, {"kafka": {}, "postgresql": {"seconds": 5}})
    b = make_set(cfg, START + datetime.timedelta(hours=1), {"kafka": {}})
    c = make_set(cfg, START + datetime.timedelta(hours=2), {"postgresql": {"seconds": 5}})
    assert fb.set_dir_of(cfg, "latest", "kafka").name == b
    assert fb.set_dir_of(cfg, "latest", "postgresql").name == c
    assert fb.set_dir_of(cfg, c, "kafka").name == b
    assert fb.set_dir_of(cfg, b, "postgresql").name == a
    with pytest.raises(fb.Failure, match="no backup set with clickhouse"):
        fb.set_dir_of(cfg, "latest", "clickhouse")
    with pytest.raises(fb.Failure, match="YYYYMMDDTHHMMSSZ"):
        fb.set_dir_of(cfg, "yesterday", "kafka")


def test_a_point_in_time_takes_the_newest_base_backup_that_ended_before_it(tmp_path: Path) -> None:
    cfg = config(tmp_path, keep=10)
    a = make_set(cfg, START, {"postgresql": {"seconds": 60}})
    b = make_set(cfg, START + datetime.timedelta(hours=1), {"postgresql": {"seconds": 60}})
    at = fb.parse_target_time
    assert fb.pg_set_before(cfg, "latest", at("2026-12-01 03:31:02+00:00")).name == b
    assert fb.pg_set_before(cfg, "latest", at("2026-12-01T03:30:30Z")).name == a  # b had not ended yet
    assert fb.pg_set_before(cfg, a, at("2026-12-02 00:00:00+00:00")).name == a
    with pytest.raises(fb.Failure, match="ended before"):
        fb.pg_set_before(cfg, "latest", at("2026-12-01 02:30:30+00:00"))
    for bad in ("2026-12-01 03:00:00", "yesterday", "2026-12-01 03:00:00+00:00'; restore_command = 'x"):
        with pytest.raises(fb.Failure, match="target-time"):
            at(bad)


def test_verify_finds_a_changed_a_missing_and_an_added_file(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    name = make_set(cfg, START, {"kafka": {}})
    set_dir = cfg.sets / name
    assert fb.verify_set(set_dir)["kafka"]["ok"]
    (set_dir / "kafka" / "data").write_text("changed\n")
    with pytest.raises(fb.Failure, match="changed since the backup"):
        fb.verify_set(set_dir)
    (set_dir / "kafka" / "data").unlink()
    (set_dir / "kafka" / "extra").write_text("x")
    with pytest.raises(fb.Failure, match=r"data: missing; kafka/extra: not in the manifest"):
        fb.verify_set(set_dir)


def test_a_damaged_manifest_spoils_only_its_own_set(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    a = make_set(cfg, START, {"kafka": {}})
    b = make_set(cfg, START + datetime.timedelta(days=1), {"kafka": {}})
    (cfg.sets / b / "manifest.json").write_text("{not json")
    listed = {s["set"]: s for s in fb.list_sets(cfg)}
    assert listed[b]["damaged"] and listed[b]["parts"] == []
    assert fb.set_dir_of(cfg, "latest", "kafka").name == a


def test_the_kafka_tools_output_is_read_back() -> None:
    described = (
        "\nGROUP              TOPIC          PARTITION  CURRENT-OFFSET  LOG-END-OFFSET  LAG\n"
        "footprint-consumer web-logs-topic 0          120             130             10\n"
        "footprint-consumer web-logs-topic 1          -               7               -\n"
        "\nGROUP              TOPIC          PARTITION  CURRENT-OFFSET  LOG-END-OFFSET  LAG\n"
        "footprint-tail-x   web-logs-topic 0          3               130             127\n")
    assert fb.parse_group_offsets(described) == {"footprint-consumer": {"web-logs-topic": {"0": 120}},
                                                 "footprint-tail-x": {"web-logs-topic": {"0": 3}}}


def test_help_lists_every_command() -> None:
    out = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("run", "verify", "add", "list", "prune", "restore-postgresql", "restore-clickhouse",
                    "restore-kafka-offsets"):
        assert command in out


def test_the_outcome_reaches_node_exporter_and_a_failure_keeps_the_last_good_time(tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    textfiles = tmp_path / "textfiles"
    textfiles.mkdir()
    cfg = config(tmp_path)
    cfg.main["textfile_dir"] = str(textfiles)
    cfg.sets.mkdir(parents=True)

    def read() -> dict[str, float]:
        text = (textfiles / "footprint_backup.prom").read_text()
        return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}

    fb.write_metrics(cfg, True, {"parts": {"kafka": {"bytes": 10}, "postgresql": {"bytes": 32}}})
    good = read()
    assert good["footprint_backup_last_run_ok"] == 1 and good["footprint_backup_last_run_bytes"] == 42
    assert good["footprint_backup_last_success_timestamp_seconds"] == good["footprint_backup_last_run_timestamp_seconds"]
    fb.write_metrics(cfg, False, None)
    failed = read()
    assert failed["footprint_backup_last_run_ok"] == 0 and failed["footprint_backup_last_run_bytes"] == 0
    assert failed["footprint_backup_last_success_timestamp_seconds"] == good["footprint_backup_last_success_timestamp_seconds"]
    assert failed["footprint_backup_last_run_timestamp_seconds"] >= good["footprint_backup_last_run_timestamp_seconds"]
    assert not list(textfiles.glob(".*")), "a temporary file was left beside the metrics"
