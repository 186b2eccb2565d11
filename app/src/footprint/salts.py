"""The daily salt of the visitor ids, shared by every collector process on every app host.

One random 32-byte salt per UTC day lives in PostgreSQL (``visitor_salts``, migration 0005, an
UNLOGGED table: never in the WAL, a replica or an archived segment): the first collector process to
ask for a day creates it (``INSERT ... ON CONFLICT DO NOTHING``), every other one reads the same
row, so a visitor has one id per day however many workers and hosts serve it. The day is the
database's (``current_date`` in UTC), so collectors with skewed clocks agree. Each refresh also
creates tomorrow's salt ahead (all processes switch at midnight without asking), and once a day is
over its salt is destroyed: the table is emptied with ``TRUNCATE`` (its file removed, no dead row
left for a vacuum) and today's and tomorrow's rows written back. A past day's ids can then not be
recomputed, and so not reversed by trying addresses; keep ``visitor_salts`` out of logical dumps
(``pg_dump --exclude-table-data=visitor_salts``; physical base backups skip unlogged data). Only the
writer role (the collector and the consumer) and the owner may read the table; the reader role
(dashboard, read API) may not.

The request path never waits for PostgreSQL: ``salt_for`` answers from memory, filled by a
background refresh every ``refresh_seconds``. Until the first refresh succeeds (PostgreSQL down
at start), a process-local random salt stands in for the day and a warning says that visitors
may count more than once meanwhile.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from datetime import date, timedelta

from footprint.stores import pg_connect

log = logging.getLogger("footprint.salts")


class SharedSalts:
    def __init__(self, dsn: str, refresh_seconds: float = 10.0, today: Callable[[], date] | None = None) -> None:
        self.dsn = dsn
        self.refresh_seconds = refresh_seconds
        self.today = today
        self._shared: dict[date, bytes] = {}
        self._local: dict[date, bytes] = {}
        self._warned: date | None = None
        self._lock = threading.Lock()

    def salt_for(self, day: date) -> bytes:
        """The shared salt of ``day`` if known, else this process's own for the day (never blocks)."""
        with self._lock:
            if any(d < day for d in self._shared):  # a past day's salt is not kept in memory either
                self._shared = {d: s for d, s in self._shared.items() if d >= day}
            salt = self._shared.get(day)
            if salt is not None:
                return salt
            if day not in self._local:
                self._local = {day: os.urandom(32)}  # any other day's local salt is forgotten
            if self._warned != day:
                self._warned = day
                log.warning("the shared visitor salt is not known yet: this process uses its own for now, so a "
                            "visitor may count once per collector process until PostgreSQL answers",
                            extra={"day": day.isoformat()})
            return self._local[day]

    def refresh(self) -> None:
        """Today's and tomorrow's salts made if missing, a past day's destroyed, both read."""
        with pg_connect(self.dsn) as conn:
            row = None if self.today is not None else conn.execute("SELECT current_date").fetchone()
            today: date = self.today() if self.today is not None else row[0]  # type: ignore[index]
            days = [today, today + timedelta(days=1)]
            if conn.execute("SELECT 1 FROM visitor_salts WHERE day < %s LIMIT 1", (today,)).fetchone():
                conn.commit()
                with conn.transaction():  # the strongest lock first: two processes queue, never deadlock
                    conn.execute("LOCK TABLE visitor_salts IN ACCESS EXCLUSIVE MODE")
                    keep = conn.execute("SELECT day, salt FROM visitor_salts WHERE day = ANY(%s)", (days,)).fetchall()
                    conn.execute("TRUNCATE visitor_salts")
                    for day, salt in keep:
                        conn.execute("INSERT INTO visitor_salts (day, salt) VALUES (%s, %s)", (day, salt))
            conn.commit()
            with conn.transaction():
                conn.execute("INSERT INTO visitor_salts (day, salt) VALUES (%s, %s), (%s, %s) "
                             "ON CONFLICT (day) DO NOTHING", (days[0], os.urandom(32), days[1], os.urandom(32)))
            rows = conn.execute("SELECT day, salt FROM visitor_salts WHERE day = ANY(%s)", (days,)).fetchall()
        with self._lock:
            self._shared = {row[0]: bytes(row[1]) for row in rows}
            self._local = {d: s for d, s in self._local.items() if d not in self._shared}

    def keep_fresh(self, stop: threading.Event) -> threading.Thread:
        """Refresh now and every ``refresh_seconds`` in a daemon thread until ``stop`` is set."""

        def loop() -> None:
            failing = False
            while True:
                try:
                    self.refresh()
                    if failing:
                        log.info("shared visitor salt available again")
                    failing = False
                except Exception as exc:  # PostgreSQL down or refusing: logged, retried, never fatal
                    if not failing:
                        log.warning("cannot read the shared visitor salt from PostgreSQL; retrying",
                                    extra={"error": str(exc)[:300], "retry_in": self.refresh_seconds})
                    failing = True
                if stop.wait(self.refresh_seconds):
                    return

        thread = threading.Thread(target=loop, name="visitor-salts", daemon=True)
        thread.start()
        return thread
