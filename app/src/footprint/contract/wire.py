"""The canonical wire form of an event (one Kafka message): build it, check it, decode it, encode it.

The canonical form: ids as lower-case hyphenated UUIDs, times in UTC with exactly six fraction
digits and a ``Z`` (``2026-12-01T10:00:00.000000Z``), absent strings as ``""``, numbers finite
(floats as the shortest text that round-trips), no NUL and no unpaired surrogate in any string,
compact UTF-8 JSON, the fields in the field table's order. Both stores receive these exact values, so
they cannot disagree on what an event says.

``decode_message`` is the one way to read a message: a message already in its exact canonical form is
recognised in one msgspec (C) pass (``_fastwire``); anything else goes through the full rules
(``decode_by_rules``), which produce every canonical rewrite and every reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from footprint.contract.fields import (
    COLUMN_NAMES,
    COLUMNS,
    DEFAULTS,
    SCHEMA_VERSION,
    SHORT_MAX_BYTES,
    SHORT_MAX_CHARS,
    TEXT_MAX_BYTES,
    Kind,
)
from footprint.contract.values import (
    ContractError,
    Problems,
    check_bool,
    check_long,
    check_object,
    check_short,
    check_time,
    check_type,
    check_uuid,
    check_version,
    clean_text,
    dumps,
    format_time,
    json_type,
    loads,
)


def _undecided(value: bytes) -> str | None:
    return None


# the fast path needs msgspec, which the bare package (the tracking middleware alone) does not install
_canonical_message: Callable[[bytes], str | None]
try:
    from footprint.contract import _fastwire

    _canonical_message = _fastwire.canonical_message
except ModuleNotFoundError as exc:  # pragma: no cover (tests/unit/test_packaging.py)
    if exc.name != "msgspec":
        raise
    _canonical_message = _undecided

_WIRE_CHECKS: dict[Kind, Callable[[Any, str, Problems], Any]] = {
    "uuid": check_uuid,
    "type": check_type,
    "short": check_short,
    "text": check_long,
    "object": check_object,
    "time": check_time,
    "version": check_version,
    "bool": check_bool,
}
_COLUMN_SET = frozenset(COLUMN_NAMES)
# (name, check, default, required) per column, in order: the hot loop of ``canonical``
_PLAN = tuple((c.name, _WIRE_CHECKS[c.kind], dict if c.kind == "object" else DEFAULTS.get(c.kind), c.required)
              for c in COLUMNS)
# every column in order with its default (the version: this one); what has no default is always given
# (a plain dict: unpacking one is twice as fast as a MappingProxyType; never changed)
_TEMPLATE: dict[str, Any] = {c.name: SCHEMA_VERSION if c.kind == "version" else DEFAULTS.get(c.kind) for c in COLUMNS}


def canonical(fields: Any) -> dict[str, Any]:
    """Validate a wire event (any earlier form included) -> its canonical dict, in COLUMNS order."""
    problems = Problems()
    if type(fields) is not dict:
        raise ContractError([("value", f"must be a JSON object, not {json_type(fields)}")])
    out: dict[str, Any] = {}
    get = fields.get
    for name, check, default, required in _PLAN:
        value = get(name)
        if value is None:
            if required:
                problems.add(name, "required")
            else:
                out[name] = default() if callable(default) else default
            continue
        out[name] = check(value, name, problems)
    if len(fields) > len(out) or problems:
        for name in fields:
            if name not in _COLUMN_SET:
                problems.add(name, "unknown field")
        problems.raise_if_any()
    return out


def decode_message(value: bytes | None) -> tuple[str, bytes]:
    """One Kafka message value -> ``(event_id, canonical bytes)``; ``ValueError`` names the reason.

    A canonical message (almost all: the collector wrote them) is returned as it is, its own bytes."""
    if value is not None:
        key = _canonical_message(value)
        if key is not None:
            return key, value
    return decode_by_rules(value)


def decode_by_rules(value: bytes | None) -> tuple[str, bytes]:
    """``decode_message`` without its fast path: the full rules for every message (the reference the
    fast path is tested against)."""
    if value is None:
        raise ValueError("empty message value (tombstone)")
    event = canonical(loads(value))
    return event["event_id"], dumps(event)


def encode_event(fields: dict[str, Any]) -> bytes:
    """Serialise an event dict (as built by ``make_event`` or ``canonical``) for Kafka."""
    return dumps(fields)


def make_event(
    *,
    type: str,
    footprint_time: datetime,
    received_at: datetime,
    event_id: uuid.UUID | str | None = None,
    event: str | None = None,
    method: str | None = None,
    link: str | None = None,
    user_id: str | None = None,
    anonymous_id: str | None = None,
    group_id: str | None = None,
    properties: dict[str, Any] | None = None,
    traits: dict[str, Any] | None = None,
    synthetic: bool = False,
    enriched: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build a wire dict from trusted values (no validation: use ``canonical`` for that); a column not
    named here has its default (``enriched`` sets the derived ones)."""
    return {
        **_TEMPLATE,
        "event_id": str(event_id or uuid.uuid4()),
        "type": type,
        "event": event or "",
        "method": method or "",
        "link": link or "",
        "user_id": user_id or "",
        "anonymous_id": anonymous_id or "",
        "group_id": group_id or "",
        "visitor_id": user_id or anonymous_id or "",
        "properties": properties or {},
        "traits": traits or {},
        "footprint_time": format_time(footprint_time),
        "received_at": format_time(received_at),
        "synthetic": synthetic,
        **(enriched or {}),
    }


def to_wire(inbound: dict[str, Any], event_id: str, received: str, enriched: Mapping[str, Any]) -> dict[str, Any]:
    """An accepted inbound event (``type`` and the columns its fields fill, canonical values) -> the wire
    dict: the columns the collector derives (link, method, visitor, times, the synthetic flag), the
    enriched ones, and every other column's default."""
    properties = inbound.get("properties") or {}
    traits = inbound.get("traits") or {}
    link = method = ""
    if inbound["type"] == "page" and isinstance(properties.get("path"), str):
        link = clean_text(properties["path"], TEXT_MAX_BYTES)
    if inbound["type"] == "page" and isinstance(properties.get("method"), str):
        method = clean_text(properties["method"], SHORT_MAX_BYTES)[:SHORT_MAX_CHARS]
    user_id, anonymous_id = inbound.get("user_id", ""), inbound.get("anonymous_id", "")
    return {
        **_TEMPLATE,
        **inbound,
        "event_id": event_id,
        "method": method,
        "link": link,
        "visitor_id": user_id or anonymous_id,
        "properties": properties,
        "traits": traits,
        "footprint_time": inbound.get("footprint_time") or received,
        "received_at": received,
        "synthetic": bool(properties.get("footprint_probe") or traits.get("footprint_probe")),
        **enriched,
    }
