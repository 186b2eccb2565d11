"""systemd's watchdog for the consumer: ``WATCHDOG=1`` only while it makes progress.

The unit sets ``WatchdogSec=``; systemd then passes ``NOTIFY_SOCKET`` and ``WATCHDOG_USEC`` and
restarts the process when no ping arrives in time (``Restart=on-failure`` covers a watchdog
timeout). Outside systemd (tests, a shell) both are absent and ``ping`` does nothing. The unit's
``ExecStopPost=`` appends a line to ``watchdog-restarts`` in the consumer's state directory each
time systemd stopped it for the watchdog; ``restarts_recorded`` counts them for the metric.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

log = logging.getLogger("footprint.watchdog")

RESTARTS_FILE = "watchdog-restarts"


class Watchdog:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.address = ("\0" + address[1:]) if address.startswith("@") else address
        self.interval = int(usec) / 1e6 / 3 if usec.isdigit() and mine and address else 0.0
        self._last = 0.0

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    def ping(self) -> None:
        """Tell systemd the consumer is alive and moving (at most three times per watchdog period)."""
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < self.interval:
            return
        self._last = now
        self.notify("WATCHDOG=1")

    def keep_fed(self, moving: Callable[[], bool], stop: threading.Event) -> threading.Thread | None:
        """Ping from a thread of its own, three times per period, while ``moving()`` says so (the
        consume loop may block in one call for longer than a period without being stuck)."""
        if not self.enabled:
            return None

        def feed() -> None:
            while not stop.wait(self.interval):
                try:
                    alive = moving()
                except Exception:  # a verdict that fails is no proof of progress
                    log.exception("progress verdict failed")
                    alive = False
                if alive:
                    self.notify("WATCHDOG=1")

        thread = threading.Thread(target=feed, name="watchdog", daemon=True)
        thread.start()
        return thread

    def notify(self, message: str) -> None:
        if not self.address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.setblocking(False)  # a busy listener must never block the consume loop
                s.connect(self.address)
                s.send(message.encode())
        except OSError as exc:  # never fatal: at worst systemd misses a ping and restarts the consumer
            log.warning("cannot notify systemd", extra={"notify": message, "error": str(exc)})


def restarts_recorded(state_dir: str) -> int:
    """How many times systemd stopped the consumer for a missed watchdog ping (0: none, or no state dir)."""
    if not state_dir:
        return 0
    try:
        return sum(1 for line in (Path(state_dir) / RESTARTS_FILE).read_text().splitlines() if line.strip())
    except OSError:
        return 0
