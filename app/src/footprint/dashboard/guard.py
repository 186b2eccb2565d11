"""Who may try to log in to the dashboard, and which sessions were ended.

``LoginThrottle``: every login attempt counts as failed until it succeeds, and it is counted when it
starts, so attempts sent in parallel are refused as surely as attempts sent one after another. Per
client address (the trusted-proxy rule of the collector): ``per_client`` attempts in ``window``
seconds, then the client waits ``base_lock`` seconds, doubling with every further lockout up to
``max_lock``. Overall: at most ``overall`` attempts in any ``window`` seconds from all addresses
together (a guesser with many addresses); past it every client waits until the oldest attempt
leaves the window. An IPv6 client counts by its /64 (one host can hold a whole /64). A success
clears the client.

``Revoked``: sessions ended by logout, until they would have expired anyway.

Both live in the dashboard process: one process per app host, so on several app hosts behind one
load balancer each host counts and revokes on its own (a revoked cookie still opens another host's
dashboard until it expires; give those hosts sticky sessions, or shorten dashboard_session_hours).
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import deque
from collections.abc import Callable


def client_key(address: str) -> str:
    """What the throttle counts by: the address, or its /64 for IPv6."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    return str(ipaddress.ip_network(f"{ip}/64", strict=False)) if ip.version == 6 else str(ip)


class LoginThrottle:
    def __init__(self, per_client: int = 5, overall: int = 100, window: float = 300.0, base_lock: float = 30.0,
                 max_lock: float = 900.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_client, self.overall, self.window = per_client, overall, window
        self.base_lock, self.max_lock, self.clock = base_lock, max_lock, clock
        self._tries: dict[str, deque[float]] = {}
        self._locks: dict[str, tuple[float, int]] = {}  # client -> (locked until, lockouts so far)
        self._all: deque[float] = deque()
        self._mutex = threading.Lock()

    def admit(self, client: str) -> float:
        """0: the attempt may go on (it counts as failed until ``succeeded``); else seconds to wait."""
        client = client_key(client)
        with self._mutex:
            now = self.clock()
            self._forget(now)
            until, lockouts = self._locks.get(client, (0.0, 0))
            if now < until:
                return until - now
            tries = self._tries.setdefault(client, deque())
            if len(tries) >= self.per_client:
                lock = float(min(self.base_lock * 2.0 ** lockouts, self.max_lock))
                self._locks[client] = (now + lock, lockouts + 1)
                tries.clear()
                return lock
            if len(self._all) >= self.overall:  # every login waits until the oldest attempt leaves the window
                return max(self._all[0] + self.window - now, 1.0)
            tries.append(now)
            self._all.append(now)
            return 0.0

    def succeeded(self, client: str) -> None:
        client = client_key(client)
        with self._mutex:
            self._tries.pop(client, None)
            self._locks.pop(client, None)

    def _forget(self, now: float) -> None:
        edge = now - self.window
        while self._all and self._all[0] < edge:
            self._all.popleft()
        for client in [c for c, t in self._tries.items() if not t or t[-1] < edge]:
            del self._tries[client]
        for tries in self._tries.values():
            while tries and tries[0] < edge:
                tries.popleft()
        for client in [c for c, (until, _) in self._locks.items() if until + self.max_lock < now]:
            del self._locks[client]  # long over: the next lockout starts small again


class Revoked:
    """Session ids ended by logout, each kept until the session would have expired."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._until: dict[str, float] = {}
        self._mutex = threading.Lock()

    def add(self, sid: str, seconds: float) -> None:
        with self._mutex:
            now = self.clock()
            self._until = {s: t for s, t in self._until.items() if t > now}
            self._until[sid] = now + seconds

    def __contains__(self, sid: object) -> bool:
        with self._mutex:
            return isinstance(sid, str) and self._until.get(sid, 0.0) > self.clock()
