"""The event contract: the Kafka message (``Event``) and the inbound Segment-style batch."""

from __future__ import annotations

import json
import math
import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

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


def truncate_utf8(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` UTF-8 bytes, on a character boundary."""
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) <= max_bytes:
        return text
    return raw[:max_bytes].decode("utf-8", "ignore")


def _max_bytes(limit: int) -> Any:
    def check(value: str) -> str:
        if len(value.encode("utf-8", "surrogatepass")) > limit:
            raise ValueError(f"String should have at most {limit} bytes (UTF-8)")
        return value

    return AfterValidator(check)


Short = Annotated[str, StringConstraints(max_length=SHORT_MAX_CHARS), _max_bytes(SHORT_MAX_BYTES)]
Text = Annotated[str, _max_bytes(TEXT_MAX_BYTES)]


class Event(BaseModel):
    """One event as carried on the Kafka topic (JSON value, key = event_id).

    Strict: no type coercion (a time must be an ISO-8601 string with an offset, a number stays a
    number), so the stores, which parse the same JSON text, read exactly what was validated.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    schema_version: Literal[1]
    event_id: uuid.UUID
    type: Literal["page", "track", "identify", "group"]
    event: Short | None = None
    method: Short | None = None
    link: Text | None = None
    user_id: Short | None = None
    anonymous_id: Short | None = None
    group_id: Short | None = None
    visitor_id: Short
    properties: dict[str, Any] = Field(default_factory=dict)
    traits: dict[str, Any] = Field(default_factory=dict)
    footprint_time: AwareDatetime
    received_at: AwareDatetime
    synthetic: bool = False

    @model_validator(mode="after")
    def _storable_times(self) -> Event:
        for name in ("footprint_time", "received_at"):
            value: datetime = getattr(self, name)
            if not MIN_TIME <= value < MAX_TIME:
                raise ValueError(f"{name}: outside {MIN_TIME.year}..{MAX_TIME.year - 1}")
        return self


MIN_TIME = datetime(2000, 1, 1, tzinfo=UTC)
MAX_TIME = datetime(2200, 1, 1, tzinfo=UTC)
# JSON escapes neither store accepts in text: NUL, and UTF-16 surrogates that do not form a pair
_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_LONE_SURROGATE = re.compile(
    rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})|(?<![0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)


def _finite(value: Any) -> bool:
    """No inf/NaN anywhere (JSON overflow like 1e999 parses to inf; PostgreSQL's jsonb refuses it)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def decode_event(value: bytes | None) -> Event:
    """Parse and validate one Kafka message value; raises ``ValueError`` with the reason."""
    if value is None:
        raise ValueError("empty message value (tombstone)")
    try:
        event = Event.model_validate_json(value)
    except ValidationError as exc:
        raise ValueError(format_validation_error(exc)) from None
    for name in ("properties", "traits"):
        if not _finite(getattr(event, name)):
            raise ValueError(f"{name}: a number is out of range (infinite or NaN)")
    if b"\\u" in value:
        if b"\\u0000" in value and _NUL.search(value):
            raise ValueError("value: contains a NUL character (\\u0000), which the stores cannot hold")
        if _LONE_SURROGATE.search(value):
            raise ValueError("value: contains an unpaired UTF-16 surrogate escape")
    return event


def iso(ts: datetime) -> str:
    """UTC ISO-8601 with microseconds and an explicit offset."""
    return ts.astimezone(UTC).isoformat(timespec="microseconds")


def encode_event(fields: dict[str, Any]) -> bytes:
    """Serialise an event dict (as built by ``make_event``) for Kafka."""
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()


def make_event(
    *,
    type: str,
    footprint_time: datetime,
    received_at: datetime,
    event_id: uuid.UUID | None = None,
    event: str | None = None,
    method: str | None = None,
    link: str | None = None,
    user_id: str | None = None,
    anonymous_id: str | None = None,
    group_id: str | None = None,
    properties: dict[str, Any] | None = None,
    traits: dict[str, Any] | None = None,
    synthetic: bool = False,
) -> dict[str, Any]:
    """Build the wire dict of an event (fast path: no model construction)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "event_id": str(event_id or uuid.uuid4()),
        "type": type,
        "event": event,
        "method": method,
        "link": link,
        "user_id": user_id,
        "anonymous_id": anonymous_id,
        "group_id": group_id,
        "visitor_id": user_id or anonymous_id or "",
        "properties": properties or {},
        "traits": traits or {},
        "footprint_time": iso(footprint_time),
        "received_at": iso(received_at),
        "synthetic": synthetic,
    }


# ---------------------------------------------------------------- inbound API (Segment style)


class _Inbound(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=False)

    user_id: Short | None = Field(default=None, alias="userId", min_length=1)
    anonymous_id: Short | None = Field(default=None, alias="anonymousId", min_length=1)
    timestamp: AwareDatetime | None = None
    message_id: Short | None = Field(default=None, alias="messageId", min_length=1)

    @model_validator(mode="after")
    def _identity(self) -> _Inbound:
        if not (self.user_id or self.anonymous_id):
            raise ValueError("userId or anonymousId is required")
        return self


class TrackIn(_Inbound):
    type: Literal["track"]
    event: Short = Field(min_length=1)
    properties: dict[str, Any] = Field(default_factory=dict)


class IdentifyIn(_Inbound):
    type: Literal["identify"]
    traits: dict[str, Any] = Field(default_factory=dict)


class GroupIn(_Inbound):
    type: Literal["group"]
    group_id: Short = Field(alias="groupId", min_length=1)
    traits: dict[str, Any] = Field(default_factory=dict)


class PageIn(_Inbound):
    type: Literal["page"]
    name: Short | None = None
    properties: dict[str, Any] = Field(default_factory=dict)


InboundEvent = Annotated[TrackIn | IdentifyIn | GroupIn | PageIn, Field(discriminator="type")]


class Batch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch: list[InboundEvent] = Field(min_length=1)


def json_depth(value: Any) -> int:
    """Nesting depth of a JSON value: scalars 0, ``{}``/``[]`` 1, ``{"a": {}}`` 2."""
    if isinstance(value, dict):
        return 1 + max((json_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((json_depth(v) for v in value), default=0)
    return 0


def format_loc(loc: tuple[int | str, ...]) -> str:
    """``('batch', 0, 'track', 'userId')`` -> ``batch[0].userId`` (drops union tags)."""
    out = ""
    prev_int = False
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            prev_int = True
            continue
        if prev_int and part in EVENT_TYPES:
            prev_int = False
            continue
        prev_int = False
        out += f".{part}" if out else part
    return out or "body"


def format_validation_error(exc: ValidationError) -> str:
    return "; ".join(f"{format_loc(tuple(e['loc']))}: {e['msg']}" for e in exc.errors())


def inbound_to_wire(item: TrackIn | IdentifyIn | GroupIn | PageIn, received_at: datetime) -> dict[str, Any]:
    """Map a validated inbound event to the wire dict."""
    properties: dict[str, Any] = getattr(item, "properties", {})
    traits: dict[str, Any] = getattr(item, "traits", {})
    synthetic = bool(properties.get("footprint_probe") or traits.get("footprint_probe"))
    event_id = None
    if item.message_id:
        event_id = uuid.uuid5(MESSAGE_ID_NAMESPACE, item.message_id)
    link = None
    name = None
    if isinstance(item, PageIn):
        path = properties.get("path")
        link = truncate_utf8(str(path), TEXT_MAX_BYTES) if path is not None else None
        name = item.name
    return make_event(
        type=item.type,
        event_id=event_id,
        event=item.event if isinstance(item, TrackIn) else name,
        link=link,
        user_id=item.user_id,
        anonymous_id=item.anonymous_id,
        group_id=item.group_id if isinstance(item, GroupIn) else None,
        properties=properties,
        traits=traits,
        footprint_time=item.timestamp or received_at,
        received_at=received_at,
        synthetic=synthetic,
    )
