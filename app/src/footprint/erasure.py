"""Erasure of a user's events (``DELETE /v1/users/{userId}``) from both stores, as a job.

Who may delete: the owner of each store (PostgreSQL ``footprint_owner``, ClickHouse
``footprint_owner``). The writer and the reader have no DELETE (nor ALTER DELETE) at all, so only
this code path, which connects as the owner, can remove events.

A request is a row in PostgreSQL's ``erasure_requests`` (migration 0003). The job then deletes:

- PostgreSQL: the user's rows of ``events``;
- ClickHouse: their ids from ``event_ids`` (the consumer's "already stored" index, so a replay of
  such an event from Kafka is not mistaken for a stored one), their rows of ``events``, and the
  rollups are rebuilt for the hours the user had events in (the hourly ``link_hourly`` and
  ``stats_hourly``; ``breakdowns_daily``, ``links_daily`` and ``visitors_daily`` for those hours' days): their
  visitor sets, sketches and sums cannot be subtracted, rebuilding those hours from ``events`` is exact (see
  ``_rebuild_rollups`` for an insert running meanwhile); the stored visits of those days stop standing until
  ``footprint close-visits`` makes them again (``_reopen_visits``).

Events still in Kafka: the request is kept until ``keep_until`` (``erasure_keep_seconds``, set to the
topic's retention), and the consumer drops every event of a user with a kept request before writing
(``ErasedUsers``). An event the consumer had already filtered before the request arrived is removed
by the job's second pass, which runs after the consumer's refresh interval plus a batch.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from footprint.batch import Docs
from footprint.closedvisits import DAYS
from footprint.contract import user_id_of
from footprint.settings import Settings
from footprint.stores import ch_client, ch_shard_clients, pg_connect

log = logging.getLogger("footprint.erasure")

_MUTATION = {"mutations_sync": 2}


class Eraser:
    """Records erasure requests and runs them in background threads (one per job)."""

    def __init__(self, settings: Settings, second_pass_after: float | None = None) -> None:
        self.settings = settings
        self.second_pass_after = (settings.erasure_refresh_seconds * 2 + settings.batch_max_seconds
                                  if second_pass_after is None else second_pass_after)
        self._threads: list[threading.Thread] = []

    def _owner(self) -> Any:
        return pg_connect(self.settings.pg_owner_dsn.get_secret_value(), "owner")

    def request(self, user_id: str) -> str:
        """Record the request (kept until the topic's retention passed it) and start the job."""
        job = str(uuid.uuid4())
        keep_until = datetime.now(UTC) + timedelta(seconds=self.settings.erasure_keep_seconds)
        with self._owner() as conn:
            conn.execute("INSERT INTO erasure_requests (job_id, user_id, keep_until) VALUES (%s, %s, %s)",
                         (job, user_id, keep_until))
        self._start(job, user_id)
        return job

    def resume(self) -> int:
        """Start the jobs an earlier process left unfinished (after a restart)."""
        with self._owner() as conn:
            rows = conn.execute(
                "SELECT job_id::text, user_id FROM erasure_requests WHERE status IN ('pending', 'running')").fetchall()
        for job, user_id in rows:
            self._start(job, user_id)
        return len(rows)

    def status(self, job: str) -> dict[str, Any] | None:
        with pg_connect(self.settings.pg_reader_dsn.get_secret_value(), "reader") as conn:
            row = conn.execute(
                "SELECT job_id::text, user_id, status, requested_at, finished_at, keep_until, pg_deleted, ch_deleted,"
                " error FROM erasure_requests WHERE job_id = %s", (job,)).fetchone()
        if row is None:
            return None
        names = ("jobId", "userId", "status", "requestedAt", "finishedAt", "keptUntil", "postgresDeleted",
                 "clickhouseDeleted", "error")
        return {n: (v.isoformat() if isinstance(v, datetime) else v) for n, v in zip(names, row, strict=True)}

    def wait(self, timeout: float) -> None:
        """Wait for the started jobs (tests, shutdown)."""
        end = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(end - time.monotonic(), 0))

    def _start(self, job: str, user_id: str) -> None:
        t = threading.Thread(target=self._run, args=(job, user_id), name=f"erasure-{job[:8]}", daemon=True)
        self._threads = [x for x in self._threads if x.is_alive()] + [t]
        t.start()

    def _run(self, job: str, user_id: str) -> None:
        try:
            self._set(job, "status = 'running'")
            pg, ch, hours = self.erase(user_id)
            time.sleep(self.second_pass_after)  # events a consumer was writing while the request arrived
            pg2, ch2, _ = self.erase(user_id, rebuild=hours)  # (the same hours again: see _rebuild_rollups)
            self._set(job, "status = 'done', finished_at = now(), pg_deleted = %s, ch_deleted = %s, error = ''",
                      (pg + pg2, ch + ch2))
            log.info("erasure done", extra={"job": job, "postgres_deleted": pg + pg2, "clickhouse_deleted": ch + ch2})
        except Exception as exc:
            log.exception("erasure failed", extra={"job": job})
            self._set(job, "status = 'failed', finished_at = now(), error = %s", (str(exc)[:500],))

    def _set(self, job: str, assignments: str, values: tuple[Any, ...] = ()) -> None:
        with self._owner() as conn:
            conn.execute(f"UPDATE erasure_requests SET {assignments} WHERE job_id = %s", (*values, job))

    def erase(self, user_id: str, rebuild: list[datetime] | None = None) -> tuple[int, int, list[datetime]]:
        """Delete ``user_id``'s events from both stores now and rebuild the rollups' hours they were in
        (and ``rebuild``); returns (PostgreSQL rows, ClickHouse ids, the hours)."""
        with self._owner() as conn:
            pg_deleted = conn.execute("DELETE FROM events WHERE user_id = %s", (user_id,)).rowcount
        return (pg_deleted, *self.erase_clickhouse(user_id, rebuild))

    def erase_clickhouse(self, user_id: str, rebuild: list[datetime] | None = None) -> tuple[int, list[datetime]]:
        """ClickHouse's part of ``erase``: (ids deleted, the hours they were in).

        A cluster (``ch_cluster``): a mutation of a Distributed table is refused, and the rollups'
        Distributed tables take no writes, so each shard (one host of it: ``ch_shard_clients``)
        deletes from its own ``*_local`` tables and rebuilds its own rollups from its own events,
        as its materialized views filled them. Events are sharded by event_id, so the shards' ids
        add up without overlap."""
        if self.settings.ch_cluster:
            clients, suffix = ch_shard_clients(self.settings, "owner"), "_local"
        else:
            clients, suffix = [ch_client(self.settings, "owner")], ""
        deleted, hours = 0, set[datetime]()
        try:
            for client in clients:
                n, shard_hours = _erase_ch(client, suffix, user_id, rebuild or [])
                deleted, hours = deleted + n, hours | set(shard_hours)
        finally:
            for client in clients:
                client.close()
        return deleted, sorted(hours)


def _erase_ch(client: Any, suffix: str, user_id: str, rebuild: list[datetime]) -> tuple[int, list[datetime]]:
    """The erasure on one server's tables (``suffix`` "_local": a shard's own tables)."""
    params = {"user": user_id}
    ids = [r[0] for r in client.query(
        f"SELECT DISTINCT event_id FROM events{suffix} WHERE user_id = {{user:String}}", parameters=params).result_rows]
    hours = [r[0] for r in client.query(
        f"SELECT DISTINCT toStartOfHour(footprint_time) FROM events{suffix}"
        " WHERE user_id = {user:String} AND NOT synthetic", parameters=params).result_rows]
    for start in range(0, len(ids), 10_000):
        client.command(f"ALTER TABLE event_ids{suffix} DELETE WHERE has({{ids:Array(UUID)}}, event_id)",
                       parameters={"ids": ids[start:start + 10_000]}, settings=_MUTATION)
    if ids:
        client.command(f"ALTER TABLE events{suffix} DELETE WHERE user_id = {{user:String}}", parameters=params,
                       settings=_MUTATION)
    if hours or rebuild:
        _rebuild_rollups(client, sorted(set(hours) | set(rebuild)), suffix)
    return len(ids), hours


@dataclass(frozen=True)
class _Rollup:
    """How a rollup's rows of some hours are made again from ``events``: its view's SELECT list, ARRAY JOIN,
    filter and GROUP BY, and the time that keys its rows (``daily``: the UTC day, else the hour)."""

    select: str
    where: str
    group: str
    join: str = ""
    daily: bool = False

    def key(self) -> tuple[str, str, str]:
        """The rollup's time column, its type and the expression of an event's."""
        return ("day", "Date32", "toDate32(footprint_time)") if self.daily else \
            ("hour", "DateTime('UTC')", "toStartOfHour(footprint_time)")


# The rollups fed by materialized views from ``events`` (clickhouse/0001_events.sql, 0003_read_side.sql,
# 0008_breakdowns_daily.sql, 0009_links_daily.sql, 0010_visitors_daily.sql, their filters as 0004_enrichment left
# them: no bots, except in breakdowns_daily, which keeps them flagged). Rebuilt for the erased user's hours (the
# daily ones: their days).
_DIMENSIONS = ("referrer_host", "utm_source", "utm_medium", "utm_campaign", "browser", "os", "device", "country")
_BREAKDOWN_VALUES = (f"[{', '.join(repr(d) for d in _DIMENSIONS)}] AS dimension,"
                     f" [{', '.join(f'toString({d})' for d in _DIMENSIONS)}] AS value")
_ROLLUPS = {
    "link_hourly": _Rollup("toStartOfHour(footprint_time) AS hour, link, uniqExactState(event_id) AS views,"
                           " uniqExactState(visitor_id) AS visitors", "type = 'page' AND NOT synthetic AND NOT bot",
                           "hour, link"),
    "stats_hourly": _Rollup("toStartOfHour(footprint_time) AS hour, type, link, method, event, count() AS events,"
                            " uniqExactState(visitor_id) AS visitors", "NOT synthetic AND NOT bot",
                            "hour, type, link, method, event"),
    "breakdowns_daily": _Rollup("toDate32(footprint_time) AS day, type, bot, dimension, value, count() AS events,"
                                " uniqExactStateIf(visitor_id, dimension = 'country' AND NOT bot) AS visitors",
                                "NOT synthetic", "day, type, bot, dimension, value",
                                join=f" ARRAY JOIN {_BREAKDOWN_VALUES}", daily=True),
    "links_daily": _Rollup("toDate32(footprint_time) AS day, type, link, count() AS events,"
                           " uniqExactState(visitor_id) AS visitors", "NOT synthetic AND NOT bot", "day, type, link",
                           daily=True),
    "visitors_daily": _Rollup("toDate32(footprint_time) AS day, type, uniqCombined64State(12)(visitor_id) AS visitors",
                              "NOT synthetic AND NOT bot", "day, type", daily=True),
}


def _rebuild_rollups(client: Any, hours: list[datetime], suffix: str = "") -> None:
    """Each rollup's rows of ``hours`` (of their days, for a daily one) deleted and made again from ``events``
    (uniqExact states and sums cannot be subtracted). Rows a concurrent insert adds through a view in between may
    count twice in the rollups that count events (the erasure's second pass rebuilds them again)."""
    days = sorted({hour.date() for hour in hours})
    _reopen_visits(client, days, suffix)
    for table, rollup in _ROLLUPS.items():
        column, kind, of_event = rollup.key()
        keys: dict[str, Any] = {"keys": days if rollup.daily else hours}
        client.command(f"ALTER TABLE {table}{suffix} DELETE WHERE has({{keys:Array({kind})}}, {column})",
                       parameters=keys, settings=_MUTATION)
        client.command(
            f"INSERT INTO {table}{suffix} SELECT {rollup.select} FROM events{suffix} FINAL{rollup.join}"
            f" WHERE {rollup.where} AND has({{keys:Array({kind})}}, {of_event}) GROUP BY {rollup.group}",
            parameters=keys)


def _reopen_visits(client: Any, days: list[date], suffix: str = "") -> None:
    """The stored visits (``closedvisits``) of the days of the erased events (midnight ends every visit) no longer
    stand: each of those days gets a newer row, not closed (``footprint close-visits`` makes them again)."""
    client.command(
        f"INSERT INTO {DAYS}{suffix} (type, gap_us, day, closed_at, reach_us, verified_at)"
        f" SELECT type, gap_us, day, toDateTime64(0, 6, 'UTC'), 0, now64(6) FROM {DAYS}{suffix}"
        " WHERE has({days:Array(Date32)}, day) GROUP BY type, gap_us, day", parameters={"days": days})


class ErasedUsers:
    """The consumer's view of kept erasure requests: drops those users' events before any store."""

    def __init__(self, dsn: str, refresh_seconds: float) -> None:
        self._dsn = dsn
        self._refresh = refresh_seconds
        self._users: frozenset[str] = frozenset()
        self._loaded = -float("inf")

    def users(self) -> frozenset[str]:
        if time.monotonic() - self._loaded >= self._refresh:
            try:
                with pg_connect(self._dsn) as conn:
                    rows = conn.execute("SELECT DISTINCT user_id FROM erasure_requests WHERE keep_until > now()")
                    self._users = frozenset(r[0] for r in rows)
                self._loaded = time.monotonic()
            except Exception as exc:  # keep the last list; the store write will report an outage itself
                log.warning("erasure requests not refreshed", extra={"error": str(exc)[:300]})
        return self._users

    def filter(self, docs: Docs) -> Docs:
        users = self.users()
        if not users:
            return docs
        kept = {k: d for k, d in docs.items() if user_id_of(d) not in users}
        if len(kept) < len(docs):
            log.info("events of erased users dropped", extra={"dropped": len(docs) - len(kept)})
        return kept
