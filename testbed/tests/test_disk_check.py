"""The base role's daily disk check (roles/base/files/footprint_disk_check.py), without a host.

Run as the timer runs it (a subprocess, on temporary directories, with a history file made up for
the test) and, for exact figures, in-process with a made-up statvfs.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "roles/base/files/footprint_disk_check.py"
_spec = importlib.util.spec_from_file_location("footprint_disk_check", SCRIPT)
assert _spec and _spec.loader
dc: Any = importlib.util.module_from_spec(_spec)
sys.modules["footprint_disk_check"] = dc  # dataclasses look their module up
_spec.loader.exec_module(dc)

DAY = 86400.0
GIB = 1024**3
NOW = 1_800_000_000.0  # 2027-01-15 08:00 UTC
SAMPLE = re.compile(r'^(?P<name>[a-z_]+)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$')


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], text=True, capture_output=True, timeout=60,
                          env={**os.environ, **(env or {})})


def metrics(path: Path) -> dict[tuple[str, str], float]:
    """(metric name, path label) -> value of a Prometheus text file; fails on a line that is not the format."""
    out: dict[tuple[str, str], float] = {}
    for line in path.read_text().splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m["labels"] or ""))
        out[(m["name"], labels.get("path", ""))] = float(m["value"].replace("+Inf", "inf"))
    return out


def history(state: Path, mountpoint: str, samples: list[tuple[float, int]]) -> None:
    """A history file with (time, used) samples of one filesystem."""
    rows = [{"day": dc.datetime.datetime.fromtimestamp(t, tz=dc.datetime.timezone.utc).date().isoformat(),
             "time": t, "used": used, "size": 100 * GIB} for t, used in samples]
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps({"version": 1, "filesystems": {mountpoint: rows}}))


@pytest.fixture
def dirs(tmp_path: Path) -> SimpleNamespace:
    data = [tmp_path / "kafka", tmp_path / "postgresql"]
    for d in data:
        d.mkdir()
    return SimpleNamespace(data=data, missing=tmp_path / "clickhouse", state=tmp_path / "state" / "history.json",
                           prom=tmp_path / "textfile" / "footprint_disk.prom", mountpoint=dc.mountpoint_of(str(tmp_path)))


def args(d: SimpleNamespace, *extra: str) -> list[str]:
    paths = [a for p in [*d.data, d.missing] for a in ("--path", str(p))]
    return [*paths, "--state", str(d.state), "--textfile", str(d.prom), *extra]


def test_help_names_every_option() -> None:
    res = run("--help")
    assert res.returncode == 0, res.stderr
    for option in ("--path", "--state", "--textfile", "--warn-days", "--warn-free-percent", "--window-days",
                   "--keep-days", "--now"):
        assert option in res.stdout
    assert "+Inf" in res.stdout


@pytest.mark.parametrize("bad", [["--warn-days", "0"], ["--warn-free-percent", "101"], ["--keep-days", "x"]])
def test_bad_arguments_are_refused_with_a_message(bad: list[str], tmp_path: Path) -> None:
    res = run(*bad, "--state", str(tmp_path / "h.json"), "--textfile", "")
    assert res.returncode == 2
    assert "footprint-disk-check: error: argument" in res.stderr
    assert not (tmp_path / "h.json").exists()


def test_first_run_records_a_sample_and_does_not_know_the_growth_yet(dirs: SimpleNamespace) -> None:
    res = run(*args(dirs))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert f"skipped {dirs.missing}: no such directory" in lines
    # both data directories are on one filesystem: one line, one history
    [line] = [x for x in lines if x.startswith(dirs.mountpoint + " (")]
    assert f"({dirs.data[0]}, {dirs.data[1]})" in line and "growth not known yet" in line
    state = json.loads(dirs.state.read_text())
    assert state["version"] == 1 and list(state["filesystems"]) == [dirs.mountpoint]
    [sample] = state["filesystems"][dirs.mountpoint]
    st = os.statvfs(dirs.data[0])
    assert sample["size"] == st.f_blocks * st.f_frsize
    got = metrics(dirs.prom)
    for d in dirs.data:
        assert got[("footprint_disk_size_bytes", str(d))] == st.f_blocks * st.f_frsize
        assert got[("footprint_disk_free_bytes", str(d))] > 0
        assert math.isnan(got[("footprint_disk_growth_bytes_per_day", str(d))])
        assert math.isnan(got[("footprint_disk_days_left", str(d))])
        assert got[("footprint_disk_history_samples", str(d))] == 1
    assert not any(p == str(dirs.missing) for _, p in got)
    assert ("footprint_disk_check_timestamp_seconds", "") in got
    assert oct(dirs.prom.stat().st_mode & 0o777) == "0o644"
    assert sorted(p.name for p in dirs.prom.parent.iterdir()) == ["footprint_disk.prom"]  # no temporary left


def test_growth_over_the_last_week_gives_the_days_left(dirs: SimpleNamespace) -> None:
    """A made-up history: 1 GiB/day for the last 7 days (and an older, slower sample outside the window)."""
    st = os.statvfs(dirs.data[0])
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    history(dirs.state, dirs.mountpoint,
            [(NOW - 20 * DAY, used - 8 * GIB), (NOW - 7 * DAY, used - 7 * GIB), (NOW - 3 * DAY, used - 3 * GIB)])
    res = run(*args(dirs, "--now", str(NOW), "--warn-days", "1e9"))
    assert res.returncode == 0, res.stderr
    got = metrics(dirs.prom)
    rate = got[("footprint_disk_growth_bytes_per_day", str(dirs.data[0]))]
    assert abs(rate - GIB) < 64 * 1024**2, rate  # this machine writes a little meanwhile
    free = got[("footprint_disk_free_bytes", str(dirs.data[0]))]
    assert got[("footprint_disk_days_left", str(dirs.data[0]))] == pytest.approx(free / rate, rel=1e-6)
    assert got[("footprint_disk_history_samples", str(dirs.data[0]))] == 4
    assert got[("footprint_disk_warning", str(dirs.data[0]))] == 1
    [line] = [x for x in res.stdout.splitlines() if dirs.mountpoint + " (" in x]
    assert line.startswith("WARNING: ") and "/day over 7.0 days" in line and "fewer than 1e+09 days left" in line


def test_a_shrinking_filesystem_has_infinite_days_left(dirs: SimpleNamespace) -> None:
    st = os.statvfs(dirs.data[0])
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    history(dirs.state, dirs.mountpoint, [(NOW - 2 * DAY, used + 5 * GIB)])
    res = run(*args(dirs, "--now", str(NOW), "--warn-free-percent", "0"))
    assert res.returncode == 0, res.stderr
    got = metrics(dirs.prom)
    assert got[("footprint_disk_growth_bytes_per_day", str(dirs.data[0]))] < 0
    assert got[("footprint_disk_days_left", str(dirs.data[0]))] == math.inf
    assert "not filling up" in res.stdout and "WARNING" not in res.stdout
    assert "+Inf" in dirs.prom.read_text()


def test_under_systemd_lines_carry_the_journal_priority(dirs: SimpleNamespace) -> None:
    st = os.statvfs(dirs.data[0])
    history(dirs.state, dirs.mountpoint, [(NOW - 7 * DAY, (st.f_blocks - st.f_bfree) * st.f_frsize - 7 * GIB)])
    res = run(*args(dirs, "--now", str(NOW), "--warn-days", "1e9"), env={"JOURNAL_STREAM": "8:1234"})
    assert res.returncode == 0, res.stderr
    assert f"<6>skipped {dirs.missing}: no such directory" in res.stdout.splitlines()
    assert any(x.startswith("<4>WARNING: " + dirs.mountpoint) for x in res.stdout.splitlines())


def test_an_unreadable_history_is_set_aside_and_a_new_one_started(dirs: SimpleNamespace) -> None:
    dirs.state.parent.mkdir()
    dirs.state.write_text("{not json")
    res = run(*args(dirs))
    assert res.returncode == 0, res.stderr
    assert "WARNING: history" in res.stdout and "set aside" in res.stdout
    assert dirs.state.with_name("history.json.bad").read_text() == "{not json"
    assert len(json.loads(dirs.state.read_text())["filesystems"][dirs.mountpoint]) == 1


def test_an_unwritable_metrics_file_fails_the_run(dirs: SimpleNamespace) -> None:
    dirs.prom.parent.parent.mkdir(exist_ok=True)
    dirs.prom.parent.write_text("a file where the directory should be")
    res = run(*args(dirs))
    assert res.returncode == 1
    assert "footprint-disk-check: error: cannot write the metrics file" in res.stderr
    assert dirs.state.exists()  # the sample is recorded all the same


# --- in-process, with a made-up filesystem ------------------------------------------------------

class FakeFs:
    """statvfs of a 100 GiB filesystem (4 KiB blocks) with ``used`` bytes in use and 5% reserved for root."""

    def __init__(self, used: int) -> None:
        self.used = used

    def __call__(self, path: str) -> SimpleNamespace:
        blocks, bsize = 100 * GIB // 4096, 4096
        bfree = blocks - self.used // bsize
        return SimpleNamespace(f_blocks=blocks, f_bfree=bfree, f_bavail=bfree - blocks // 20, f_frsize=bsize)


def sample(t: float, used: int) -> Any:
    return dc.Sample(dc.datetime.datetime.fromtimestamp(t, tz=dc.datetime.timezone.utc).date().isoformat(),
                     t, used, 100 * GIB)


def run_check(samples: list[Any], used: int, **kw: Any) -> Any:
    hist = {"/data": list(samples)}
    options = {"window_days": 7.0, "keep_days": 30.0, "warn_days": 30.0, "warn_free_percent": 10.0, **kw}
    [report] = dc.check({"/data": ["/data/kafka"]}, hist, NOW, statvfs=FakeFs(used), **options)
    return report, hist["/data"]


def test_exact_rate_and_days_left() -> None:
    report, _ = run_check([sample(NOW - 4 * DAY, 40 * GIB)], 60 * GIB)
    assert report.growth_per_day == 5 * GIB and report.span_days == 4
    free = 100 * GIB - 60 * GIB - 5 * GIB  # root's 5% is not for the services
    assert report.usage.free == free and report.days_left == free / (5 * GIB)  # 7 days
    assert report.warnings == ("fewer than 30 days left",)
    assert dc.describe(report).startswith("WARNING: /data (/data/kafka): 35.0 GiB free (36.8%), 60.0 GiB used, size 100.0 GiB")
    assert "+5.0 GiB/day over 4.0 days: 7.0 days left" in dc.describe(report)


def test_the_rate_is_taken_from_the_oldest_sample_of_the_window_else_the_newest_older_one() -> None:
    inside = [sample(NOW - 9 * DAY, 0), sample(NOW - 7 * DAY, 30 * GIB), sample(NOW - 1 * DAY, 37 * GIB)]
    report, _ = run_check(inside, 44 * GIB)
    assert report.growth_per_day == 2 * GIB and report.span_days == 7  # from the 7-day-old one, not the 9
    gap = [sample(NOW - 12 * DAY, 10 * GIB), sample(NOW - 10 * DAY, 20 * GIB)]  # the host was off a week
    report, _ = run_check(gap, 40 * GIB)
    assert report.growth_per_day == 2 * GIB and report.span_days == 10


def test_samples_less_than_12_hours_apart_give_no_rate() -> None:
    report, _ = run_check([sample(NOW - 0.4 * DAY, 10 * GIB)], 50 * GIB)
    assert report.growth_per_day is None and report.days_left is None and report.warnings == ()
    assert "growth not known yet" in dc.describe(report)


def test_one_sample_a_day_and_thirty_days_kept() -> None:
    old = [sample(NOW - d * DAY, 10 * GIB) for d in (40, 31, 29, 2)]
    earlier_today = sample(NOW - 60, 11 * GIB)
    _, kept = run_check([*old, earlier_today], 12 * GIB)
    assert [round((NOW - s.time) / DAY) for s in kept] == [29, 2, 0]
    assert kept[-1].used == 12 * GIB and kept[-1].time == NOW


def test_low_free_space_warns_even_when_not_growing() -> None:
    report, _ = run_check([sample(NOW - 7 * DAY, 90 * GIB)], 90 * GIB)
    assert report.days_left == math.inf
    assert report.warnings == ("less than 10% free",)


def test_the_metrics_are_valid_prometheus_text() -> None:
    report, _ = run_check([sample(NOW - 7 * DAY, 10 * GIB)], 10 * GIB)
    two = dc.Report("/data", ("/data/a", '/data/odd "name"\\'), report.usage, None, 0.0, None, 1, ())
    text = dc.prometheus_text([report, two], NOW)
    names = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert names == ["footprint_disk_size_bytes", "footprint_disk_used_bytes", "footprint_disk_free_bytes",
                     "footprint_disk_growth_bytes_per_day", "footprint_disk_days_left",
                     "footprint_disk_history_samples", "footprint_disk_warning",
                     "footprint_disk_check_timestamp_seconds"]
    assert 'footprint_disk_days_left{path="/data/kafka",mountpoint="/data"} +Inf' in text
    assert 'footprint_disk_days_left{path="/data/odd \\"name\\"\\\\",mountpoint="/data"} NaN' in text
    assert f"footprint_disk_check_timestamp_seconds {int(NOW)}" in text
