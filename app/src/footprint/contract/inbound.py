"""The inbound (Segment-style) event: the fields clients send, derived from the field table, and the rules
``POST /v1/events`` (and the snippet, and the middleware's sender) applies to a whole batch.

Each column's ``inbound`` entries say in which event types a client sends it and under which name; a
field sent in every type is common (``INBOUND_COMMON``, with the two fields that fill no column:
``messageId`` and ``context``). ``validate_batch`` turns a batch into canonical wire events or names
every problem; ``plain_batch`` (``_fastinbound``) is its fast path for a plainly valid batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from footprint.contract.fields import ALL, COLUMNS, NOT_ENRICHED
from footprint.contract.values import (
    ContractError,
    Problems,
    check_object,
    check_short,
    check_time,
    format_time,
    json_type,
    message_id_uuid,
    random_uuids,
)
from footprint.contract.wire import to_wire

InboundKind = Literal["short", "object", "time"]
# the kinds a client may send (a column of another kind cannot be inbound: a KeyError on import)
_INBOUND_KINDS: dict[str, InboundKind] = {"short": "short", "object": "object", "time": "time"}


@dataclass(frozen=True)
class InField:
    """One field of an inbound (Segment-style) event and the wire column it fills."""

    name: str
    kind: InboundKind
    column: str | None  # None: used to derive something else (messageId -> event_id)
    required: bool = False
    doc: str = ""


# the inbound types in the order the API documents them
INBOUND_TYPE_NAMES = ("track", "identify", "group", "page")
# sent in every inbound event, filling no column
INBOUND_ONLY: tuple[InField, ...] = (
    InField("messageId", "short", None, doc="idempotency key: a retry with the same messageId is stored once"),
    InField("context", "object", None,
            doc="Segment's context: userAgent, page.referrer, page.search or page.url, campaign"
                " {source, medium, name, term, content}, location.country (a two-letter code), ip; the collector"
                " derives the referrer host, UTM, browser/OS/device, a bot flag and the country (else the"
                " client address's) from it and stores only those"),
)


def _inbound_fields(type_: str | None) -> tuple[InField, ...]:
    """The columns' inbound fields of ``type_`` only (None: the common ones), in the table's order."""
    out = []
    for c in COLUMNS:
        for i in c.inbound:
            common = set(i.types) == set(ALL)
            if (common and type_ is None) or (not common and type_ in i.types):
                out.append(InField(i.name or c.segment_name, _INBOUND_KINDS[c.kind], c.name, i.required, i.doc))
    return tuple(out)


INBOUND_COMMON: tuple[InField, ...] = (*_inbound_fields(None), *INBOUND_ONLY)
INBOUND_TYPES: dict[str, tuple[InField, ...]] = {t: _inbound_fields(t) for t in INBOUND_TYPE_NAMES}


def _inbound_value(f: InField, value: Any, where: str, problems: Problems) -> Any:
    if f.kind == "short":
        return check_short(value, where, problems, min_chars=1)
    if f.kind == "object":
        return check_object(value, where, problems)
    return check_time(value, where, problems)


def validate_batch(raw: Any, received_at: datetime, max_events: int,
                   enrich: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """A whole inbound batch -> canonical wire events; ``ContractError`` lists every bad field.

    All or nothing: nothing is returned unless every event is valid. ``enrich`` (``footprint.enrich``, or the
    collector's ``countries.located``) maps an event's ``context`` (``{}`` when it has none: the country may
    still come from the client's address) to the ENRICHED_COLUMNS; without it they keep their defaults.
    """
    problems = Problems()
    if not isinstance(raw, dict):
        raise ContractError([("body", f"must be a JSON object, not {json_type(raw)}")])
    for key in raw:
        if key != "batch":
            problems.add(str(key), "unknown field")
    batch = raw.get("batch")
    if not isinstance(batch, list) or not batch:
        problems.add("batch", "required: a non-empty array of events")
        problems.raise_if_any()
        return []
    if len(batch) > max_events:
        raise ContractError([("batch", f"more than {max_events} events")])
    received = format_time(received_at)
    out = []
    for i, item in enumerate(batch):
        out.append(_inbound_event(item, f"batch[{i}]", received, problems, enrich))
    problems.raise_if_any()
    return out


def _inbound_event(item: Any, where: str, received: str, problems: Problems,
                   enrich: Callable[[dict[str, Any]], dict[str, Any]] | None) -> dict[str, Any]:
    if not isinstance(item, dict):
        problems.add(where, f"must be an object, not {json_type(item)}")
        return {}
    type_ = item.get("type")
    if not isinstance(type_, str) or type_ not in INBOUND_TYPES:  # (a dict is unhashable: found by schemathesis)
        problems.add(f"{where}.type", f"must be one of {', '.join(INBOUND_TYPES)}")
        return {}
    fields = {f.name: f for f in (*INBOUND_COMMON, *INBOUND_TYPES[type_])}
    before = len(problems.items) + problems.more
    values: dict[str, Any] = {}
    for key, value in item.items():
        if key == "type":
            continue
        f = fields.get(key)
        if f is None:
            problems.add(f"{where}.{key}", "unknown field")
        elif value is not None:
            values[key] = _inbound_value(f, value, f"{where}.{key}", problems)
    for f in fields.values():
        if f.required and f.name not in values:
            problems.add(f"{where}.{f.name}", "required")
    if not (values.get("userId") or values.get("anonymousId")):
        problems.add(where, "userId or anonymousId is required")
    if len(problems.items) + problems.more > before:
        return {}  # refused: build nothing from values that broke a rule
    wire = {"type": type_}
    for name, value in values.items():
        column = fields[name].column
        if column:
            wire[column] = value
    enriched = enrich(values.get("context", {})) if enrich else NOT_ENRICHED
    message_id = values.get("messageId")
    return to_wire(wire, message_id_uuid(message_id) if message_id else random_uuids(1)[0], received, enriched)
