"""The field table: every field of the event, once, and what is derived from it alone.

One row (``Column``) per field says what it is (``kind``, the limits of its kind), how each store holds it
(``pg_type``, ``ch_type``), whether a wire message must carry it, its Segment name (``segment``), which
inbound event types a client sends it in (``inbound``), and whether the read API filters on it by
equality (``equality``). Derived here: the column names, the enriched columns, the stores' column lists
(which a test compares with the migrations, ``store_columns``), the equality filters, the read API's names
and the wire defaults. The rules (``values``, ``wire``, ``inbound``) and the OpenAPI schema (``openapi``)
derive the rest.

To add a field: add its row here, a migration for each store (``migrations/``), and, when the collector
derives it (``footprint.enrich``), its value there.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

SCHEMA_VERSION = 1
EVENT_TYPES = ("page", "track", "identify", "group")
# uuid5 namespace for client-supplied messageIds (makes client retries idempotent)
MESSAGE_ID_NAMESPACE = uuid.UUID("0f6b8f4e-0d1c-4d43-9f0a-4f6f6f747072")

# Byte caps (UTF-8) keep every PostgreSQL btree index entry under its 2704-byte limit whatever the
# characters: events_page_time_idx holds footprint_time + link + method + visitor_id
# (8 + 2048 + 256 + 256 bytes plus headers ~ 2600), events_page_link_idx link + footprint_time.
SHORT_MAX_CHARS = 200
SHORT_MAX_BYTES = 256
TEXT_MAX_BYTES = 2048
# properties/traits: the object itself is depth 1; {"a": {"b": 1}} is depth 2
MAX_DEPTH = 8
# times both stores hold exactly (UTC): [MIN_TIME, MAX_TIME)
MIN_TIME = datetime(2000, 1, 1)
MAX_TIME = datetime(2200, 1, 1)
# problems reported per request / message (the rest are counted)
MAX_PROBLEMS = 20

Kind = Literal["uuid", "type", "short", "text", "object", "time", "version", "bool"]
Store = Literal["postgres", "clickhouse"]


@dataclass(frozen=True)
class Inbound:
    """Where a client sends a field: in the inbound events of ``types`` (all of EVENT_TYPES: a field
    common to every event), under ``name`` (else the column's Segment name)."""

    types: tuple[str, ...]
    name: str | None = None
    required: bool = False
    doc: str = ""


@dataclass(frozen=True)
class Column:
    """One field of the wire event and the column both stores hold it in (same name; same order,
    except that the store-only columns sit before the ones later migrations added)."""

    name: str
    kind: Kind
    pg_type: str
    ch_type: str
    required: bool = False  # must be present in a wire message (the others default)
    segment: str = ""  # the Segment (read API) name; "" = the column's name
    inbound: tuple[Inbound, ...] = ()  # where clients send it (none: the collector makes it)
    equality: int = 0  # > 0: a read API equality filter, listed in this order
    enriched: bool = False  # derived by the collector from the event's context (footprint.enrich)

    @property
    def segment_name(self) -> str:
        return self.segment or self.name


ALL = EVENT_TYPES  # an inbound field of every event type


def _enriched(name: str, kind: Kind, pg_type: str, ch_type: str, segment: str) -> Column:
    return Column(name, kind, pg_type, ch_type, segment=segment, enriched=True)


# derived at the collector from the inbound event's context (footprint.enrich) and, for the country, from the
# client's address (footprint.countries); added by migration 0004_enrichment, the country by 0008_country
_ENRICHED: tuple[Column, ...] = (
    _enriched("referrer_host", "short", "text", "String", "referrerHost"),
    _enriched("utm_source", "short", "text", "String", "utmSource"),
    _enriched("utm_medium", "short", "text", "String", "utmMedium"),
    _enriched("utm_campaign", "short", "text", "String", "utmCampaign"),
    _enriched("utm_term", "short", "text", "String", "utmTerm"),
    _enriched("utm_content", "short", "text", "String", "utmContent"),
    _enriched("browser", "short", "text", "LowCardinality(String)", "browser"),
    _enriched("os", "short", "text", "LowCardinality(String)", "os"),
    _enriched("device", "short", "text", "LowCardinality(String)", "device"),
    _enriched("bot", "bool", "boolean", "Bool", "bot"),
    # ISO 3166-1 alpha-2, "" unknown (footprint.countries); added by migration 0008_country (ClickHouse 0007)
    Column("country", "short", "text", "LowCardinality(String)", segment="country", equality=6, enriched=True),
)
COLUMNS: tuple[Column, ...] = (
    Column("event_id", "uuid", "uuid", "UUID", required=True, segment="eventId"),
    Column("type", "type", "text", "LowCardinality(String)", required=True, equality=2),
    Column("event", "short", "text", "String", equality=1, inbound=(
        Inbound(("track",), required=True, doc="the action's name"),
        Inbound(("page",), name="name", doc="page name"))),
    Column("method", "short", "text", "LowCardinality(String)"),
    Column("link", "text", "text", "String"),
    Column("user_id", "short", "text", "String", segment="userId", equality=3, inbound=(
        Inbound(ALL, doc="your id of the user (userId or anonymousId is required)"),)),
    Column("anonymous_id", "short", "text", "String", segment="anonymousId", equality=4, inbound=(
        Inbound(ALL, doc="an id of a visitor who is not signed in"),)),
    Column("group_id", "short", "text", "String", segment="groupId", equality=5, inbound=(
        Inbound(("group",), required=True),)),
    Column("visitor_id", "short", "text", "String", required=True, segment="visitorId"),
    Column("properties", "object", "jsonb", "String", inbound=(
        Inbound(("track",)),
        Inbound(("page",), doc="properties.path becomes the event's link, properties.method its HTTP method"))),
    Column("traits", "object", "jsonb", "String", inbound=(Inbound(("identify", "group")),)),
    Column("footprint_time", "time", "timestamptz", "DateTime64(6, 'UTC')", required=True, segment="timestamp",
           inbound=(Inbound(ALL, doc="RFC 3339 with an offset, 2000..2199 UTC; fractions beyond microseconds are"
                                     " cut; default: now"),)),
    Column("received_at", "time", "timestamptz", "DateTime64(6, 'UTC')", required=True, segment="receivedAt"),
    Column("schema_version", "version", "smallint", "UInt16", required=True, segment="schemaVersion"),
    Column("synthetic", "bool", "boolean", "Bool"),
    *_ENRICHED,
)
COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)
ENRICHED_COLUMNS: tuple[str, ...] = tuple(c.name for c in COLUMNS if c.enriched)
# columns only the stores have (filled by the store itself)
STORE_ONLY_COLUMNS = ("ingested_at",)

# (plain dicts, as the hot paths unpack them: never change them)
# the value of a field a wire message leaves out (objects: {}, a new one each time it is used)
DEFAULTS: dict[Kind, Any] = {"short": "", "text": "", "bool": False}
# the enriched columns' values when nothing was derived
NOT_ENRICHED: dict[str, Any] = {c.name: DEFAULTS[c.kind] for c in _ENRICHED}

# read API (GET /v1/events) and export equality filters: query parameter (the Segment name) -> column
EQUALITY: dict[str, str] = {
    c.segment_name: c.name for c in sorted((c for c in COLUMNS if c.equality), key=lambda c: c.equality)}
# stored columns that no inbound field fills, and the names the read API gives them
OUTBOUND_EXTRA: dict[str, str] = {c.name: c.segment_name for c in COLUMNS if not c.inbound and c.name != "type"}


def store_columns(store: Store, columns: Sequence[Column] = COLUMNS) -> list[tuple[str, str]]:
    """``(name, type)`` of the contract's columns in ``store``'s events table, in the table's order."""
    return [(c.name, c.pg_type if store == "postgres" else c.ch_type) for c in columns]


def column_disagreements(found: Sequence[tuple[str, str]], store: Store,
                         columns: Sequence[Column] = COLUMNS) -> list[str]:
    """Where ``found`` (a store's events table as ``(name, type)``, in order) and the field table disagree:
    a column missing or extra, out of order, or of another type. The store-only columns are left out."""
    want = store_columns(store, columns)
    got = [(n, t) for n, t in found if n not in STORE_ONLY_COLUMNS]
    missing = [n for n, _ in want if n not in dict(got)]
    extra = [n for n, _ in got if n not in dict(want)]
    out = [f"{store}: column {n} is in the field table but not in the store" for n in missing]
    out += [f"{store}: column {n} is in the store but not in the field table" for n in extra]
    if not missing and not extra and [n for n, _ in got] != [n for n, _ in want]:
        out.append(f"{store}: columns in another order: {[n for n, _ in got]}")
    types = dict(got)
    out += [f"{store}: column {n} is {types[n]} in the store, {t} in the field table"
            for n, t in want if n in types and types[n] != t]
    only = [n for n in STORE_ONLY_COLUMNS if n not in {n for n, _ in found}]
    out += [f"{store}: the store-only column {n} is missing" for n in only]
    return out
