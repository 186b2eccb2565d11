#!/usr/bin/python3
"""footprint-disk-check: free space, growth and days left of the filesystems holding the data.

Run daily by footprint-disk-check.timer (roles/base). For each given path that exists it finds the
filesystem the path is on and, once per filesystem:
  - records today's used bytes in a small history file (one sample per UTC day, --keep-days kept);
  - computes the growth rate in bytes per day: from the oldest sample of the last --window-days
    days (the most recent older one when there is none) to now, once that is at least 12 h back;
  - computes the days left until the filesystem is full at that rate (+Inf when it does not grow);
  - logs one line (to the journal under systemd), a WARNING line when fewer than --warn-days are
    left or less than --warn-free-percent of the filesystem is free;
  - writes the figures as Prometheus text for node-exporter's textfile collector (atomically).

Only the Python standard library; runs on Python 3.10 and newer (Debian 12/13, Ubuntu 22.04/24.04).
Exit status: 0 done (warnings included), 1 a file could not be written, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROG = "footprint-disk-check"
DEFAULT_PATHS = ("/var/lib/kafka", "/var/lib/postgresql", "/var/lib/clickhouse", "/var/lib")
DEFAULT_STATE = "/var/lib/footprint-disk/history.json"
# Debian's prometheus-node-exporter reads *.prom files from here (its built-in textfile directory).
DEFAULT_TEXTFILE = "/var/lib/prometheus/node-exporter/footprint_disk.prom"
STATE_VERSION = 1
DAY = 86400.0
# A rate needs two samples at least this far apart (a manual run an hour after the timer's says little).
MIN_SPAN_DAYS = 0.5
# The timer fires at a randomized time each day: a sample up to this much older still counts as in the window.
WINDOW_SLACK_DAYS = 0.25

StatVfs = Callable[[str], Any]


@dataclass(frozen=True)
class Sample:
    """One day's reading of a filesystem."""

    day: str  # UTC date, YYYY-MM-DD
    time: float  # seconds since the epoch
    used: int  # bytes in use (all users, root's reserve included)
    size: int  # bytes in the filesystem

    def to_json(self) -> dict[str, Any]:
        return {"day": self.day, "time": self.time, "used": self.used, "size": self.size}

    @classmethod
    def from_json(cls, data: Any) -> Sample:
        if not isinstance(data, dict):
            raise ValueError(f"a sample is not an object: {data!r}")
        try:
            return cls(str(data["day"]), float(data["time"]), int(data["used"]), int(data["size"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"a sample lacks day, time, used or size: {data!r}") from exc


@dataclass(frozen=True)
class Usage:
    """A filesystem's figures now, from statvfs."""

    size: int
    used: int
    free: int  # available to ordinary users (what runs out first; root's reserve excluded)

    @property
    def free_percent(self) -> float:
        """The free share as df counts it: of the space ordinary users have (used + free)."""
        usable = self.used + self.free
        return 100.0 * self.free / usable if usable > 0 else 0.0


@dataclass(frozen=True)
class Report:
    """What the check found for one filesystem."""

    mountpoint: str
    paths: tuple[str, ...]
    usage: Usage
    growth_per_day: float | None  # None: not known yet
    span_days: float  # the days the rate was measured over (0 when unknown)
    days_left: float | None  # None: not known yet; math.inf: not growing
    samples: int
    warnings: tuple[str, ...]

    @property
    def free_percent(self) -> float:
        return self.usage.free_percent


def usage_of(path: str, statvfs: StatVfs = os.statvfs) -> Usage:
    st = statvfs(path)
    return Usage(
        size=st.f_blocks * st.f_frsize,
        used=(st.f_blocks - st.f_bfree) * st.f_frsize,
        free=st.f_bavail * st.f_frsize,
    )


def mountpoint_of(path: str) -> str:
    """The mount point of the filesystem holding ``path`` (symlinks resolved)."""
    current = os.path.realpath(path)
    while not os.path.ismount(current):
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return current


def group_by_filesystem(paths: Sequence[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Existing paths grouped by mount point (in the given order), and the paths that do not exist."""
    groups: dict[str, list[str]] = {}
    missing: list[str] = []
    for path in paths:
        if not os.path.isdir(path):
            missing.append(path)
            continue
        members = groups.setdefault(mountpoint_of(path), [])
        if path not in members:
            members.append(path)
    return groups, missing


def load_history(path: Path) -> tuple[dict[str, list[Sample]], str | None]:
    """The samples per mount point, and a problem to report when the file had to be set aside."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}, None
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise ValueError(f"not a version {STATE_VERSION} history")
        filesystems = data.get("filesystems")
        if not isinstance(filesystems, dict):
            raise ValueError("no filesystems object")
        history = {str(mp): sorted((Sample.from_json(s) for s in samples), key=lambda s: s.time)
                   for mp, samples in filesystems.items() if isinstance(samples, list)}
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        bad = path.with_name(path.name + ".bad")
        os.replace(path, bad)
        return {}, f"history {path} unreadable ({exc}); set aside as {bad}, starting a new one"
    return history, None


def record(samples: list[Sample], today: Sample, now: float, keep_days: float) -> list[Sample]:
    """``samples`` with today's replacing any earlier one of the same day, those older than ``keep_days`` dropped."""
    kept = [s for s in samples if s.day != today.day and s.time < today.time and s.time >= now - keep_days * DAY]
    return [*kept, today]


def growth(samples: Sequence[Sample], window_days: float) -> tuple[float | None, float]:
    """Bytes per day from a baseline sample to the newest one, and the days between them.

    The baseline is the oldest sample of the last ``window_days`` (or, when that window holds none,
    the newest older one), at least MIN_SPAN_DAYS before the newest sample. None when there is none.
    """
    if not samples:
        return None, 0.0
    newest = max(samples, key=lambda s: s.time)
    earlier = [s for s in samples if newest.time - s.time >= MIN_SPAN_DAYS * DAY]
    if not earlier:
        return None, 0.0
    in_window = [s for s in earlier if newest.time - s.time <= (window_days + WINDOW_SLACK_DAYS) * DAY]
    base = min(in_window, key=lambda s: s.time) if in_window else max(earlier, key=lambda s: s.time)
    span = (newest.time - base.time) / DAY
    return (newest.used - base.used) / span, span


def days_left(free: int, rate: float | None) -> float | None:
    if rate is None:
        return None
    if rate <= 0:
        return math.inf
    return free / rate


def check(groups: dict[str, list[str]], history: dict[str, list[Sample]], now: float, *,
          window_days: float, keep_days: float, warn_days: float, warn_free_percent: float,
          statvfs: StatVfs = os.statvfs) -> list[Report]:
    """Record a sample per filesystem in ``history`` (in place) and report on each."""
    day = datetime.datetime.fromtimestamp(now, tz=datetime.timezone.utc).date().isoformat()
    reports = []
    for mountpoint, paths in groups.items():
        usage = usage_of(paths[0], statvfs)
        samples = record(history.get(mountpoint, []), Sample(day, now, usage.used, usage.size), now, keep_days)
        history[mountpoint] = samples
        rate, span = growth(samples, window_days)
        left = days_left(usage.free, rate)
        warnings = []
        if left is not None and left < warn_days:
            warnings.append(f"fewer than {warn_days:g} days left")
        if usage.free_percent < warn_free_percent:
            warnings.append(f"less than {warn_free_percent:g}% free")
        reports.append(Report(mountpoint, tuple(paths), usage, rate, span, left, len(samples), tuple(warnings)))
    # a filesystem no path is on any more: its samples age out like the others
    for mountpoint in list(history):
        if mountpoint not in groups:
            history[mountpoint] = [s for s in history[mountpoint] if s.time >= now - keep_days * DAY]
            if not history[mountpoint]:
                del history[mountpoint]
    return reports


def human(n: float) -> str:
    """Bytes as a short binary size: 12.3 GiB."""
    value, unit = float(abs(n)), "B"
    for bigger in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    text = f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
    return ("-" if n < 0 else "") + text


def describe(r: Report) -> str:
    """The one log line of a filesystem."""
    where = f"{r.mountpoint} ({', '.join(r.paths)})"
    line = (f"{where}: {human(r.usage.free)} free ({r.free_percent:.1f}%), {human(r.usage.used)} used, "
            f"size {human(r.usage.size)}")
    if r.growth_per_day is None:
        line += ", growth not known yet (it needs a sample at least 12 h older than this one)"
    else:
        sign = "+" if r.growth_per_day >= 0 else ""
        line += f", {sign}{human(r.growth_per_day)}/day over {r.span_days:.1f} days"
        if r.days_left is None or math.isinf(r.days_left):
            line += ": not filling up"
        else:
            line += f": {r.days_left:.1f} days left" if r.days_left < 10 else f": {r.days_left:.0f} days left"
    if r.warnings:
        return f"WARNING: {line} ({'; '.join(r.warnings)})"
    return line


def prom_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prom_number(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


METRICS = (
    ("footprint_disk_size_bytes", "Size of the filesystem holding the path, bytes.",
     lambda r: r.usage.size),
    ("footprint_disk_used_bytes", "Bytes in use on the filesystem holding the path.",
     lambda r: r.usage.used),
    ("footprint_disk_free_bytes", "Bytes available to ordinary users on the filesystem holding the path.",
     lambda r: r.usage.free),
    ("footprint_disk_growth_bytes_per_day",
     "Growth of the used bytes per day over the last days' samples; NaN while not known yet.",
     lambda r: r.growth_per_day),
    ("footprint_disk_days_left",
     "Days until the filesystem is full at the growth rate; +Inf when not growing, NaN while not known yet.",
     lambda r: r.days_left),
    ("footprint_disk_history_samples", "Daily samples of the filesystem in the history.",
     lambda r: r.samples),
    ("footprint_disk_warning", "1 when the check warns about the filesystem (few days left or little free), else 0.",
     lambda r: 1 if r.warnings else 0),
)


def prometheus_text(reports: Sequence[Report], now: float) -> str:
    lines = []
    for name, help_text, value in METRICS:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        for r in reports:
            for path in r.paths:
                labels = f'path="{prom_escape(path)}",mountpoint="{prom_escape(r.mountpoint)}"'
                lines.append(f"{name}{{{labels}}} {prom_number(value(r))}")
    lines += [
        "# HELP footprint_disk_check_timestamp_seconds When the disk check last ran, seconds since the epoch.",
        "# TYPE footprint_disk_check_timestamp_seconds gauge",
        f"footprint_disk_check_timestamp_seconds {prom_number(round(now, 3))}",
    ]
    return "\n".join(lines) + "\n"


def write_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # the temporary name does not end in .prom: node-exporter never reads a half-written file
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_history(path: Path, history: dict[str, list[Sample]]) -> None:
    data = {"version": STATE_VERSION,
            "filesystems": {mp: [s.to_json() for s in samples] for mp, samples in sorted(history.items())}}
    write_atomically(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


class Log:
    """Lines on stdout (errors on stderr); under systemd with the journal's priority prefix."""

    def __init__(self) -> None:
        self.journal = bool(os.environ.get("JOURNAL_STREAM"))

    def _emit(self, priority: int, text: str, stream: Any) -> None:
        print(f"<{priority}>{text}" if self.journal else text, file=stream, flush=True)

    def info(self, text: str) -> None:
        self._emit(6, text, sys.stdout)

    def warning(self, text: str) -> None:
        self._emit(4, text, sys.stdout)

    def error(self, text: str) -> None:
        self._emit(3, f"{PROG}: error: {text}", sys.stderr)


def positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be a percentage 0-100, got {text!r}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog=PROG,
        description="Record the used bytes of the filesystems holding the given paths, and report their free "
                    "space, growth per day and days left (log lines; Prometheus text for node-exporter).",
        epilog="Several paths on one filesystem give one line (and one history); paths that do not exist are "
               "skipped. Days left are +Inf when the filesystem is not growing, NaN in the metrics (and 'not "
               "known yet' in the log) until two samples are at least 12 h apart.",
    )
    ap.add_argument("--path", action="append", dest="paths", metavar="DIR",
                    help=f"a directory whose filesystem to check (repeatable; default: {' '.join(DEFAULT_PATHS)})")
    ap.add_argument("--state", type=Path, default=Path(DEFAULT_STATE), metavar="FILE",
                    help=f"the history file (default: {DEFAULT_STATE})")
    ap.add_argument("--textfile", default=DEFAULT_TEXTFILE, metavar="FILE",
                    help=f"Prometheus text file to write, '' for none (default: {DEFAULT_TEXTFILE})")
    ap.add_argument("--warn-days", type=positive, default=30.0, metavar="N",
                    help="warn when fewer days than this are left at the current rate (default: 30)")
    ap.add_argument("--warn-free-percent", type=percent, default=10.0, metavar="P",
                    help="warn when less than this share of the filesystem is free, 0 for never (default: 10)")
    ap.add_argument("--window-days", type=positive, default=7.0, metavar="N",
                    help="measure the growth over the samples of the last N days (default: 7)")
    ap.add_argument("--keep-days", type=positive, default=30.0, metavar="N",
                    help="keep the daily samples of the last N days (default: 30)")
    ap.add_argument("--now", type=float, default=None, metavar="EPOCH",
                    help="take this time (seconds since the epoch) as now; for tests")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None, statvfs: StatVfs = os.statvfs) -> int:
    args = parse_args(argv)
    log = Log()
    now = time.time() if args.now is None else args.now
    groups, missing = group_by_filesystem(args.paths or list(DEFAULT_PATHS))
    for path in missing:
        log.info(f"skipped {path}: no such directory")
    try:
        history, problem = load_history(args.state)
    except OSError as exc:
        log.error(f"cannot read or set aside the history {args.state}: {exc}")
        return 1
    if problem:
        log.warning(f"WARNING: {problem}")
    reports = check(groups, history, now, window_days=args.window_days, keep_days=args.keep_days,
                    warn_days=args.warn_days, warn_free_percent=args.warn_free_percent, statvfs=statvfs)
    if not reports:
        log.info("no given path exists: nothing to check")
    for r in reports:
        (log.warning if r.warnings else log.info)(describe(r))
    status = 0
    try:
        save_history(args.state, history)
    except OSError as exc:
        log.error(f"cannot write the history {args.state}: {exc}")
        status = 1
    if args.textfile:
        try:
            write_atomically(Path(args.textfile), prometheus_text(reports, now))
        except OSError as exc:
            log.error(f"cannot write the metrics file {args.textfile}: {exc}")
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
