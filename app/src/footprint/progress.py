"""Whether the consumer moves: the verdict behind ``/healthz`` and systemd's watchdog.

A consumer is stuck when it has work it does not do, whatever the reason (paused partitions that
were never resumed, a wedged thread, a store write that hangs without an error):

- its loop has not turned for ``stuck_after`` seconds (a wedged loop), or
- its assigned partitions hold messages past its group's committed offsets (lag) and it has
  consumed nothing and committed nothing for ``stuck_after`` seconds.

A store or dead-letter outage that is being retried is not stuck in that sense: the consumer knows
what it waits for, and a restart would not help (``/healthz`` still reports it, see the CLI).
An idle consumer (no lag) is never stuck. The loop feeds this object; any thread may read it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Progress:
    stuck_after: float
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)  # a test may pass its own
    last_turn: float = field(init=False)
    last_moved: float = field(init=False)
    lag: int | None = field(init=False, default=None)  # None: not measured since the last movement
    lag_measured: float = field(init=False, default=0.0)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.last_turn = self.last_moved = self._now()

    def _now(self) -> float:
        return self.clock()

    def turned(self) -> None:
        """The loop went round once."""
        self.last_turn = self._now()

    def moved(self) -> None:
        """Messages were consumed or a batch was committed: lag measured before is stale."""
        with self._lock:
            self.last_moved = self._now()
            self.lag = None

    def idle_seconds(self) -> float:
        return self._now() - self.last_moved

    def lag_due(self, every: float) -> bool:
        """Time to measure the lag: nothing moved for ``every`` seconds and none measured since."""
        now = self._now()
        return now - self.last_moved >= every and now - self.lag_measured >= every

    def measured(self, lag: int | None) -> None:
        """The lag of the assigned partitions (None: Kafka did not answer, nothing is known)."""
        with self._lock:
            self.lag = lag
            self.lag_measured = self._now()

    def verdict(self, retrying: float = 0.0) -> str | None:
        """None while the consumer moves (or has nothing to do), else why it is stuck."""
        now = self._now()
        turn = now - self.last_turn
        if turn >= self.stuck_after:
            return f"the consume loop has not turned for {turn:.0f} s"
        with self._lock:
            lag, idle = self.lag, now - self.last_moved
        if retrying > 0 or not lag or idle < self.stuck_after:
            return None
        return (f"{lag} messages wait in its partitions, but nothing was consumed or committed for "
                f"{idle:.0f} s")
