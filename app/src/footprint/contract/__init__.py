"""The event contract: the field table once, and everything derived from it.

- ``fields``: the field table (``COLUMNS``: name, kind, limits, store types, Segment name, where clients
  send it, equality filter) and what follows from it alone: column names, the stores' column lists
  (``store_columns``, ``column_disagreements``: a test compares them with the migrations), the equality
  filters (``EQUALITY``), the read API's names of the other columns (``OUTBOUND_EXTRA``);
- ``values``: the rules for one value (text, times, objects, ids), JSON in and out, ``ContractError``;
- ``wire``: the canonical wire form; ``decode_message`` is the one way to read a Kafka message (its fast
  path, ``_fastwire``, inside), ``make_event`` / ``to_wire`` build one;
- ``inbound``: the Segment-style fields clients send (derived from the table) and ``validate_batch``;
  ``plain_batch`` is its fast path (``_fastinbound``);
- ``outbound``: a stored event in the read API's names; ``openapi``: the ``POST /v1/events`` body schema.

Modules outside the package import from ``footprint.contract`` only, never an underscore name.
"""

from typing import TYPE_CHECKING, Any

from footprint.contract.fields import (
    COLUMN_NAMES,
    COLUMNS,
    DEFAULTS,
    ENRICHED_COLUMNS,
    EQUALITY,
    EVENT_TYPES,
    MAX_DEPTH,
    MAX_PROBLEMS,
    MAX_TIME,
    MESSAGE_ID_NAMESPACE,
    MIN_TIME,
    NOT_ENRICHED,
    OUTBOUND_EXTRA,
    SCHEMA_VERSION,
    SHORT_MAX_BYTES,
    SHORT_MAX_CHARS,
    STORE_ONLY_COLUMNS,
    TEXT_MAX_BYTES,
    Column,
    Inbound,
    Kind,
    Store,
    column_disagreements,
    store_columns,
)
from footprint.contract.inbound import INBOUND_COMMON, INBOUND_ONLY, INBOUND_TYPES, InField, validate_batch
from footprint.contract.openapi import inbound_json_schema
from footprint.contract.outbound import outbound, outbound_names
from footprint.contract.values import (
    ContractError,
    Problems,
    check_object,
    check_text,
    clean_text,
    dumps,
    format_time,
    kafka_timestamp,
    loads,
    message_id_uuid,
    parse_time,
    random_uuids,
    truncate_utf8,
)
from footprint.contract.wire import (
    canonical,
    decode_by_rules,
    decode_message,
    encode_event,
    make_event,
    to_wire,
)

if TYPE_CHECKING:
    from footprint.contract._fastinbound import Wire, plain_batch
    from footprint.contract._fastwire import canonical_message, user_id_of

# the fast paths need msgspec, which the bare package (the tracking middleware alone) does not install:
# they are imported when first asked for
_FAST = {"Wire": "_fastinbound", "plain_batch": "_fastinbound", "canonical_message": "_fastwire",
         "user_id_of": "_fastwire"}


def __getattr__(name: str) -> Any:
    if name in _FAST:
        import importlib

        return getattr(importlib.import_module(f"footprint.contract.{_FAST[name]}"), name)
    raise AttributeError(f"module 'footprint.contract' has no attribute {name!r}")


__all__ = [
    "COLUMNS", "COLUMN_NAMES", "DEFAULTS", "ENRICHED_COLUMNS", "EQUALITY", "EVENT_TYPES", "INBOUND_COMMON",
    "INBOUND_ONLY", "INBOUND_TYPES", "MAX_DEPTH", "MAX_PROBLEMS", "MAX_TIME", "MESSAGE_ID_NAMESPACE", "MIN_TIME",
    "NOT_ENRICHED", "OUTBOUND_EXTRA", "SCHEMA_VERSION", "SHORT_MAX_BYTES", "SHORT_MAX_CHARS", "STORE_ONLY_COLUMNS",
    "TEXT_MAX_BYTES", "Column", "ContractError", "InField", "Inbound", "Kind", "Problems", "Store", "Wire",
    "canonical", "canonical_message", "check_object", "check_text", "clean_text", "column_disagreements",
    "decode_by_rules", "decode_message", "dumps", "encode_event", "format_time", "inbound_json_schema",
    "kafka_timestamp", "loads", "make_event", "message_id_uuid", "outbound", "outbound_names", "parse_time",
    "plain_batch", "random_uuids", "store_columns", "to_wire", "truncate_utf8", "user_id_of", "validate_batch",
]
