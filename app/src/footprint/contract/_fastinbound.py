"""``validate_batch``'s fast path for plain inbound batches: one msgspec (C) pass over the body.

``plain_batch`` takes the body of ``POST /v1/events`` (or the snippet's batch) and returns the
events ready for Kafka when the batch is plainly valid: ASCII JSON without ``\\u`` escapes (so no
string can hold a NUL, a surrogate or a multi-byte character), every event of a known type with
known fields of the right kinds and sizes (structs derived from ``inbound.INBOUND_COMMON`` and
``inbound.INBOUND_TYPES``), objects within ``MAX_DEPTH``. It builds each wire event with the
contract's own ``wire.to_wire`` and enrichment, so the events are the ones ``validate_batch`` builds.
Anything else returns None and the collector runs ``inbound.validate_batch``, which decides and
names every problem: this module can only make an accepted batch cheaper, never accept another
one (``tests/unit/test_fastinbound.py`` compares the two on random batches).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Union

import msgspec

from footprint.contract.fields import MAX_DEPTH, NOT_ENRICHED, SHORT_MAX_CHARS
from footprint.contract.inbound import INBOUND_COMMON, INBOUND_TYPES, InField
from footprint.contract.values import Problems, check_time, format_time, message_id_uuid, random_uuids
from footprint.contract.wire import encode_event, to_wire

Wire = tuple[str, bytes, str]  # (event_id, canonical bytes, type): what the producer sends
Enrich = Callable[[dict[str, Any]], dict[str, Any]]

# ASCII only: characters are bytes, so 1..200 characters are within the 256-byte cap. null is "absent",
# as in the contract; the times are strings here (the contract's own parser reads them).
_KIND_TYPES: dict[str, Any] = {
    "short": Annotated[str, msgspec.Meta(min_length=1, max_length=SHORT_MAX_CHARS)] | None,
    "object": dict[str, Any] | None,
    "time": str | None,
}


def _event_struct(type_: str, fields: tuple[InField, ...]) -> Any:
    return msgspec.defstruct(
        f"Inbound_{type_}", [(f.name, _KIND_TYPES[f.kind], None) for f in fields],
        tag_field="type", tag=type_, forbid_unknown_fields=True,
    )


_FIELDS: dict[str, tuple[InField, ...]] = {t: (*INBOUND_COMMON, *extra) for t, extra in INBOUND_TYPES.items()}
_STRUCTS = {t: _event_struct(t, fields) for t, fields in _FIELDS.items()}
# a list of any of them (built at run time from the contract's types, hence Any to the type checker)
_ANY_EVENT: Any = Union[tuple(_STRUCTS.values())]  # noqa: UP007
_BATCH: Any = Annotated[list[_ANY_EVENT], msgspec.Meta(min_length=1)]
InboundBatch: Any = msgspec.defstruct("InboundBatch", [("batch", _BATCH)], forbid_unknown_fields=True)
_DECODER = msgspec.json.Decoder(InboundBatch)


@dataclass(frozen=True)
class _Plan:
    """What ``_wire`` does with one inbound type's fields, worked out once."""

    type: str
    required: tuple[str, ...]
    objects: tuple[tuple[str, bool], ...]  # (name, stored in a column)
    times: tuple[str, ...]
    columns: tuple[tuple[str, str], ...]  # (inbound name, wire column)


_PLANS = {
    _STRUCTS[t]: _Plan(
        type=t,
        required=tuple(f.name for f in fields if f.required),
        objects=tuple((f.name, f.column is not None) for f in fields if f.kind == "object"),
        times=tuple(f.name for f in fields if f.kind == "time"),
        columns=tuple((f.name, f.column) for f in fields if f.column),
    )
    for t, fields in _FIELDS.items()
}
_ENCODER = msgspec.json.Encoder()
_INT64 = range(-(2**63), 2**63)


def _object_shape(obj: dict[str, Any]) -> tuple[bool, bool]:
    """(within MAX_DEPTH, msgspec spells it as the contract does: no float, no integer beyond 64 bits).

    Iterative, like ``values.check_object`` (strings need no check here: the body is plain ASCII).
    """
    plain = True
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return False, False
        for item in node.values() if type(node) is dict else node:
            kind = type(item)
            if kind is dict or kind is list:
                stack.append((item, depth + 1))
            elif kind is float or (kind is int and item not in _INT64):
                plain = False
    return True, plain


def plain_batch(body: bytes, received_at: datetime, max_events: int, enrich: Enrich | None) -> list[Wire] | None:
    """The batch's events for Kafka when it is plainly valid, else None (``validate_batch`` decides)."""
    if not body.isascii() or b"\\u" in body:
        return None
    try:
        events = _DECODER.decode(body).batch
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):  # deep nesting: the contract says why
        return None
    if len(events) > max_events:
        return None
    received = format_time(received_at)
    problems = Problems()
    out: list[Wire] = []
    for event, random_id in zip(events, random_uuids(len(events)), strict=True):
        wire = _wire(event, random_id, received, problems, enrich)
        if wire is None or problems:
            return None
        out.append(wire)
    return out


def _wire(event: Any, random_id: str, received: str, problems: Problems, enrich: Enrich | None) -> Wire | None:
    plan = _PLANS[type(event)]
    values = msgspec.structs.asdict(event)  # inbound name -> value (None: absent)
    if not (values["userId"] or values["anonymousId"]):
        return None
    for name in plan.required:
        if values[name] is None:
            return None
    plain = True
    for name, stored in plan.objects:
        value = values[name]
        if value:
            ok, plain_object = _object_shape(value)
            if not ok:
                return None
            plain = plain and (plain_object or not stored)  # the context itself is not stored
    for name in plan.times:
        if values[name] is not None:  # the contract's parser: any RFC 3339 -> canonical
            values[name] = check_time(values[name], name, problems)
    wire: dict[str, Any] = {"type": plan.type}
    for name, column in plan.columns:
        if values[name] is not None:
            wire[column] = values[name]
    context = values["context"]
    enriched = enrich(context if context is not None else {}) if enrich else NOT_ENRICHED
    message_id = values["messageId"]
    out = to_wire(wire, message_id_uuid(message_id) if message_id else random_id, received, enriched)
    return out["event_id"], _ENCODER.encode(out) if plain else encode_event(out), plan.type
