"""The contract's rules for single values: text, times, objects, ids, JSON, and the problems they raise.

Every check takes the value, where it is (for the message) and the ``Problems`` it adds to; it returns the
value in its canonical form. No recursion anywhere: nesting is bounded by ``MAX_DEPTH`` and checked
iteratively.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from footprint.contract.fields import (
    EVENT_TYPES,
    MAX_DEPTH,
    MAX_PROBLEMS,
    MAX_TIME,
    MESSAGE_ID_NAMESPACE,
    MIN_TIME,
    SCHEMA_VERSION,
    SHORT_MAX_BYTES,
    SHORT_MAX_CHARS,
    TEXT_MAX_BYTES,
)


class ContractError(ValueError):
    """An event (or batch) breaks the contract; ``problems`` are ``(where, what)`` pairs."""

    def __init__(self, problems: list[tuple[str, str]], more: int = 0) -> None:
        self.problems = problems
        self.more = more
        text = "; ".join(f"{where}: {what}" for where, what in problems)
        super().__init__(text + (f"; and {more} more" if more else ""))


class Problems:
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


def text_problem(value: str) -> str | None:
    """Why neither store can hold ``value`` as text, or None."""
    if "\x00" in value:
        return "contains a NUL character (\\u0000), which the stores cannot hold"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains an unpaired UTF-16 surrogate, which is not valid Unicode"
    return None


def check_text(value: Any, where: str, problems: Problems, *, max_bytes: int, max_chars: int | None = None,
               min_chars: int = 0) -> str:
    if type(value) is not str:
        problems.add(where, f"must be a string, not {json_type(value)}")
        return ""
    if value.isascii():  # the common case, cheaply: no surrogate possible, one byte per character
        size = len(value)
        problem = "contains a NUL character (\\u0000), which the stores cannot hold" if "\x00" in value else None
    else:
        problem = text_problem(value)
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


def check_short(value: Any, where: str, problems: Problems, min_chars: int = 0) -> str:
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
        raise ValueError(f"must be an RFC 3339 date-time string, not {json_type(value)}")
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


def check_time(value: Any, where: str, problems: Problems) -> str:
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


def json_type(value: Any) -> str:
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


def check_object(value: Any, where: str, problems: Problems) -> dict[str, Any]:
    """A JSON object both stores can hold: depth <= MAX_DEPTH, finite numbers, storable text.

    Iterative (an explicit stack), so no input can exhaust the interpreter's recursion limit.
    """
    if not isinstance(value, dict):
        problems.add(where, f"must be an object, not {json_type(value)}")
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
                problem = text_problem(key)
                if problem:
                    problems.add(f"{path} (a key)", problem)
            if isinstance(item, str):
                problem = text_problem(item)
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



def check_uuid(value: Any, where: str, problems: Problems) -> str:
    if type(value) is str and _CANONICAL_UUID.fullmatch(value):
        return value
    if isinstance(value, str):
        try:
            return str(uuid.UUID(value))
        except ValueError:
            pass
    problems.add(where, "must be a UUID")
    return ""


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
    if text_problem(text):
        text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return truncate_utf8(text, max_bytes)


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



def check_type(value: Any, where: str, problems: Problems) -> str:
    if value not in EVENT_TYPES:
        problems.add(where, f"must be one of {', '.join(EVENT_TYPES)}")
    return str(value)


def check_version(value: Any, where: str, problems: Problems) -> int:
    if value != SCHEMA_VERSION or isinstance(value, bool):
        problems.add(where, f"must be {SCHEMA_VERSION}")
    return SCHEMA_VERSION


def check_bool(value: Any, where: str, problems: Problems) -> bool:
    if not isinstance(value, bool):
        problems.add(where, "must be true or false")
    return bool(value)


def check_long(value: Any, where: str, problems: Problems) -> str:
    return check_text(value, where, problems, max_bytes=TEXT_MAX_BYTES)
