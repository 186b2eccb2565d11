"""Where a benchmark's CPU goes: CPU-seconds per process group, sampled from /proc during a run.

``with cpu_shares() as shares: ...`` samples every process's user+system ticks a few times a second
(a process that exits between two samples loses at most its last interval), groups them by command
line (of this process's descendants and the daemons it names: PostgreSQL, the ClickHouse stand-in, the Kafka broker, Footprint's
consumer; this process itself and the rest of the machine apart) and, after the block,
``shares.table(wall)`` prints each group's CPU-seconds and its share of the machine's cores over the
wall time. It names the part of the machine that limits a throughput
figure: when the groups together use ~all the cores, the machine is the ceiling, and the groups say
who takes it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

TICK = os.sysconf("SC_CLK_TCK")
# (group, a part of the command line that marks it), first match wins
GROUPS = (("Footprint consumer", "BatchConsumer"), ("Footprint collector", "footprint.cli serve"),
          ("Footprint relay", "footprint.track.relay"), ("site app (uvicorn)", "siteapp:"),
          ("load generator (wrk)", "wrk "), ("Kafka broker", "kafka.Kafka"),
          ("ClickHouse stand-in", "standin"), ("PostgreSQL", "postgres"), ("this benchmark and its other children", ""))
OTHER = "everything else on the machine"


def postmaster(port: int) -> int:
    """The pid of the test PostgreSQL (``LocalPostgres``, under /tmp/fp-pg-*) listening on ``port``: pg_ctl
    starts it as a daemon, so it does not descend from the benchmark; 0 if none is found."""
    import glob

    for path in glob.glob("/tmp/fp-pg-*/data/postmaster.pid"):
        try:
            with open(path) as f:
                lines = f.read().splitlines()
            alive = len(lines) > 3 and lines[3].strip() == str(port) and os.path.exists(f"/proc/{int(lines[0])}")
        except (OSError, ValueError):  # removed or being written meanwhile
            continue
        if alive:
            return int(lines[0])
    print(f"_cpu: no PostgreSQL found listening on port {port}: its CPU counts as the rest of the machine's")
    return 0


def run_queue(pid: int) -> tuple[int, int]:
    """How long the thread ``pid`` has waited on a run queue for a core (ns; runnable, not running) and how many
    time slices it has run, so far (/proc/PID/schedstat): a latency the CPU averages cannot show, the moments
    when every core is taken."""
    with open(f"/proc/{pid}/schedstat") as f:
        _running, waiting, slices = (int(x) for x in f.read().split())
    return waiting, slices


def settle(idle: float = 0.15, timeout: float = 60.0) -> None:
    """Wait until this benchmark's processes are idle (under ``idle`` of the machine's cores for half a second; the
    rest of the machine is not waited for): so that one run's backlog (a relay or a broker still taking the events
    of the run before) does not fall on the next run."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        t0 = time.perf_counter()
        with cpu_shares() as shares:
            time.sleep(0.5)
        ours = sum(cpu for group, cpu in shares.seconds().items() if group != OTHER)
        if ours / (time.perf_counter() - t0) < idle * (os.cpu_count() or 1):
            return
    print(f"  (this benchmark's processes were still busy after {timeout:.0f} s; measuring anyway)", flush=True)


def cpu_seconds(pid: int) -> float:
    """CPU-seconds the process ``pid`` itself has used so far (its threads, not its children)."""
    with open(f"/proc/{pid}/stat") as f:
        return _parent_and_ticks(f.read())[1] / TICK


def _parent_and_ticks(stat: str) -> tuple[int, int]:
    """A process's parent and its user + system ticks so far, from its /proc/PID/stat (fields 4, 14 and 15)."""
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[11]) + int(fields[12])


def _ticks(roots: frozenset[int]) -> dict[int, tuple[str, int]]:
    """pid -> (command line, user+system ticks so far) of every process readable now; the command line
    of a process that does not descend from this one is "" (it belongs to the rest of the machine, even
    if it is another PostgreSQL)."""
    seen: dict[int, tuple[str, int]] = {}
    parent: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        parent[int(name)], ticks = _parent_and_ticks(stat)
        seen[int(name)] = (cmd, ticks)
    roots = roots | {os.getpid()}
    return {pid: (cmd if _descends(pid, parent, roots) else "", ticks) for pid, (cmd, ticks) in seen.items()}


def _descends(pid: int, parent: dict[int, int], roots: frozenset[int]) -> bool:
    while pid > 1:
        if pid in roots:
            return True
        pid = parent.get(pid, 0)
    return False


def _group(cmd: str) -> str:
    """The group of a descendant's command line ("" for the rest of the machine)."""
    return next((group for group, mark in GROUPS if mark in cmd), OTHER) if cmd else OTHER


@dataclass
class Shares:
    first: dict[int, tuple[str, int]] = field(default_factory=dict)
    last: dict[int, tuple[str, int]] = field(default_factory=dict)

    def seconds(self) -> dict[str, float]:
        """CPU-seconds per group between the first and the last sample."""
        out = {group: 0.0 for group, _ in GROUPS} | {OTHER: 0.0}
        for pid, (cmd, ticks) in self.last.items():
            before = self.first.get(pid, (cmd, 0))[1]
            out[_group(cmd)] += (ticks - before) / TICK
        return out

    def table(self, wall: float) -> str:
        cores = os.cpu_count() or 1
        rows = sorted(self.seconds().items(), key=lambda kv: -kv[1])
        lines = [f"CPU over {wall:.1f} s on {cores} cores ({wall * cores:.1f} CPU-s available):"]
        lines += [f"  {group:<38} {cpu:7.1f} CPU-s  {100 * cpu / (wall * cores):5.1f} % of the machine"
                  for group, cpu in rows]
        total = sum(cpu for _, cpu in rows)
        lines.append(f"  {'all':<38} {total:7.1f} CPU-s  {100 * total / (wall * cores):5.1f} % of the machine")
        return "\n".join(lines)


@contextmanager
def cpu_shares(roots: tuple[int, ...] = (), interval: float = 0.25) -> Iterator[Shares]:
    """``roots``: daemons (and their children) to count as the benchmark's own, e.g. ``postmaster(port)``."""
    keep = frozenset(roots)
    shares = Shares(first=_ticks(keep))
    shares.last = dict(shares.first)
    done = threading.Event()

    def sample() -> None:
        while not done.wait(interval):
            shares.last.update(_ticks(keep))  # exited processes keep their last sample

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield shares
    finally:
        done.set()
        thread.join()
        shares.last.update(_ticks(keep))


if __name__ == "__main__":  # a self-check: a busy loop in this process shows up as "this benchmark"
    with cpu_shares() as s:
        t = time.perf_counter()
        while time.perf_counter() - t < 1.0:
            pass
    print(s.table(time.perf_counter() - t))
