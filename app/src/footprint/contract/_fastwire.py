"""``decode_message``'s fast path for messages already in canonical form: one msgspec (C) pass.

Almost every message the consumer reads was written by the collector, so it is already canonical.
``canonical_message`` recognises such a message in one pass of msgspec's decoder against a struct
derived from the field table (every column present, in order, with its kind's canonical shape) and
proves it by re-encoding: the message is canonical when the struct encodes back to exactly the same
bytes. It only ever says "canonical, here is the event id" or "not sure": anything else (an earlier
form, a non-canonical spelling, non-ASCII text, any refusal) goes through the full rules
(``wire.decode_by_rules``), which produce every canonical rewrite and every reason. So this module can make the consumer
faster, never make it accept or write anything else (``tests/unit/test_fastwire.py`` compares the
two paths on random input).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec

from footprint.contract.fields import (
    COLUMNS,
    EVENT_TYPES,
    MAX_TIME,
    MIN_TIME,
    SCHEMA_VERSION,
    SHORT_MAX_CHARS,
    TEXT_MAX_BYTES,
    Kind,
)
from footprint.contract.values import Problems, check_object, dumps, loads

# ASCII only (see canonical_message), so characters are bytes: the short fields' 200 characters are
# within their 256 bytes, and the long text's limit is its byte limit. msgspec parses ids and times
# in C; whether they were spelt canonically is what the re-encoding proves.
_KIND_TYPES: dict[Kind, Any] = {
    "uuid": uuid.UUID,
    "type": Literal[EVENT_TYPES],
    "short": Annotated[str, msgspec.Meta(max_length=SHORT_MAX_CHARS)],
    "text": Annotated[str, msgspec.Meta(max_length=TEXT_MAX_BYTES)],
    "object": msgspec.Raw,
    "time": datetime,
    "version": Literal[SCHEMA_VERSION],
    "bool": bool,
}
# every column required: a message without one is an earlier form, which the full rules rewrite
CanonicalEvent = msgspec.defstruct(
    "CanonicalEvent", [(c.name, _KIND_TYPES[c.kind]) for c in COLUMNS], forbid_unknown_fields=True,
)
_DECODER = msgspec.json.Decoder(CanonicalEvent)
_ENCODER = msgspec.json.Encoder()
_TIMES = tuple(c.name for c in COLUMNS if c.kind == "time")
_OBJECTS = tuple(c.name for c in COLUMNS if c.kind == "object")
_MIN_TIME, _MAX_TIME = MIN_TIME.replace(tzinfo=UTC), MAX_TIME.replace(tzinfo=UTC)
_EMPTY_OBJECT = b"{}"
# a canonical message starts with its id: {"event_id":"<36 characters>",...
assert COLUMNS[0].name == "event_id" and COLUMNS[0].kind == "uuid"
_ID = slice(len(b'{"event_id":"'), len(b'{"event_id":"') + 36)


def canonical_message(value: bytes) -> str | None:
    """The event id of ``value`` when it is an event in exactly its canonical form, else None.

    None means "not decided here" (the full rules decide), never "invalid".
    """
    # ASCII without \u escapes: no string can hold a NUL, a surrogate or a multi-byte character
    if not value.isascii() or b"\\u" in value:
        return None
    try:
        event = _DECODER.decode(value)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):  # deep nesting: the contract says why
        return None
    for name in _TIMES:
        # UTC ("Z" once re-encoded; msgspec writes six fraction digits unless there are none, which
        # the canonical form has, so a whole second goes the long way) within the contract's years
        stamp = getattr(event, name)
        if stamp.tzinfo is not UTC or not _MIN_TIME <= stamp < _MAX_TIME:
            return None
    for name in _OBJECTS:
        raw = bytes(getattr(event, name))
        if raw != _EMPTY_OBJECT and not _canonical_object(raw):
            return None
    if _ENCODER.encode(event) != value:  # spacing, key order, duplicate keys, spelling of ids, times...
        return None
    return value[_ID].decode()


def _canonical_object(raw: bytes) -> bool:
    """The contract's own rules for one object (properties, traits): storable and canonically spelt."""
    try:
        obj = loads(raw)
    except ValueError:
        return False
    problems = Problems()
    check_object(obj, "object", problems)
    return not problems and dumps(obj) == raw


# only the one field; the others are skipped by the decoder
_USER_ID: Any = msgspec.json.Decoder(msgspec.defstruct("UserIdOnly", [("user_id", str, "")]))


def user_id_of(doc: bytes) -> str:
    """The ``user_id`` of a canonical document (as ``decode_message`` returns it), other fields skipped."""
    user_id: str = _USER_ID.decode(doc).user_id
    return user_id
