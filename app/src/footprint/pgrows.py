"""PostgreSQL's cheapest idempotent insert of a batch: binary COPY of the columns into a staging table.

The canonical documents are split into their columns in one msgspec (C) pass, which also parses the
ids and times (a canonical document's are valid: the consumer's decode proved it); psycopg writes them in
COPY's binary format (no quoting, no parsing of text on the server: ids and times travel as PostgreSQL's
own binary uuid and timestamptz, which saved the server ~1.5 us of its ~16 us per row, RESULTS.md section
18); one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` moves them into ``events``, first write wins
(below). The objects travel as text and PostgreSQL parses them into jsonb, so it still judges every
object (one it refuses is refused by the store, as before); everything is derived from
``contract.COLUMNS``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import msgspec

from footprint.contract import COLUMNS, Kind

# text where PostgreSQL parses the value itself (jsonb); the others in their own binary form
_PARSED = ("jsonb",)
STAGE_TYPES = ["text" if c.pg_type in _PARSED else c.pg_type for c in COLUMNS]
_NAMES = ", ".join(c.name for c in COLUMNS)
STAGE_TABLE = (
    "CREATE TEMP TABLE IF NOT EXISTS events_copy ("
    + ", ".join(f"{c.name} {t}" for c, t in zip(COLUMNS, STAGE_TYPES, strict=True))
    + ") ON COMMIT DELETE ROWS"
)
COPY_STAGE = f"COPY events_copy ({_NAMES}) FROM STDIN (FORMAT binary)"
# First write wins. ``events`` is partitioned by month of footprint_time (migration 0006), so its key is
# (event_id, footprint_time): it catches every redelivery of a message, which repeats the id and the time.
# An id the collector drew at random (version 4, never given to another event) only ever comes back so.
# Any other id (a client's messageId, version 5) may come back with another time (a retry without a
# timestamp is timed when received): it is looked up in every partition first, by its index.
INSERT_FROM_STAGE = (
    f"INSERT INTO events ({_NAMES}) SELECT "
    + ", ".join(f"{c.name}::{c.pg_type}" if c.pg_type in _PARSED else c.name for c in COLUMNS)
    + " FROM events_copy s WHERE substr(s.event_id::text, 15, 1) = '4'"
    + " OR NOT EXISTS (SELECT FROM events e WHERE e.event_id = s.event_id)"
    + " ON CONFLICT (event_id, footprint_time) DO NOTHING"
)

# the documents' values: ids and times parsed, objects as their raw JSON text
_KIND_TYPES: dict[Kind, Any] = {"uuid": uuid.UUID, "type": str, "short": str, "text": str, "object": msgspec.Raw,
                                "time": datetime, "version": int, "bool": bool}
_Row = msgspec.defstruct("PgRow", [(c.name, _KIND_TYPES[c.kind]) for c in COLUMNS])
_DECODER = msgspec.json.Decoder(_Row)
_OBJECTS = [i for i, c in enumerate(COLUMNS) if c.kind == "object"]


def rows(docs: Iterable[bytes]) -> Iterator[list[Any]]:
    """Each canonical document as the list of its column values, in ``COLUMNS`` order."""
    astuple = msgspec.structs.astuple
    decode = _DECODER.decode
    for doc in docs:
        row = list(astuple(decode(doc)))
        for i in _OBJECTS:
            row[i] = bytes(row[i]).decode()
        yield row
