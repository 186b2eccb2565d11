"""The event contract: fields, rules and the canonical wire form, defined once.

Everything that reads or writes an event derives from this module:

- the collector validates an inbound (Segment-style) batch with ``validate_batch`` and produces
  the canonical wire form; its OpenAPI request body is ``inbound_json_schema()``;
- the consumer reads any message (canonical, or an earlier form still in a topic) with
  ``decode_message``, which applies the same rules and returns the same canonical bytes;
- the sinks take their column lists from ``COLUMNS``; a test compares ``COLUMNS`` with the
  migrations of both stores.

The canonical form: ids as lower-case hyphenated UUIDs, times in UTC with exactly six fraction
digits and a ``Z`` (``2026-12-01T10:00:00.000000Z``), absent strings as ``""``, numbers finite
(floats as the shortest text that round-trips), no NUL and no unpaired surrogate in any string,
compact UTF-8 JSON. Both stores receive these exact values, so they cannot disagree on what an
event says. No recursion anywhere: nesting is bounded by ``MAX_DEPTH`` and checked iteratively.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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


@dataclass(frozen=True)
class Column:
    """One field of the wire event and the column both stores hold it in (same name; same order,
    except that the store-only columns sit before the ones later migrations added)."""

    name: str
    kind: Kind
    pg_type: str
    ch_type: str
    required: bool = False  # must be present in a wire message (the others default)


# derived at the collector from the inbound event's context (footprint.enrich) and, for the country, from the
# client's address (footprint.countries); added by migration 0004_enrichment, the country by 0008_country
_ENRICHED: tuple[Column, ...] = (
    Column("referrer_host", "short", "text", "String"),
    Column("utm_source", "short", "text", "String"),
    Column("utm_medium", "short", "text", "String"),
    Column("utm_campaign", "short", "text", "String"),
    Column("utm_term", "short", "text", "String"),
    Column("utm_content", "short", "text", "String"),
    Column("browser", "short", "text", "LowCardinality(String)"),
    Column("os", "short", "text", "LowCardinality(String)"),
    Column("device", "short", "text", "LowCardinality(String)"),
    Column("bot", "bool", "boolean", "Bool"),
    # ISO 3166-1 alpha-2, "" unknown (footprint.countries); added by migration 0008_country (ClickHouse 0007)
    Column("country", "short", "text", "LowCardinality(String)"),
)
COLUMNS: tuple[Column, ...] = (
    Column("event_id", "uuid", "uuid", "UUID", required=True),
    Column("type", "type", "text", "LowCardinality(String)", required=True),
    Column("event", "short", "text", "String"),
    Column("method", "short", "text", "LowCardinality(String)"),
    Column("link", "text", "text", "String"),
    Column("user_id", "short", "text", "String"),
    Column("anonymous_id", "short", "text", "String"),
    Column("group_id", "short", "text", "String"),
    Column("visitor_id", "short", "text", "String", required=True),
    Column("properties", "object", "jsonb", "String"),
    Column("traits", "object", "jsonb", "String"),
    Column("footprint_time", "time", "timestamptz", "DateTime64(6, 'UTC')", required=True),
    Column("received_at", "time", "timestamptz", "DateTime64(6, 'UTC')", required=True),
    Column("schema_version", "version", "smallint", "UInt16", required=True),
    Column("synthetic", "bool", "boolean", "Bool"),
    *_ENRICHED,
)
ENRICHED_COLUMNS: tuple[str, ...] = tuple(c.name for c in _ENRICHED)
COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)
# columns only the stores have (filled by the store itself)
STORE_ONLY_COLUMNS = ("ingested_at",)
_DEFAULTS: dict[Kind, Any] = {"short": "", "text": "", "bool": False}  # objects: a new {} each time
_NOT_ENRICHED: dict[str, Any] = {c.name: _DEFAULTS[c.kind] for c in _ENRICHED}


class ContractError(ValueError):
    """An event (or batch) breaks the contract; ``problems`` are ``(where, what)`` pairs."""

    def __init__(self, problems: list[tuple[str, str]], more: int = 0) -> None:
        self.problems = problems
        self.more = more
        text = "; ".join(f"{where}: {what}" for where, what in problems)
        super().__init__(text + (f"; and {more} more" if more else ""))


class _Problems:
    """Collects problems up to ``MAX_PROBLEMS``; counts the rest."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []
        self.more = 0

    def add(self, where: str, what: str) -> None:
        if len(self.items) < MAX_PROBLEMS:
            # ``where`` may hold a client's key: make it printable whatever it holds (a lone surrogate)
            self.items.append((where.encode("utf-8", "backslashreplace").decode("utf-8")[:300], what))
        else:
            self.more += 1

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self) -> None:
        if self.items:
            raise ContractError(self.items, self.more)


# ------------------------------------------------------------------------------------- values


def _text_problem(value: str) -> str | None:
    """Why neither store can hold ``value`` as text, or None."""
    if "\x00" in value:
        return "contains a NUL character (\\u0000), which the stores cannot hold"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains an unpaired UTF-16 surrogate, which is not valid Unicode"
    return None


def check_text(value: Any, where: str, problems: _Problems, *, max_bytes: int, max_chars: int | None = None,
               min_chars: int = 0) -> str:
    if type(value) is not str:
        problems.add(where, f"must be a string, not {_json_type(value)}")
        return ""
    if value.isascii():  # the common case, cheaply: no surrogate possible, one byte per character
        size = len(value)
        problem = "contains a NUL character (\\u0000), which the stores cannot hold" if "\x00" in value else None
    else:
        problem = _text_problem(value)
        size = len(value.encode("utf-8")) if problem is None else 0
    if problem:
        problems.add(where, problem)
    elif max_chars is not None and len(value) > max_chars:
        problems.add(where, f"at most {max_chars} characters")
    elif size > max_bytes:
        problems.add(where, f"at most {max_bytes} bytes (UTF-8)")
    elif len(value) < min_chars:
        problems.add(where, "must not be empty")
    return value


def _short(value: Any, where: str, problems: _Problems, min_chars: int = 0) -> str:
    if type(value) is str and value.isascii() and min_chars <= len(value) <= SHORT_MAX_CHARS and "\x00" not in value:
        return value  # the common case, without the general checks (ASCII: bytes == characters < 256)
    return check_text(value, where, problems, max_bytes=SHORT_MAX_BYTES, max_chars=SHORT_MAX_CHARS,
                      min_chars=min_chars)


_TIME = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,32}))?(?:([Zz])|([+-])(\d\d):(\d\d))",
    re.ASCII,  # \d: 0-9 only
)


def parse_time(value: Any) -> datetime:
    """An RFC 3339 date-time with an offset -> naive UTC ``datetime``, cut to microseconds.

    Raises ``ValueError`` naming what is wrong. Never overflows (the year is checked before any
    arithmetic), never rounds (extra fraction digits are cut, so a time never moves to the next
    second, day or year).
    """
    if not isinstance(value, str):
        raise ValueError(f"must be an RFC 3339 date-time string, not {_json_type(value)}")
    m = _TIME.fullmatch(value)
    if m is None:
        raise ValueError("not an RFC 3339 date-time with an offset (e.g. 2026-12-01T10:00:00Z)")
    year = int(m.group(1))
    if not MIN_TIME.year - 1 <= year <= MAX_TIME.year:
        raise ValueError(f"outside {MIN_TIME.year}..{MAX_TIME.year - 1} (UTC)")
    micro = int((m.group(7) or "")[:6].ljust(6, "0"))
    try:
        local = datetime(year, int(m.group(2)), int(m.group(3)), int(m.group(4)), int(m.group(5)),
                         int(m.group(6)), micro)
    except ValueError as exc:
        raise ValueError(f"not a valid date-time ({exc})") from None
    if m.group(8) is None:
        hours, minutes = int(m.group(10)), int(m.group(11))
        if hours > 23 or minutes > 59:
            raise ValueError("UTC offset out of range (-23:59..+23:59)")
        offset = timedelta(hours=hours, minutes=minutes)
        local = local - offset if m.group(9) == "+" else local + offset
    if not MIN_TIME <= local < MAX_TIME:
        raise ValueError(f"outside {MIN_TIME.year}..{MAX_TIME.year - 1} (UTC)")
    return local


def format_time(utc: datetime) -> str:
    """The one canonical spelling: ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (``utc`` naive UTC or aware)."""
    if utc.tzinfo is not None:
        utc = utc.astimezone(UTC).replace(tzinfo=None)
    return (f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:"
            f"{utc.second:02d}.{utc.microsecond:06d}Z")


def kafka_timestamp(received_at: datetime) -> int:
    """The timestamp of an event's Kafka message: its ``received_at`` (aware) in whole milliseconds since
    the epoch, so that Kafka's hour of a message is the stores' hour of its event (``footprint audit``).
    Integer arithmetic: a float would round 09:59:59.9999995 up into the next hour."""
    return (received_at - _EPOCH) // _MILLISECOND


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
_CANONICAL_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", re.ASCII)
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _time(value: Any, where: str, problems: _Problems) -> str:
    if type(value) is str and _CANONICAL_TIME.fullmatch(value):  # fast path: already canonical
        try:
            if MIN_TIME <= datetime.fromisoformat(value[:26]) < MAX_TIME:
                return value
        except ValueError:
            pass  # e.g. February 30th: the full parser names it
    try:
        return format_time(parse_time(value))
    except ValueError as exc:
        problems.add(where, str(exc))
        return ""


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, dict) else type(value).__name__


def check_object(value: Any, where: str, problems: _Problems) -> dict[str, Any]:
    """A JSON object both stores can hold: depth <= MAX_DEPTH, finite numbers, storable text.

    Iterative (an explicit stack), so no input can exhaust the interpreter's recursion limit.
    """
    if not isinstance(value, dict):
        problems.add(where, f"must be an object, not {_json_type(value)}")
        return {}
    stack: list[tuple[Any, int, str]] = [(value, 1, where)]
    while stack:
        node, depth, path = stack.pop()
        if depth > MAX_DEPTH:
            problems.add(where, f"nesting deeper than {MAX_DEPTH}")
            return value
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, item in items:
            if isinstance(key, str):
                problem = _text_problem(key)
                if problem:
                    problems.add(f"{path} (a key)", problem)
            if isinstance(item, str):
                problem = _text_problem(item)
                if problem:
                    problems.add(_child(path, key), problem)
            elif isinstance(item, dict | list):
                stack.append((item, depth + 1, _child(path, key)))
            elif isinstance(item, float) and not math.isfinite(item):
                problems.add(_child(path, key), "a number is out of range (infinite or NaN)")
            elif not (item is None or isinstance(item, bool | int | float)):
                problems.add(_child(path, key), f"not a JSON value ({type(item).__name__})")
    return value


def _child(path: str, key: Any) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}"


# ------------------------------------------------------------------------------------- JSON


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text[:40]}")
    return value


def loads(data: bytes | str) -> Any:
    """Parse JSON text (UTF-8 only) with the contract's number rules; ``ValueError`` says why not."""
    if isinstance(data, bytes | bytearray):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        return _DECODER.decode(data)
    except RecursionError:
        raise ValueError("nesting too deep") from None
    except ValueError as exc:  # JSONDecodeError, the hooks, int digit limits
        raise ValueError(f"not valid JSON: {exc}") from None


def dumps(value: Any) -> bytes:
    """The canonical encoding: compact UTF-8 JSON, no NaN (the contract has already refused it)."""
    return _ENCODER.encode(value).encode("utf-8")


# one decoder and one encoder (json.loads/dumps with options build a new one on every call)
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


# ------------------------------------------------------------------------------------- wire


def _canonical_uuid(value: Any, where: str, problems: _Problems) -> str:
    if type(value) is str and _CANONICAL_UUID.fullmatch(value):
        return value
    if isinstance(value, str):
        try:
            return str(uuid.UUID(value))
        except ValueError:
            pass
    problems.add(where, "must be a UUID")
    return ""


def canonical(fields: Any) -> dict[str, Any]:
    """Validate a wire event (any earlier form included) -> its canonical dict, in COLUMNS order."""
    problems = _Problems()
    if type(fields) is not dict:
        raise ContractError([("value", f"must be a JSON object, not {_json_type(fields)}")])
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


def _check_type(value: Any, where: str, problems: _Problems) -> str:
    if value not in EVENT_TYPES:
        problems.add(where, f"must be one of {', '.join(EVENT_TYPES)}")
    return str(value)


def _check_version(value: Any, where: str, problems: _Problems) -> int:
    if value != SCHEMA_VERSION or isinstance(value, bool):
        problems.add(where, f"must be {SCHEMA_VERSION}")
    return SCHEMA_VERSION


def _check_bool(value: Any, where: str, problems: _Problems) -> bool:
    if not isinstance(value, bool):
        problems.add(where, "must be true or false")
    return bool(value)


def _check_long(value: Any, where: str, problems: _Problems) -> str:
    return check_text(value, where, problems, max_bytes=TEXT_MAX_BYTES)


_WIRE_CHECKS: dict[Kind, Callable[[Any, str, _Problems], Any]] = {
    "uuid": _canonical_uuid,
    "type": _check_type,
    "short": _short,
    "text": _check_long,
    "object": check_object,
    "time": _time,
    "version": _check_version,
    "bool": _check_bool,
}
_COLUMN_SET = frozenset(COLUMN_NAMES)
# (name, check, default, required) per column, in order: the hot loop of ``canonical``
_PLAN = tuple((c.name, _WIRE_CHECKS[c.kind], dict if c.kind == "object" else _DEFAULTS.get(c.kind), c.required)
              for c in COLUMNS)


def decode_message(value: bytes | None) -> tuple[str, bytes]:
    """One Kafka message value -> ``(event_id, canonical bytes)``; ``ValueError`` names the reason."""
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
    """Build a wire dict from trusted values (no validation: use ``canonical`` for that)."""
    return {
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
        "schema_version": SCHEMA_VERSION,
        "synthetic": synthetic,
        **_NOT_ENRICHED,
        **(enriched or {}),
    }


def truncate_utf8(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` UTF-8 bytes, on a character boundary."""
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) <= max_bytes:
        return text
    return raw[:max_bytes].decode("utf-8", "ignore")


def clean_text(text: str, max_bytes: int) -> str:
    """Make untrusted text storable instead of refusing it (for page events, which must never fail):
    NUL and unpaired surrogates become U+FFFD, then the text is cut to ``max_bytes``."""
    if text.isascii() and len(text) <= max_bytes and "\x00" not in text:
        return text  # the common case, at no cost
    text = text.replace("\x00", "\ufffd")
    if _text_problem(text):
        text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return truncate_utf8(text, max_bytes)


# ------------------------------------------------------------------------------------- inbound


@dataclass(frozen=True)
class InField:
    """One field of an inbound (Segment-style) event and the wire column it fills."""

    name: str
    kind: Literal["short", "object", "time"]
    column: str | None  # None: used to derive something else (messageId -> event_id)
    required: bool = False
    doc: str = ""


INBOUND_COMMON: tuple[InField, ...] = (
    InField("userId", "short", "user_id", doc="your id of the user (userId or anonymousId is required)"),
    InField("anonymousId", "short", "anonymous_id", doc="an id of a visitor who is not signed in"),
    InField("timestamp", "time", "footprint_time",
            doc="RFC 3339 with an offset, 2000..2199 UTC; fractions beyond microseconds are cut; default: now"),
    InField("messageId", "short", None, doc="idempotency key: a retry with the same messageId is stored once"),
    InField("context", "object", None,
            doc="Segment's context: userAgent, page.referrer, page.search or page.url, campaign"
                " {source, medium, name, term, content}, location.country (a two-letter code), ip; the collector"
                " derives the referrer host, UTM, browser/OS/device, a bot flag and the country (else the"
                " client address's) from it and stores only those"),
)
INBOUND_TYPES: dict[str, tuple[InField, ...]] = {
    "track": (InField("event", "short", "event", required=True, doc="the action's name"),
              InField("properties", "object", "properties")),
    "identify": (InField("traits", "object", "traits"),),
    "group": (InField("groupId", "short", "group_id", required=True),
              InField("traits", "object", "traits")),
    "page": (InField("name", "short", "event", doc="page name"),
             InField("properties", "object", "properties",
                     doc="properties.path becomes the event's link, properties.method its HTTP method")),
}


def _inbound_value(f: InField, value: Any, where: str, problems: _Problems) -> Any:
    if f.kind == "short":
        return _short(value, where, problems, min_chars=1)
    if f.kind == "object":
        return check_object(value, where, problems)
    return _time(value, where, problems)


def validate_batch(raw: Any, received_at: datetime, max_events: int,
                   enrich: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """A whole inbound batch -> canonical wire events; ``ContractError`` lists every bad field.

    All or nothing: nothing is returned unless every event is valid. ``enrich`` (``footprint.enrich``, or the
    collector's ``countries.located``) maps an event's ``context`` (``{}`` when it has none: the country may
    still come from the client's address) to the ENRICHED_COLUMNS; without it they keep their defaults.
    """
    problems = _Problems()
    if not isinstance(raw, dict):
        raise ContractError([("body", f"must be a JSON object, not {_json_type(raw)}")])
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


def _inbound_event(item: Any, where: str, received: str, problems: _Problems,
                   enrich: Callable[[dict[str, Any]], dict[str, Any]] | None) -> dict[str, Any]:
    if not isinstance(item, dict):
        problems.add(where, f"must be an object, not {_json_type(item)}")
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
    enriched = enrich(values.get("context", {})) if enrich else _NOT_ENRICHED
    message_id = values.get("messageId")
    return _to_wire(wire, message_id_uuid(message_id) if message_id else random_uuids(1)[0], received, enriched)


# uuid's version and variant bits, as uuid.UUID(version=...) sets them
_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID_VARIANT = 0x8000 << 48


def _uuid_string(value: int) -> str:
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def random_uuids(n: int) -> list[str]:
    """``n`` random (version 4) UUIDs as canonical strings: ``str(uuid.uuid4())`` with one read of
    the OS's random source for all of them (version digit 4; variant: the 17th digit's top bits 10)."""
    digits = os.urandom(16 * n).hex()
    return [f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT_DIGIT[h[16]]}{h[17:20]}-{h[20:32]}"
            for h in (digits[i:i + 32] for i in range(0, 32 * n, 32))]


_VARIANT_DIGIT = {d: f"{(int(d, 16) & 0x3) | 0x8:x}" for d in "0123456789abcdef"}
_NAMESPACE_BYTES = MESSAGE_ID_NAMESPACE.bytes


def message_id_uuid(message_id: str) -> str:
    """The event id of a client's messageId: ``str(uuid.uuid5(MESSAGE_ID_NAMESPACE, message_id))``."""
    digest = hashlib.sha1(_NAMESPACE_BYTES + message_id.encode("utf-8"), usedforsecurity=False).digest()
    return _uuid_string((int.from_bytes(digest[:16], "big") & _UUID_CLEAR) | _UUID_VARIANT | (5 << 76))


def _to_wire(wire: dict[str, Any], event_id: str, received: str, enriched: dict[str, Any]) -> dict[str, Any]:
    properties = wire.get("properties") or {}
    traits = wire.get("traits") or {}
    link = method = ""
    if wire["type"] == "page" and isinstance(properties.get("path"), str):
        link = clean_text(properties["path"], TEXT_MAX_BYTES)
    if wire["type"] == "page" and isinstance(properties.get("method"), str):
        method = clean_text(properties["method"], SHORT_MAX_BYTES)[:SHORT_MAX_CHARS]
    user_id, anonymous_id = wire.get("user_id", ""), wire.get("anonymous_id", "")
    return {
        "event_id": event_id,
        "type": wire["type"],
        "event": wire.get("event", ""),
        "method": method,
        "link": link,
        "user_id": user_id,
        "anonymous_id": anonymous_id,
        "group_id": wire.get("group_id", ""),
        "visitor_id": user_id or anonymous_id,
        "properties": properties,
        "traits": traits,
        "footprint_time": wire.get("footprint_time") or received,
        "received_at": received,
        "schema_version": SCHEMA_VERSION,
        "synthetic": bool(properties.get("footprint_probe") or traits.get("footprint_probe")),
        **enriched,
    }


# ------------------------------------------------------------------------------------- outbound

# stored columns that no inbound field fills, and the names the read API gives them
OUTBOUND_EXTRA: dict[str, str] = {
    "event_id": "eventId", "method": "method", "link": "link", "visitor_id": "visitorId",
    "received_at": "receivedAt", "schema_version": "schemaVersion", "synthetic": "synthetic",
    # what the collector derived from the context: referrer_host -> referrerHost, utm_source -> utmSource, ...
    **{c: c.split("_")[0] + "".join(w.title() for w in c.split("_")[1:]) for c in ENRICHED_COLUMNS},
}


def outbound_names(type_: str) -> dict[str, str]:
    """Column -> the name the read API answers with for an event of ``type_``: the inbound (Segment)
    name of the field that fills it (``event`` is ``name`` for a page), else ``OUTBOUND_EXTRA``."""
    names = {"type": "type"}
    for f in (*INBOUND_COMMON, *INBOUND_TYPES.get(type_, ())):
        if f.column:
            names[f.column] = f.name
    return {**names, **OUTBOUND_EXTRA}


def outbound(row: dict[str, Any]) -> dict[str, Any]:
    """A stored event (column -> value, canonical values) in the read API's (Segment) names."""
    names = outbound_names(str(row.get("type", "")))
    return {names[c]: row[c] for c in COLUMN_NAMES if c in names and c in row}


_KIND_SCHEMA: dict[str, dict[str, Any]] = {
    "short": {"type": "string", "minLength": 1, "maxLength": SHORT_MAX_CHARS},
    "object": {"type": "object", "additionalProperties": True},
    "time": {"type": "string", "format": "date-time"},
}


def inbound_json_schema(max_events: int) -> dict[str, Any]:
    """JSON Schema of the ``POST /v1/events`` body, generated from INBOUND_COMMON/INBOUND_TYPES.

    JSON Schema cannot say everything (byte limits, no NUL, the time range, MAX_DEPTH); the
    descriptions do, and ``validate_batch`` enforces all of it.
    """
    variants = []
    for type_, extra in INBOUND_TYPES.items():
        props: dict[str, Any] = {"type": {"type": "string", "enum": [type_]}}
        for f in (*INBOUND_COMMON, *extra):
            props[f.name] = {**_KIND_SCHEMA[f.kind], **({"description": f.doc} if f.doc else {})}
        variants.append({
            "title": f"{type_} event",
            "type": "object",
            "additionalProperties": False,
            "required": ["type", *(f.name for f in extra if f.required)],
            "properties": props,
            "anyOf": [{"required": ["userId"]}, {"required": ["anonymousId"]}],
        })
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["batch"],
        "properties": {"batch": {"type": "array", "minItems": 1, "maxItems": max_events, "items": {
            "oneOf": variants,
            "discriminator": {"propertyName": "type"},
        }}},
        "description": (
            f"Strings: no NUL, valid Unicode, short fields at most {SHORT_MAX_CHARS} characters and "
            f"{SHORT_MAX_BYTES} bytes; properties/traits nested at most {MAX_DEPTH} deep, numbers finite; "
            f"timestamps {MIN_TIME.year}..{MAX_TIME.year - 1} UTC. The batch is accepted whole or refused whole."
        ),
    }
