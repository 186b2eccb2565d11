"""Batch writers for the two stores. Both are idempotent by event_id.

Both sinks receive the validated message values (JSON text) unchanged and let the store parse
them in bulk: PostgreSQL through COPY (CSV) into a session-local staging table, ClickHouse through
one JSONEachRow insert. Python does the validation, the stores do the parsing.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from footprint.settings import Settings
from footprint.stores import ch_client, pg_connect

log = logging.getLogger("footprint.sinks")

COLUMNS = (
    "event_id", "type", "event", "method", "link", "user_id", "anonymous_id", "group_id", "visitor_id",
    "properties", "traits", "footprint_time", "received_at", "schema_version", "synthetic",
)
_COLS = ", ".join(COLUMNS)
_PG_FROM_DOC = (
    "(doc->>'event_id')::uuid, doc->>'type', coalesce(doc->>'event', ''), coalesce(doc->>'method', ''),"
    " coalesce(doc->>'link', ''), coalesce(doc->>'user_id', ''), coalesce(doc->>'anonymous_id', ''),"
    " coalesce(doc->>'group_id', ''), doc->>'visitor_id', coalesce(doc->'properties', '{}'),"
    " coalesce(doc->'traits', '{}'), (doc->>'footprint_time')::timestamptz, (doc->>'received_at')::timestamptz,"
    " (doc->>'schema_version')::smallint, coalesce((doc->>'synthetic')::boolean, false)"
)
CH_INSERT_SETTINGS = {
    "date_time_input_format": "best_effort",
    "input_format_json_read_objects_as_strings": 1,
    "input_format_null_as_default": 1,
    "input_format_skip_unknown_fields": 0,
}
# PostgreSQL SQLSTATE classes that mean "this data cannot be stored" rather than "the store is down":
# 22 data exception (bad value), 23 integrity constraint violation (e.g. the CHECK on type),
# 54 program limit exceeded (e.g. "index row size exceeds btree maximum")
PG_DATA_ERROR_CLASSES = frozenset({"22", "23", "54"})
# ClickHouse error codes that mean "this data cannot be parsed/stored" rather than "the store is down"
CH_DATA_ERRORS = frozenset({6, 26, 27, 38, 41, 53, 69, 70, 72, 117, 131, 190, 321, 407})


class DataRejected(Exception):
    """The store refused the content itself (retrying the same data cannot succeed)."""


def csv_field(doc: bytes) -> bytes:
    return b'"' + doc.replace(b'"', b'""') + b'"\n'


def is_pg_data_error(exc: BaseException) -> bool:
    """True if PostgreSQL refused the content itself (SQLSTATE class 22, 23 or 54)."""
    if isinstance(exc, (psycopg.DataError, psycopg.IntegrityError)):  # classes 22 / 23, also client-side
        return True
    sqlstate = getattr(exc, "sqlstate", None)
    return isinstance(exc, psycopg.Error) and bool(sqlstate) and str(sqlstate)[:2] in PG_DATA_ERROR_CLASSES


class PostgresSink:
    """COPY into a staging table, then ``INSERT ... SELECT ... ON CONFLICT (event_id) DO NOTHING``."""

    name = "postgres"

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: psycopg.Connection[Any] | None = None

    def connect(self) -> None:
        if self._conn is None or self._conn.closed:
            conn = pg_connect(self._dsn, "writer")
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS events_stage (doc jsonb NOT NULL) ON COMMIT DELETE ROWS")
            conn.commit()
            self._conn = conn

    def write(self, docs: list[bytes]) -> int:
        """Write one batch in one transaction; returns rows newly inserted."""
        try:
            self.connect()
            assert self._conn is not None
            conn = self._conn
            with conn.cursor() as cur:
                with cur.copy("COPY events_stage (doc) FROM STDIN (FORMAT csv)") as copy:
                    copy.write(b"".join(csv_field(d) for d in docs))
                cur.execute(
                    f"INSERT INTO events ({_COLS}) SELECT {_PG_FROM_DOC} FROM events_stage"
                    " ON CONFLICT (event_id) DO NOTHING"
                )
                inserted = cur.rowcount
            conn.commit()
            return inserted
        except psycopg.Error as exc:
            if not is_pg_data_error(exc):
                self.close()
                raise
            self._rollback()
            raise DataRejected(f"{exc.sqlstate}: {str(exc).strip()}"[:500]) from exc
        except Exception:
            self.close()
            raise

    def _rollback(self) -> None:
        try:
            if self._conn is not None:
                self._conn.rollback()
        except psycopg.Error:
            self.close()

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


class ClickHouseSink:
    """One JSONEachRow INSERT per batch into ``events`` (ReplacingMergeTree deduplicating by event_id)."""

    name = "clickhouse"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: Client | None = None

    def connect(self) -> None:
        if self._client is None:
            self._client = ch_client(self._settings, "writer")

    def write(self, docs: list[bytes]) -> int:
        try:
            self.connect()
            assert self._client is not None
            self._client.raw_insert(
                "events", column_names=list(COLUMNS), insert_block=b"\n".join(docs), settings=CH_INSERT_SETTINGS,
                fmt="JSONEachRow",
            )
        except DatabaseError as exc:
            code = getattr(exc, "code", None)
            if code in CH_DATA_ERRORS:
                raise DataRejected(str(exc).strip()[:500]) from exc
            self.close()
            raise
        except Exception:
            self.close()
            raise
        return len(docs)

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None
