"""Whether the consumer moves: the verdict behind ``/healthz`` and systemd's watchdog.

A consumer is stuck when it has work it does not do, whatever the reason (paused partitions that
were never resumed, a wedged thread, a store write that never returns, a lost assignment):

- its loop has not turned for ``loop_after`` seconds: longer than any call the loop makes may
  block (a synchronous offset commit waits up to the session timeout for a coordinator, plus
  Kafka's socket timeout), so a loop waiting on Kafka is not taken for a wedged one;
- one store write (or dead-letter send) has not returned for ``hang_after`` seconds: longer than
  the stores' own timeouts, so a slow write is waited for and a hung one is not;
- its assigned partitions hold messages past its group's committed offsets (lag) and for
  ``stuck_after`` seconds it has consumed nothing, committed nothing, and neither waited on a
  write nor retried one after an outage.

A store outage being retried is not stuck in that sense: the consumer knows what it waits for,
and a restart would not help (``/healthz`` still reports it as such, see the CLI). An idle
consumer (no lag) is never stuck. The loop feeds this object; any thread may read it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Progress:
    stuck_after: float
    loop_after: float = 0.0  # 0: stuck_after
    hang_after: float = 0.0  # 0: 3 x stuck_after
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)  # a test may pass its own
    last_turn: float = field(init=False)
    last_moved: float = field(init=False)
    last_waited: float = field(init=False, default=float("-inf"))  # the last verdict that saw a write waited on
    lag: int | None = field(init=False, default=None)  # None: not measured since the last movement
    lag_measured: float = field(init=False, default=0.0)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.loop_after = self.loop_after or self.stuck_after
        self.hang_after = self.hang_after or 3 * self.stuck_after
        self.last_turn = self.last_moved = self.clock()

    def turned(self) -> None:
        """The loop went round once."""
        self.last_turn = self.clock()

    def moved(self) -> None:
        """Messages were consumed or a batch was committed: lag measured before is stale."""
        with self._lock:
            self.last_moved = self.clock()
            self.lag = None

    def idle_seconds(self) -> float:
        return self.clock() - self.last_moved

    def lag_due(self, every: float) -> bool:
        """Time to measure the lag: nothing moved for ``every`` seconds and none measured since."""
        now = self.clock()
        return now - self.last_moved >= every and now - self.lag_measured >= every

    def measured(self, lag: int | None) -> None:
        """The lag of the assigned partitions (None: Kafka did not answer, nothing is known)."""
        with self._lock:
            self.lag = lag
            self.lag_measured = self.clock()

    def verdict(self, retrying: float = 0.0, writing: float = 0.0) -> str | None:
        """None while the consumer moves (or has nothing to do, or waits on a store it names), else
        why it is stuck. ``retrying``: seconds a write has been retried after an outage;
        ``writing``: seconds the store write (or dead-letter send) running now has been waiting."""
        now = self.clock()
        turn = now - self.last_turn
        if turn >= self.loop_after:
            return f"the consume loop has not turned for {turn:.0f} s"
        if writing >= self.hang_after:
            return f"a store write has not returned for {writing:.0f} s"
        with self._lock:
            if retrying > 0 or writing > 0:  # waiting on a store: the stuck_after window starts again
                self.last_waited = now
            lag, idle = self.lag, now - self.last_moved
            unwaited = now - max(self.last_moved, self.last_waited)
        if retrying > 0 or writing > 0 or not lag or unwaited < self.stuck_after:
            return None
        return (f"{lag} messages wait in its partitions, but nothing was consumed or committed for "
                f"{idle:.0f} s")
