"""Batch writers for the two stores. Both are idempotent by event_id, first write wins.

Both sinks receive the canonical event documents (``contract.decode_message``), keyed by
event_id. PostgreSQL: the documents are split into their columns in one msgspec pass (``pgrows``)
and sent by binary COPY into a session-local staging table, then inserted with ON CONFLICT DO
NOTHING; ClickHouse parses them itself in one JSONEachRow insert. Column lists come from
``contract.COLUMNS``. A sink raises whatever the store raised; whether that was the data or the
store is decided by the consumer with ``probe`` (a known-good write), never by error codes.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.external import ExternalData

from footprint.contract import COLUMNS, dumps, make_event, parse_time
from footprint.pgrows import COPY_STAGE, INSERT_FROM_STAGE, STAGE_TABLE, STAGE_TYPES, rows
from footprint.settings import ClickHouseSettings
from footprint.stores import ch_client, pg_connect

log = logging.getLogger("footprint.sinks")

Docs = dict[str, bytes]  # event_id -> canonical JSON document

CH_INSERT_SETTINGS = {
    "date_time_input_format": "best_effort",
    "input_format_json_read_objects_as_strings": 1,
    "input_format_null_as_default": 0,
    "input_format_skip_unknown_fields": 0,
}
# A cluster (settings.ch_cluster): events and event_ids are Distributed tables. The insert returns
# once every shard's replica took its rows (not after a background send from this host's disk
# queue), so that "accepted" still means stored before the offsets are committed; the lookup and
# the insert go to the first healthy replica of each shard in remote_servers order, so a batch's
# ids are looked up where its previous attempt was written (another replica may not have fetched
# that part yet).
CH_CLUSTER_SETTINGS = {"distributed_foreground_insert": 1, "load_balancing": "in_order"}
# A known-good event: a store that refuses it is down (or changed), not refusing data. Synthetic
# (outside every statistic); first write wins, so it is one row in each store however often written.
_CANARY_TIME = parse_time("2000-01-01T00:00:00Z")
CANARY_ID = "00000000-0000-4000-8000-00000000ca9a"
CANARY: Docs = {CANARY_ID: dumps(make_event(
    type="track", event_id=CANARY_ID, event="footprint.store_probe", anonymous_id="footprint",
    footprint_time=_CANARY_TIME, received_at=_CANARY_TIME, synthetic=True,
))}


class PostgresSink:
    """Binary COPY into a staging table, then ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` (``pgrows``)."""

    name = "postgres"

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: psycopg.Connection[Any] | None = None

    def connect(self) -> None:
        if self._conn is None or self._conn.closed:
            conn = pg_connect(self._dsn, "writer")
            conn.execute(STAGE_TABLE)
            conn.commit()
            self._conn = conn

    def write(self, docs: Docs) -> int:
        """Write one batch in one transaction; returns rows newly inserted."""
        try:
            self.connect()
            assert self._conn is not None
            conn = self._conn
            with conn.cursor() as cur:
                with cur.copy(COPY_STAGE) as copy:
                    copy.set_types(STAGE_TYPES)
                    write_row = copy.write_row
                    for row in rows(docs.values()):
                        write_row(row)
                cur.execute(INSERT_FROM_STAGE)
                inserted = cur.rowcount
            conn.commit()
            return inserted
        except Exception:
            self._reset()
            raise

    def probe(self) -> None:
        """Write the canary; raises if PostgreSQL cannot take a known-good event right now."""
        self.write(CANARY)

    def _reset(self) -> None:
        """After a failure: roll back and keep a healthy connection, drop a broken one."""
        try:
            if self._conn is not None and not self._conn.closed:
                self._conn.rollback()
                return
        except psycopg.Error:
            pass
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


class ClickHouseSink:
    """One JSONEachRow INSERT per batch into ``events``, of the events it does not hold yet.

    ``events`` is a ReplacingMergeTree whose sort key holds more than event_id, so a retry that
    differs (another type, another hour) would be a second row: the sink first asks ``event_ids``
    (ordered by event_id, fed by a materialized view) which ids it already holds and leaves them
    out - first write wins, as in PostgreSQL, and the rollup never counts an event twice.
    """

    name = "clickhouse"

    def __init__(self, settings: ClickHouseSettings) -> None:
        self._settings = settings
        self._client: Client | None = None
        cluster = bool(settings.ch_cluster)
        self._insert_settings = {**CH_INSERT_SETTINGS, **CH_CLUSTER_SETTINGS} if cluster else CH_INSERT_SETTINGS
        self._lookup_settings = dict(CH_CLUSTER_SETTINGS) if cluster else None

    def connect(self) -> None:
        if self._client is None:
            self._client = ch_client(self._settings, "writer")

    def known(self, ids: list[str]) -> set[str]:
        """The ids among ``ids`` that ClickHouse already holds."""
        assert self._client is not None
        # the ids travel as external data (a table in the request body): 4x cheaper than an IN list in SQL
        ids_table = ExternalData(file_name="batch_ids", data="\n".join(ids).encode(), fmt="TabSeparated",
                                 structure="event_id UUID")
        rows = self._client.query(
            "SELECT toString(event_id) FROM event_ids WHERE event_id IN batch_ids", external_data=ids_table,
            settings=self._lookup_settings,
        ).result_rows
        return {r[0] for r in rows}

    def write(self, docs: Docs) -> int:
        try:
            self.connect()
            held = self.known(list(docs))
            fresh = [doc for key, doc in docs.items() if key not in held]
            if fresh:
                self._insert(fresh)
            return len(fresh)
        except Exception:
            self.close()
            raise

    def _insert(self, docs: list[bytes]) -> None:
        assert self._client is not None
        self._client.raw_insert(
            "events", column_names=[c.name for c in COLUMNS], insert_block=b"\n".join(docs),
            settings=self._insert_settings, fmt="JSONEachRow",
        )

    def probe(self) -> None:
        """Insert the canary (no lookup: the insert path itself is probed); raises if refused."""
        try:
            self.connect()
            self._insert(list(CANARY.values()))
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None
