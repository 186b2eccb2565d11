"""The consumer's decode (``contract.decode_message``, its fast path inside) answers exactly what the contract's
full rules (``decode_by_rules``) answer."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from footprint.contract import (
    COLUMNS,
    canonical_message,
    decode_by_rules,
    decode_message,
    encode_event,
    make_event,
    user_id_of,
)

NOW = datetime(2026, 11, 22, 12, 0, 0, 123456, tzinfo=UTC)


def canonical_bytes(**changes: Any) -> bytes:
    d = make_event(type="page", method="GET", link="/a", anonymous_id="v", footprint_time=NOW, received_at=NOW)
    d.update(changes)
    return encode_event(d)


def outcome(decode: Any, value: bytes | None) -> tuple[str, Any]:
    try:
        return "ok", decode(value)
    except ValueError as exc:
        return "refused", str(exc)


def test_a_canonical_message_takes_the_fast_path_and_is_written_as_read() -> None:
    value = canonical_bytes(properties={"plan": "pro", "n": [1, 2.5, None]}, traits={"a": {"b": True}})
    key = canonical_message(value)
    assert key is not None and (key, value) == decode_by_rules(value)
    assert decode_message(value) == (key, value)
    assert decode_message(value)[1] is value  # no copy: the message's own bytes go on


@pytest.mark.parametrize("value", [
    canonical_bytes(footprint_time="2026-11-22T12:00:00.000000Z"),  # whole second: msgspec spells it shorter
    canonical_bytes(event_id=str(uuid.uuid4()).upper()),
    canonical_bytes(footprint_time="2026-11-22T12:00:00.123456+00:00"),
    canonical_bytes(footprint_time="2026-11-22T13:00:00.123456+01:00"),
    canonical_bytes(footprint_time="2026-02-30T12:00:00.123456Z"),
    canonical_bytes(footprint_time="2200-01-01T00:00:00.000001Z"),
    canonical_bytes(footprint_time="1999-12-31T23:59:59.999999Z"),
    canonical_bytes().replace(b'"properties":{}', b'"properties":{"x":1e16}'),  # canonical: 1e+16
    canonical_bytes(link="/caf\u00e9"),
    canonical_bytes(event="a\u0000b"),
    canonical_bytes(event="x" * 201),
    canonical_bytes(link="/" + "x" * 2048),
    canonical_bytes(schema_version=1.0),
    canonical_bytes(synthetic=0),
    canonical_bytes(extra="field"),
    json.dumps(json.loads(canonical_bytes())).encode(),  # spaces
    canonical_bytes().replace(b'"bot":false', b'"bot":false,"bot":true'),
    canonical_bytes().replace(b',"bot":false', b""),  # an earlier form without a column
    canonical_bytes().replace(b'"properties":{}', b'"properties":{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
])
def test_anything_not_canonical_is_left_to_the_contract(value: bytes) -> None:
    assert canonical_message(value) is None
    assert outcome(decode_message, value) == outcome(decode_by_rules, value)


_ids = st.one_of(st.uuids().map(str), st.uuids().map(lambda u: str(u).upper()), st.uuids().map(lambda u: u.hex),
                 st.text(max_size=40))
_times = st.one_of(
    st.datetimes(min_value=datetime(1999, 12, 31), max_value=datetime(2200, 1, 2)).map(
        lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.%fZ")),
    st.from_regex(r"\A2[01]\d\d-[01]\d-[0-3]\dT[0-2]\d:[0-6]\d:[0-6]\d(\.\d{0,8})?(Z|z|[+-]\d\d:\d\d)\Z"),
)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10,
)
_values: dict[str, st.SearchStrategy[Any]] = {
    "uuid": _ids,
    "type": st.sampled_from(["page", "track", "identify", "group", "Page", ""]),
    "short": st.one_of(st.text(max_size=5), st.text(alphabet="ab", min_size=199, max_size=202), st.integers()),
    "text": st.one_of(st.text(max_size=5), st.text(alphabet="ab", min_size=2047, max_size=2049)),
    "object": st.one_of(st.dictionaries(st.text(max_size=5), _json, max_size=3), _json),
    "time": _times,
    "version": st.sampled_from([1, 1.0, 2, True, "1"]),
    "bool": st.sampled_from([True, False, 0, 1, None]),
}


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    """A canonical message with a few of its columns changed, dropped or added, spelt in various ways."""
    event = json.loads(canonical_bytes())
    for column in draw(st.lists(st.sampled_from(COLUMNS), max_size=3)):
        if draw(st.booleans()):
            event[column.name] = draw(_values[column.kind])
        else:
            event.pop(column.name, None)
    if draw(st.integers(0, 9)) == 0:
        event[draw(st.text(max_size=8))] = draw(_json)
    compact = draw(st.booleans())
    text = json.dumps(event, ensure_ascii=draw(st.booleans()), separators=(",", ":") if compact else None)
    return text.encode("utf-8", "surrogatepass")


@settings(max_examples=1500, deadline=None)
@given(messages())
@example(canonical_bytes())
def test_the_fast_path_never_answers_differently_from_the_contract(value: bytes) -> None:
    assert outcome(decode_message, value) == outcome(decode_by_rules, value)
    key = canonical_message(value)
    if key is not None:  # what it accepts is canonical: the contract returns the very same bytes
        assert decode_by_rules(value) == (key, value)


def test_the_erasure_filter_reads_the_user_id_of_a_document() -> None:
    assert user_id_of(canonical_bytes(user_id="u-7")) == "u-7"
    assert user_id_of(canonical_bytes()) == ""
