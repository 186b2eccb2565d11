"""What ``footprint audit`` asks the stores, as their reader: events per hour of ``received_at``.

Raw rows, no ``FINAL`` (a row stored twice is a finding, not something to merge away). The ranges
are cheap however many events a store holds: PostgreSQL reads the index on ``received_at``
(migration 0007: an index-only scan of each monthly partition's index), ClickHouse skips the
granules whose ``received_at`` lies outside the range (its minmax index, migration 0006). An event
counts in the hour of its first row in the window; its other rows are duplicates, in their hours.

The reader's profile caps what a ClickHouse query may return (``max_result_rows``, the app's
``query_max_result_rows``, ``result_overflow_mode=throw``): the audit sends the same cap and reads
its per-event answers in pages of that many rows (keyset on ``event_id``), so an hour of any size
is read whole and a deploy's profile never refuses it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time
from typing import Any

import psycopg
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.external import ExternalData

from footprint.auditbook import Stored
from footprint.retention import cutoff
from footprint.settings import Settings
from footprint.stores import StoreUnavailable, ch_client, pg_connect

Hours = dict[datetime, Stored]  # hour start (UTC) -> rows and distinct ids
_NIL = "00000000-0000-0000-0000-000000000000"


def _pg_range(until: datetime | None) -> str:
    return "received_at >= %(since)s" + (" AND received_at < %(until)s" if until is not None else "")


def _ch_range(until: datetime | None) -> str:
    return "received_at >= {since:DateTime64(6, 'UTC')}" + (
        " AND received_at < {until:DateTime64(6, 'UTC')}" if until is not None else "")


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class AuditStores:
    """Both stores as the reader; a context manager (closes both)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.page = settings.query_max_result_rows  # rows per ClickHouse answer, the reader's cap
        self.pg = pg_connect(settings.pg_reader_dsn.get_secret_value(), "reader")
        try:
            # the window's ids are sorted once (first row per id): in memory for a day of events
            self.pg.execute("SET work_mem = '64MB'")
            self.pg.commit()
            self.ch: Client = ch_client(settings, "reader")
        except BaseException:
            self.pg.close()
            raise

    def __enter__(self) -> AuditStores:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.ch.close()
        finally:
            self.pg.close()

    def _pg(self, query: str, params: Any) -> list[tuple[Any, ...]]:
        try:
            rows = self.pg.execute(query, params).fetchall()
            self.pg.rollback()
            return rows
        except psycopg.Error as exc:
            raise StoreUnavailable(
                f"PostgreSQL (reader): {' '.join(str(exc).split())[:300]}; the audit reads events and"
                " erasure_requests with FOOTPRINT_PG_READER_DSN (footprint migrate grants its role SELECT)") from None

    def _ch(self, query: str, params: Any = None, external: ExternalData | None = None) -> list[Any]:
        try:
            return list(self.ch.query(query, parameters=params, external_data=external, settings={
                "max_result_rows": self.page, "result_overflow_mode": "throw"}).result_rows)
        except Exception as exc:
            raise StoreUnavailable(
                f"ClickHouse (reader): {' '.join(str(exc).split())[:300]}; the audit reads events and event_ids"
                " as FOOTPRINT_CH_READER_USER (SELECT on the app's database; footprint migrate makes them)") from None

    def hours(self, since: datetime, until: datetime | None) -> dict[str, Hours]:
        """Per store, the hours of [since, until) that hold rows: raw rows, and the ids whose first
        row of the window is in the hour."""
        params = {"since": since, "until": until}
        pg_rows = self._pg(
            "SELECT hour, count(*), count(*) FILTER (WHERE first) FROM ("
            " SELECT date_trunc('hour', received_at) AS hour,"
            " row_number() OVER (PARTITION BY event_id ORDER BY received_at) = 1 AS first"
            f" FROM events WHERE {_pg_range(until)}) w GROUP BY hour", params)
        ch_rows = self._ch(
            "SELECT hour, count(), countIf(i = 1) FROM ("
            " SELECT toStartOfHour(received_at) AS hour,"
            " row_number() OVER (PARTITION BY event_id ORDER BY received_at) AS i"
            f" FROM events WHERE {_ch_range(until)}) GROUP BY hour", params)
        return {"postgresql": {_utc(h): Stored(int(n), int(d)) for h, n, d in pg_rows},
                "clickhouse": {_utc(h): Stored(int(n), int(d)) for h, n, d in ch_rows}}

    def first_rows(self, ranges: Iterable[tuple[datetime, datetime | None]]) -> dict[str, dict[str, datetime]]:
        """Per store, event id -> its first ``received_at`` within ``ranges`` ([start, end), end None: open)."""
        out: dict[str, dict[str, datetime]] = {"postgresql": {}, "clickhouse": {}}
        for start, end in ranges:
            params = {"since": start, "until": end}
            for event_id, at in self._pg(
                    f"SELECT event_id::text, min(received_at) FROM events WHERE {_pg_range(end)} GROUP BY 1", params):
                _keep_first(out["postgresql"], event_id, _utc(at))
            for event_id, at in self._ch_pages(
                    f"SELECT toString(event_id), min(received_at) FROM events WHERE {_ch_range(end)}"
                    " AND ({first:Bool} OR event_id > {after:UUID})"
                    " GROUP BY event_id ORDER BY event_id LIMIT {page:UInt64}", params):
                _keep_first(out["clickhouse"], event_id, _utc(at))
        return out

    def _ch_pages(self, query: str, params: dict[str, Any]) -> Iterator[tuple[str, Any]]:
        """``query``'s rows page by page: it takes ``{first:Bool}``, ``{after:UUID}`` (the last id of the
        page before) and ``{page:UInt64}``, answers ``(toString(event_id), ...)`` ordered by ``event_id``."""
        first, after = True, _NIL
        while True:
            rows = self._ch(query, {**params, "first": first, "after": after, "page": self.page})
            yield from rows
            if len(rows) < self.page:
                return
            first, after = False, rows[-1][0]

    def held(self, ids: dict[str, set[str]]) -> dict[str, set[str]]:
        """Per store, which of its ``ids`` it holds at any time (PostgreSQL's key starts with the id,
        ClickHouse's id lookup ``event_ids`` is ordered by it)."""
        out: dict[str, set[str]] = {"postgresql": set(), "clickhouse": set()}
        pg_ids, ch_ids = sorted(ids.get("postgresql", ())), sorted(ids.get("clickhouse", ()))
        for i in range(0, len(pg_ids), self.page):
            rows = self._pg("SELECT DISTINCT event_id::text FROM events WHERE event_id = ANY(%s::uuid[])",
                            (pg_ids[i:i + self.page],))
            out["postgresql"].update(r[0] for r in rows)
        for i in range(0, len(ch_ids), self.page):  # at most a page of ids asked: at most a page answered
            table = ExternalData(file_name="audit_ids", data="\n".join(ch_ids[i:i + self.page]).encode(),
                                 fmt="TabSeparated", structure="event_id UUID")
            rows = self._ch("SELECT DISTINCT toString(event_id) FROM event_ids WHERE event_id IN audit_ids",
                            external=table)
            out["clickhouse"].update(r[0] for r in rows)
        return out

    def erasures(self) -> dict[str, datetime]:
        """User id -> the last ``keep_until`` of their erasure requests (their events arriving until
        then are dropped; those stored before the request are deleted)."""
        rows = self._pg("SELECT user_id, max(keep_until) FROM erasure_requests GROUP BY user_id", None)
        return {user: _utc(keep) for user, keep in rows}

    def retention_cutoff(self, today: date) -> datetime | None:
        """The first ``footprint_time`` the raw events' retention keeps today (None: forever)."""
        first = cutoff(today, self.settings.retention_months)
        return datetime.combine(first, time(), UTC) if first is not None else None


def _keep_first(ids: dict[str, datetime], event_id: str, at: datetime) -> None:
    if event_id not in ids or at < ids[event_id]:
        ids[event_id] = at

