from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from footprint.schema import (
    TEXT_MAX_BYTES,
    Batch,
    decode_event,
    encode_event,
    format_loc,
    format_validation_error,
    inbound_to_wire,
    json_depth,
    make_event,
    truncate_utf8,
)

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def test_wire_event_round_trips_through_the_decoder() -> None:
    fields = make_event(type="page", method="GET", link="/x", anonymous_id="a", footprint_time=NOW, received_at=NOW)
    ev = decode_event(encode_event(fields))
    assert str(ev.event_id) == fields["event_id"]
    assert ev.visitor_id == "a" and ev.footprint_time == NOW and ev.synthetic is False


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.pop("footprint_time"), "footprint_time"),
        (lambda d: d.update(footprint_time="2026-11-22T12:00:00"), "footprint_time"),  # naive: rejected
        (lambda d: d.update(type="purchase"), "type"),
        (lambda d: d.update(event_id="nope"), "event_id"),
        (lambda d: d.update(schema_version=2), "schema_version"),
        (lambda d: d.update(surprise=1), "surprise"),
    ],
)
def test_decoder_names_the_bad_field(mutate: object, field: str) -> None:
    d = make_event(type="page", footprint_time=NOW, received_at=NOW, anonymous_id="a")
    mutate(d)  # type: ignore[operator]
    with pytest.raises(ValueError, match=field):
        decode_event(json.dumps(d).encode())


def test_decoder_rejects_garbage_and_tombstones() -> None:
    with pytest.raises(ValueError, match=r"(?i)json"):
        decode_event(b"\xff not json")
    with pytest.raises(ValueError, match="tombstone"):
        decode_event(None)


def test_json_depth() -> None:
    assert json_depth(1) == 0
    assert json_depth({}) == 1
    assert json_depth({"a": {"b": [1, {"c": 2}]}}) == 4


def test_format_loc_drops_union_tags() -> None:
    assert format_loc(("batch", 0, "track", "userId")) == "batch[0].userId"
    assert format_loc(("batch", 3, "group", "groupId")) == "batch[3].groupId"
    assert format_loc(()) == "body"


def test_message_id_makes_event_id_stable_and_probe_marks_synthetic() -> None:
    raw = {"batch": [{"type": "track", "event": "E", "userId": "u", "messageId": "m-1",
                      "properties": {"footprint_probe": True}}]}
    a = inbound_to_wire(Batch.model_validate(raw).batch[0], NOW)
    b = inbound_to_wire(Batch.model_validate(raw).batch[0], NOW)
    assert a["event_id"] == b["event_id"] and uuid.UUID(a["event_id"]).version == 5
    assert a["synthetic"] is True


def test_page_path_becomes_link_and_timestamp_is_kept() -> None:
    raw = {"batch": [{"type": "page", "anonymousId": "x", "properties": {"path": "/p"},
                      "timestamp": "2026-11-01T10:00:00+02:00"}]}
    w = inbound_to_wire(Batch.model_validate(raw).batch[0], NOW)
    assert w["link"] == "/p" and w["footprint_time"] == "2026-11-01T08:00:00.000000+00:00"
    assert w["received_at"].startswith("2026-11-22T12:00:00")


def test_truncate_utf8_cuts_on_a_character_boundary() -> None:
    assert truncate_utf8("abc", 3) == "abc"
    assert truncate_utf8("€€€", 8) == "€€"  # 9 bytes -> 6, never half a character
    assert truncate_utf8("a😀", 4) == "a"


def test_text_is_capped_in_bytes_so_index_rows_fit() -> None:
    path = "/" + "€" * 2048  # 2048 characters, 6145 bytes
    raw = {"batch": [{"type": "page", "anonymousId": "x", "properties": {"path": path}}]}
    w = inbound_to_wire(Batch.model_validate(raw).batch[0], NOW)
    assert len(w["link"].encode()) <= TEXT_MAX_BYTES and path.startswith(w["link"]) and len(w["link"]) == 683
    assert decode_event(encode_event(w)).link == w["link"]
    too_long = make_event(type="page", link=path, anonymous_id="x", footprint_time=NOW, received_at=NOW)
    with pytest.raises(ValueError, match=r"link: .*2048 bytes"):
        decode_event(encode_event(too_long))
    with pytest.raises(ValidationError) as err:
        Batch.model_validate({"batch": [{"type": "track", "event": "e", "anonymousId": "€" * 100}]})
    assert "batch[0].anonymousId: Value error, String should have at most 256 bytes" in format_validation_error(
        err.value)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"k": "a\\u0000b"}', "NUL"),
        ('{"k": "\\ud800"}', "surrogate|hex escape"),
        ('{"k": "\\udc00x"}', "surrogate"),
    ],
)
def test_values_the_stores_cannot_hold_are_rejected_up_front(text: str, reason: str) -> None:
    d = make_event(type="track", event="e", footprint_time=NOW, received_at=NOW, user_id="u")
    raw = encode_event(d).replace(b'"properties":{}', b'"properties":' + text.encode())
    assert b"properties" in raw and text.encode() in raw
    with pytest.raises(ValueError, match=reason):
        decode_event(raw)


@pytest.mark.parametrize("text", ['{"k": "\\\\u0000"}', '{"k": "\\ud83d\\ude00"}', '{"k": "caf\\u00e9"}'])
def test_escaped_backslashes_and_pairs_are_fine(text: str) -> None:
    d = make_event(type="track", event="e", footprint_time=NOW, received_at=NOW, user_id="u")
    raw = encode_event(d).replace(b'"properties":{}', b'"properties":' + text.encode())
    assert decode_event(raw).properties["k"]


def test_times_outside_the_storable_range_are_rejected() -> None:
    d = make_event(type="page", footprint_time=NOW, received_at=NOW, anonymous_id="a")
    d["footprint_time"] = "2999-01-01T00:00:00+00:00"
    with pytest.raises(ValueError, match="footprint_time"):
        decode_event(json.dumps(d).encode())
    d["footprint_time"] = 1700000000  # strict: a number is not a time
    with pytest.raises(ValueError, match="footprint_time"):
        decode_event(json.dumps(d).encode())
