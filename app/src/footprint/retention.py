"""Retention: how long each store keeps what, and the job that applies it (``footprint retention``).

Months, UTC, whole: with ``retention_months`` = N the raw events of the current month and of the N
months before it are kept; a month leaves the day after it is N + 1 months old. So a month leaves
both stores on the same day, as one piece:

- PostgreSQL: ``events`` is partitioned by month (migration 0006); the job drops an expired
  month's partition (never a DELETE of its rows), deletes the few expired rows of the default
  partition, and creates the partitions of the coming months (``AHEAD_MONTHS``) before they are
  needed. ``events_legacy`` (the table of an install older than the partitions) is dropped whole
  once its newest month has expired; until then no raw month leaves either store (``raw_held_until``),
  so that both keep holding the same events.
- ClickHouse: the job drops the expired months of ``events`` (partitioned by month since 0001),
  deletes their ids from ``event_ids`` (the consumer's "already stored" lookup, so that both stores
  forget an id with its event), and drops the months of the rollups (hourly, and the daily
  ``breakdowns_daily``, ``links_daily``, ``visitors_daily``) that are older than
  ``rollup_retention_months`` (kept longer: the dashboard's history outlives the raw events). The
  same bounds are set as the tables' TTL (``event_ids`` too), which keeps them on a server where the
  job stops running; the ids of expired months are deleted whether the job or a TTL merge removed
  their events.

An event older than the retention that arrives late (a client retry, a backlog in Kafka) is stored
and leaves at the job's next run; a retried messageId whose first write has left is stored again.
0 months keeps everything (the job then only creates partitions ahead).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import psycopg
from clickhouse_connect.driver.client import Client
from psycopg import sql

from footprint.migrate import PG_LOCK_KEY
from footprint.settings import Settings
from footprint.stores import ch_client, ch_shard_clients, pg_connect

log = logging.getLogger("footprint.retention")

AHEAD_MONTHS = 3  # partitions made before their month starts (the migration makes the same)
_BOUND = re.compile(r"FROM \((MINVALUE|'[^']+')\) TO \('([^']+)'\)")
# ClickHouse tables kept by month: (table, time column, which retention)
CH_TABLES = (("events", "footprint_time", "raw"), ("link_hourly", "hour", "rollup"),
             ("stats_hourly", "hour", "rollup"), ("breakdowns_daily", "day", "rollup"),
             ("links_daily", "day", "rollup"), ("visitors_daily", "day", "rollup"),
             ("visits_closed", "day", "rollup"), ("visits_days", "day", "rollup"))


def month_start(day: date, months: int = 0) -> date:
    """The first day of ``day``'s month moved by ``months`` (negative: back)."""
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def cutoff(today: date, months: int) -> date | None:
    """The first day kept by a retention of ``months`` whole months before today's (None: forever)."""
    return month_start(today, -months) if months > 0 else None


@dataclass
class Report:
    """What one run did (and, with ``dry_run``, would do)."""

    raw_months: int
    rollup_months: int
    raw_cutoff: date | None
    rollup_cutoff: date | None
    raw_held_until: date | None = None  # events_legacy still holds expired months: none leaves until then
    pg_created: list[str] = field(default_factory=list)
    pg_dropped: list[str] = field(default_factory=list)
    pg_default_deleted: int = 0
    ch_dropped: list[str] = field(default_factory=list)
    ch_ids_deleted: int = 0
    ch_ttl_set: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in self.__dict__.items()}


def run(settings: Settings, today: date | None = None, dry_run: bool = False) -> Report:
    """Apply the retention of ``settings`` to both stores as their owner; ``today`` (UTC) for tests."""
    today = today or datetime.now(UTC).date()
    raw, rollup = settings.retention_months, settings.rollup_retention_months
    report = Report(raw, rollup, cutoff(today, raw), cutoff(today, rollup))
    with pg_connect(settings.pg_owner_dsn.get_secret_value(), "owner") as conn:
        # one run at a time (a timer on every app host), never beside a migration; released on close
        conn.execute("SELECT pg_advisory_lock(%s)", (PG_LOCK_KEY,))
        # a partition's creation or drop waits for the readers of events and holds up the consumer's
        # inserts meanwhile: give up after 30 s (the run fails naming the lock; the timer runs again)
        conn.execute("SET lock_timeout = '30s'")
        conn.commit()
        _postgres(conn, today, report, dry_run)
        if settings.ch_cluster:
            clients, suffix = ch_shard_clients(settings, "owner"), "_local"
        else:
            clients, suffix = [ch_client(settings, "owner")], ""
        try:
            for client in clients:
                _clickhouse(client, settings.ch_database, suffix, report, dry_run)
        finally:
            for client in clients:
                client.close()
    log.info("retention applied" if not dry_run else "retention planned", extra=report.as_dict())
    return report


# --- PostgreSQL ------------------------------------------------------------------------------------

def pg_partitions(conn: psycopg.Connection[Any]) -> list[tuple[str, date | None, date | None]]:
    """The partitions of ``events``: (name, first day or None for MINVALUE, end day), default apart (None, None)."""
    rows = conn.execute(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass ORDER BY 1").fetchall()
    out: list[tuple[str, date | None, date | None]] = []
    for name, bound in rows:
        m = _BOUND.search(bound)
        if not m:  # DEFAULT
            out.append((name, None, None))
            continue
        low = None if m.group(1) == "MINVALUE" else date.fromisoformat(m.group(1).strip("'")[:10])
        out.append((name, low, date.fromisoformat(m.group(2)[:10])))
    return out


def _postgres(conn: psycopg.Connection[Any], today: date, report: Report, dry_run: bool) -> None:
    conn.execute("SET TIME ZONE 'UTC'")  # partition bounds read and written as UTC dates
    parts = pg_partitions(conn)
    legacy = next((end for _name, low, end in parts if low is None and end is not None), None)
    if legacy and report.raw_cutoff and legacy > report.raw_cutoff:
        # an install that moved over (migration 0006) keeps its older months in one partition that can
        # only leave whole: until then no raw month leaves either store, so that both hold the same
        report.raw_held_until, report.raw_cutoff = month_start(legacy, report.raw_months), None
    default = next((name for name, _low, end in parts if end is None), None)
    months = {month_start(today, i) for i in range(AHEAD_MONTHS + 1)}
    if default:  # the kept months the default partition holds get partitions of their own
        rows = conn.execute(sql.SQL("SELECT DISTINCT date_trunc('month', footprint_time)::date FROM {}"
                                    " WHERE footprint_time < %s").format(sql.Identifier(default)),
                            (month_start(today, AHEAD_MONTHS + 1),)).fetchall()
        months |= {r[0] for r in rows if report.raw_cutoff is None or r[0] >= report.raw_cutoff}
    conn.commit()
    for first in sorted(months):
        if any((low is None or low <= first) and end is not None and first < end for _, low, end in parts):
            continue
        name = f"events_{first:%Y_%m}"
        report.pg_created.append(name)
        if not dry_run:
            _pg_create_month(conn, name, first, month_start(first, 1), default)
    if report.raw_cutoff is None:
        return
    for name, _low, end in parts:
        if end is not None and end <= report.raw_cutoff:
            report.pg_dropped.append(name)
            if not dry_run:
                conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
                conn.commit()
    if default:  # expired rows of the default partition: late arrivals, a few
        query = sql.SQL("{} FROM {} WHERE footprint_time < %s").format(
            sql.SQL("SELECT count(*)" if dry_run else "DELETE"), sql.Identifier(default))
        cur = conn.execute(query, (report.raw_cutoff,))
        report.pg_default_deleted = int(cur.fetchone()[0]) if dry_run else cur.rowcount  # type: ignore[index]
        conn.commit()


def _pg_create_month(conn: psycopg.Connection[Any], name: str, first: date, end: date, default: str | None) -> None:
    """The partition of one month; rows the default partition holds for it move in with it."""
    with conn.transaction():
        if default:  # no insert lands there between the move and the new partition's check of it
            conn.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(sql.Identifier(default)))
            conn.execute(sql.SQL("CREATE TEMP TABLE events_moving ON COMMIT DROP AS WITH m AS ("
                                 "DELETE FROM {} WHERE footprint_time >= %s AND footprint_time < %s RETURNING *)"
                                 " SELECT * FROM m").format(sql.Identifier(default)), (first, end))
        conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF events FOR VALUES FROM ({}) TO ({})").format(
            sql.Identifier(name), sql.Literal(f"{first} 00:00:00+00"), sql.Literal(f"{end} 00:00:00+00")))
        if default:
            conn.execute("INSERT INTO events SELECT * FROM events_moving")


# --- ClickHouse ------------------------------------------------------------------------------------

def ttl_expression(column: str, months: int) -> str:
    """The TTL that removes a row when its month leaves a retention of ``months`` (as ``cutoff``)."""
    return f"toStartOfMonth({column}) + toIntervalMonth({months + 1})"


def _clickhouse(client: Client, db: str, suffix: str, report: Report, dry_run: bool) -> None:
    raw_months = 0 if report.raw_held_until else report.raw_months  # held: no TTL either
    for table, column, kind in CH_TABLES:
        keep, months = (report.raw_cutoff, raw_months) if kind == "raw" else \
            (report.rollup_cutoff, report.rollup_months)
        target = f"{db}.{table}{suffix}"
        _ch_ttl(client, target, column, months, report, dry_run)
        if keep is None:
            continue
        # the months held (the owner reads its tables, not system.parts; the virtual column prunes by part)
        expired = [r[0] for r in client.query(
            f"SELECT DISTINCT _partition_id AS p FROM {target} WHERE _partition_id < {{keep:String}} ORDER BY p",
            parameters={"keep": f"{keep:%Y%m}"}).result_rows]
        for partition in expired:
            report.ch_dropped.append(f"{table}{suffix}:{partition}")
            if not dry_run:
                client.command(f"ALTER TABLE {target} DROP PARTITION ID {{p:String}}", parameters={"p": partition})
    # the id lookup forgets the ids of expired months whether the job or a TTL merge removed their events
    ids = f"{db}.event_ids{suffix}"
    _ch_ttl(client, ids, "footprint_time", raw_months, report, dry_run)
    if report.raw_cutoff is None:
        return
    keep_at = {"keep": datetime.combine(report.raw_cutoff, datetime.min.time(), UTC)}
    n = int(str(client.command(f"SELECT count() FROM {ids} WHERE footprint_time < {{keep:DateTime64(6)}}",
                               parameters=keep_at)))
    report.ch_ids_deleted += n
    if n and not dry_run:
        client.command(f"ALTER TABLE {ids} DELETE WHERE footprint_time < {{keep:DateTime64(6)}}",
                       parameters=keep_at, settings={"mutations_sync": 2})


def _ch_ttl(client: Client, target: str, column: str, months: int, report: Report, dry_run: bool) -> None:
    """The table's TTL as the retention says (no TTL for 0), set only when it differs.
    Not materialized on the parts already there: the job's partition drops take care of those."""
    table = target.split(".")[1]
    create = str(client.command(f"SHOW CREATE TABLE {target}"))
    want = ttl_expression(column, months) if months else ""
    has = "TTL " in create
    if (want and want in create) or (not want and not has):
        return
    report.ch_ttl_set.append(f"{table}: {want or 'none'}")
    if dry_run:
        return
    if want:
        client.command(f"ALTER TABLE {target} MODIFY TTL {want}", settings={"materialize_ttl_after_modify": 0})
    else:
        client.command(f"ALTER TABLE {target} REMOVE TTL")
