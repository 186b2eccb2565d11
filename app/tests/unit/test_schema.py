"""The event contract: rules, canonical form, and property-based searches for inputs that break it."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from footprint.contract import (
    COLUMN_NAMES,
    MAX_DEPTH,
    TEXT_MAX_BYTES,
    ContractError,
    canonical,
    decode_by_rules,
    dumps,
    encode_event,
    format_time,
    inbound_json_schema,
    loads,
    make_event,
    parse_time,
    truncate_utf8,
    validate_batch,
)

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def wire(**changes: Any) -> dict[str, Any]:
    d = make_event(type="track", event="e", user_id="u", footprint_time=NOW, received_at=NOW)
    d.update(changes)
    return d


def one(event: dict[str, Any]) -> dict[str, Any]:
    return validate_batch({"batch": [event]}, NOW, 500)[0]


def test_a_wire_event_round_trips_into_the_same_canonical_bytes() -> None:
    d = wire(properties={"plan": "pro", "n": 1.5, "deep": {"a": [1, None, True]}})
    key, doc = decode_by_rules(encode_event(d))
    assert key == d["event_id"] and json.loads(doc) == d
    assert decode_by_rules(doc)[1] == doc  # canonical is a fixed point
    assert list(json.loads(doc)) == list(COLUMN_NAMES)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2027-01-05T10:00:00Z", "2027-01-05T10:00:00.000000Z"),
        ("2027-01-05t10:00:00z", "2027-01-05T10:00:00.000000Z"),  # RFC 3339 allows lower case
        ("2027-01-05 10:00:00+00:00", "2027-01-05T10:00:00.000000Z"),
        ("2027-01-05T10:00:00+20:00", "2027-01-04T14:00:00.000000Z"),  # beyond PostgreSQL's +-15:59
        ("2027-01-05T10:00:00-23:59", "2027-01-06T09:59:00.000000Z"),
        ("2026-11-01T10:59:59.9999999Z", "2026-11-01T10:59:59.999999Z"),  # cut, never rounded to 11:00
        ("2026-12-31T23:59:59.999999999Z", "2026-12-31T23:59:59.999999Z"),  # never into the next day/year
        ("2028-02-29T12:00:00.5+01:00", "2028-02-29T11:00:00.500000Z"),  # leap day
    ],
)
def test_times_have_one_spelling_in_utc(given: str, expected: str) -> None:
    assert format_time(parse_time(given)) == expected
    assert one({"type": "track", "event": "e", "userId": "u", "timestamp": given})["footprint_time"] == expected


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("2027-01-05_10:00:00+00:00", "RFC 3339"),
        ("2027-01-05T10:00:00", "RFC 3339"),  # no offset
        ("2027-01-05T10:00:00+24:00", "offset"),
        ("2027-02-29T10:00:00Z", "valid"),
        ("2027-01-05T10:00:60Z", "valid"),
        ("0001-01-01T00:00:00+01:00", "2000..2199"),  # was an OverflowError (500)
        ("9999-12-31T23:59:59-01:00", "2000..2199"),
        ("2000-01-01T00:30:00+01:00", "2000..2199"),  # 1999 in UTC
        ("2200-01-01T00:00:00Z", "2000..2199"),
        ("\uff11\uff19\uff19\uff19-01-01T00:00:00Z", "RFC 3339"),  # non-ASCII (full-width) digits
    ],
)
def test_bad_times_are_refused_naming_why(given: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_time(given)
    with pytest.raises(ContractError, match=r"batch\[0\]\.timestamp"):
        one({"type": "track", "event": "e", "userId": "u", "timestamp": given})


@settings(max_examples=300, deadline=None)
@given(st.datetimes(min_value=datetime(1999, 12, 30), max_value=datetime(2200, 1, 2)),
       st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59), st.integers(min_value=0, max_value=999))
@example(datetime(2026, 3, 29, 1, 30), 60, 0)  # a DST change day in Europe: offsets are explicit, no DST
def test_parse_time_agrees_with_datetime_arithmetic(local: datetime, offset_min: int, nanos: int) -> None:
    tz = timezone(timedelta(minutes=offset_min))
    sign = "+" if offset_min >= 0 else "-"
    text = (local.strftime("%Y-%m-%dT%H:%M:%S.%f") + f"{nanos:03d}"
            + f"{sign}{abs(offset_min) // 60:02d}:{abs(offset_min) % 60:02d}")
    reference = local.replace(tzinfo=tz).astimezone(UTC).replace(tzinfo=None)
    if datetime(2000, 1, 1) <= reference < datetime(2200, 1, 1):
        assert parse_time(text) == reference
    else:
        with pytest.raises(ValueError, match=r"2000\.\.2199"):
            parse_time(text)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("{f30f80e7-f4d8-442b-8881-3e167e3c04e0}", "f30f80e7-f4d8-442b-8881-3e167e3c04e0"),  # ClickHouse code 376
        ("F30F80E7F4D8442B88813E167E3C04E0", "f30f80e7-f4d8-442b-8881-3e167e3c04e0"),
        ("urn:uuid:f30f80e7-f4d8-442b-8881-3e167e3c04e0", "f30f80e7-f4d8-442b-8881-3e167e3c04e0"),
    ],
)
def test_event_ids_in_other_spellings_become_canonical(given: str, expected: str) -> None:
    key, doc = decode_by_rules(json.dumps(wire(event_id=given)).encode())
    assert key == expected and json.loads(doc)["event_id"] == expected


def test_the_earlier_wire_form_still_in_topics_keeps_working() -> None:
    old = {"schema_version": 1, "event_id": str(uuid.uuid4()), "type": "page", "event": None, "method": "GET",
           "link": "/x", "user_id": None, "anonymous_id": "a", "group_id": None, "visitor_id": "a",
           "properties": {}, "traits": {}, "footprint_time": "2026-11-22T12:00:00.000000+00:00",
           "received_at": "2026-11-22T12:00:00.000000+00:00"}  # no "synthetic": it came later
    doc = json.loads(decode_by_rules(json.dumps(old).encode())[1])
    assert doc["event"] == "" and doc["synthetic"] is False
    assert doc["footprint_time"] == "2026-11-22T12:00:00.000000Z"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b'{"k": "a\\u0000b"}', "NUL"),
        (b'{"a\\u0000": 1}', "NUL"),
        (b'{"k": "\\ud800"}', "surrogate"),
        (b'{"\\ud800": 1}', "surrogate"),
        (b'{"k": "\\udc00x"}', "surrogate"),
        (b'{"k": 1e400}', "out of range"),
        (b'{"k": -1e400}', "out of range"),
        (b'{"k": NaN}', "NaN"),
        (b'{"k": Infinity}', "Infinity"),
        (b'{"k": [' + b"1" * 5000 + b"]}", "digits"),  # Python's int digit limit
        (b'{"k": ' + b'{"a": ' * (MAX_DEPTH) + b"1" + b"}" * MAX_DEPTH + b"}", "deeper"),
        (b'{"k": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "deep"),  # was a RecursionError
    ],
)
def test_values_the_stores_cannot_hold_are_refused(value: bytes, reason: str) -> None:
    raw = encode_event(wire()).replace(b'"properties":{}', b'"properties":' + value)
    with pytest.raises(ValueError, match=reason):
        decode_by_rules(raw)
    body = b'{"batch":[{"type":"track","event":"e","userId":"u","properties":' + value + b"}]}"
    with pytest.raises(ValueError, match=reason):
        validate_batch(loads(body), NOW, 500)


@pytest.mark.parametrize("text", ['{"k": "\\\\u0000"}', '{"k": "\\ud83d\\ude00"}', '{"k": "caf\\u00e9"}'])
def test_escaped_backslashes_and_pairs_are_fine(text: str) -> None:
    raw = encode_event(wire()).replace(b'"properties":{}', b'"properties":' + text.encode())
    assert json.loads(decode_by_rules(raw)[1])["properties"]["k"]


def test_invalid_utf8_and_garbage_and_tombstones() -> None:
    with pytest.raises(ValueError, match="UTF-8"):
        decode_by_rules(b"\xff not json")
    with pytest.raises(ValueError, match="UTF-8"):
        decode_by_rules(encode_event(wire(event="XX")).replace(b'"XX"', b'"\xed\xb3\xbf"'))  # an encoded surrogate
    with pytest.raises(ValueError, match="tombstone"):
        decode_by_rules(None)
    with pytest.raises(ValueError, match="object"):
        decode_by_rules(b"[1, 2]")


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.pop("footprint_time"), "footprint_time: required"),
        (lambda d: d.update(footprint_time="2026-11-22T12:00:00"), "footprint_time"),
        (lambda d: d.update(footprint_time=1700000000), "footprint_time"),  # a number is not a time
        (lambda d: d.update(type="purchase"), "type"),
        (lambda d: d.update(event_id="nope"), "event_id"),
        (lambda d: d.update(schema_version=2), "schema_version"),
        (lambda d: d.update(schema_version=True), "schema_version"),
        (lambda d: d.update(surprise=1), "surprise: unknown field"),
        (lambda d: d.update(link="/" + "€" * 2048), "link: at most 2048 bytes"),
        (lambda d: d.update(user_id="€" * 100), "user_id: at most 256 bytes"),
        (lambda d: d.update(synthetic="yes"), "synthetic"),
        (lambda d: d.update(properties=[]), "properties: must be an object"),
    ],
)
def test_the_decoder_names_the_bad_field(mutate: Any, field: str) -> None:
    d = wire()
    mutate(d)
    with pytest.raises(ContractError, match=field):
        decode_by_rules(json.dumps(d).encode())


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"type": "track", "userId": "u"}, r"batch\[0\]\.event: required"),
        ({"type": "track", "event": "e"}, "userId or anonymousId is required"),
        ({"type": "group", "userId": "u"}, r"batch\[0\]\.groupId: required"),
        ({"type": "track", "event": "e", "userId": "u", "colour": 1}, r"batch\[0\]\.colour: unknown field"),
        ({"type": "nope", "userId": "u"}, r"batch\[0\]\.type"),
        ({"type": "track", "event": "", "userId": "u"}, r"batch\[0\]\.event: must not be empty"),
        ({"type": "track", "event": 5, "userId": "u"}, r"batch\[0\]\.event: must be a string"),
        ({"type": "track", "event": "e", "userId": "u\x00"}, r"batch\[0\]\.userId: contains a NUL"),
        ({"type": "track", "event": "e", "userId": "u", "properties": []}, r"batch\[0\]\.properties"),
        ({"type": "track", "event": "e", "anonymousId": "€" * 100}, r"anonymousId: at most 256 bytes"),
        ("not an object", r"batch\[0\]: must be an object"),
    ],
)
def test_inbound_problems_name_the_field(event: Any, field: str) -> None:
    with pytest.raises(ContractError, match=field):
        one(event)


def test_a_batch_is_refused_whole_and_lists_every_bad_event() -> None:
    good = {"type": "track", "event": "e", "userId": "u"}
    with pytest.raises(ContractError) as err:
        validate_batch({"batch": [good, {"type": "track", "userId": "u"}, good, {"type": "x"}]}, NOW, 500)
    assert [where for where, _ in err.value.problems] == ["batch[1].event", "batch[3].type"]
    with pytest.raises(ContractError, match="batch: required"):
        validate_batch({"batch": []}, NOW, 500)
    with pytest.raises(ContractError, match="more than 2 events"):
        validate_batch({"batch": [good] * 3}, NOW, 2)
    with pytest.raises(ContractError, match="and 5 more"):
        validate_batch({"batch": [{"type": "x"}] * 25}, NOW, 500)


def test_message_id_makes_event_id_stable_and_probe_marks_synthetic() -> None:
    ev = {"type": "track", "event": "E", "userId": "u", "messageId": "m-1", "properties": {"footprint_probe": True}}
    a, b = one(ev), one(ev)
    assert a["event_id"] == b["event_id"] and uuid.UUID(a["event_id"]).version == 5
    assert a["synthetic"] is True


def test_page_path_becomes_a_clean_link_and_inbound_events_pass_the_wire_contract() -> None:
    w = one({"type": "page", "anonymousId": "x", "properties": {"path": "/p"},
             "timestamp": "2026-11-01T10:00:00+02:00"})
    assert w["link"] == "/p" and w["footprint_time"] == "2026-11-01T08:00:00.000000Z"
    assert w["received_at"] == "2026-11-22T12:00:00.000000Z"
    assert canonical(w) == w
    path = "/" + "€" * 2048  # 2048 characters, 6145 bytes: the link is cut on a character boundary
    w = one({"type": "page", "anonymousId": "x", "properties": {"path": path}})
    assert len(w["link"].encode()) <= TEXT_MAX_BYTES and path.startswith(w["link"]) and len(w["link"]) == 683
    assert canonical(w) == w


def test_truncate_utf8_cuts_on_a_character_boundary() -> None:
    assert truncate_utf8("abc", 3) == "abc"
    assert truncate_utf8("€€€", 8) == "€€"  # 9 bytes -> 6, never half a character
    assert truncate_utf8("a😀", 4) == "a"


def test_the_openapi_body_schema_is_generated_from_the_contract() -> None:
    schema = inbound_json_schema(500)
    variants = schema["properties"]["batch"]["items"]["oneOf"]
    assert sorted(v["properties"]["type"]["enum"][0] for v in variants) == ["group", "identify", "page", "track"]
    track = next(v for v in variants if v["properties"]["type"]["enum"] == ["track"])
    assert track["required"] == ["type", "event"] and track["additionalProperties"] is False
    assert schema["properties"]["batch"]["maxItems"] == 500


# ---------------------------------------------------------------- property-based: the contract itself

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
                      st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                             st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                          max_leaves=12)


@settings(max_examples=400, deadline=None)
@given(props=st.dictionaries(st.text(max_size=6), json_value, max_size=4),
       name=st.text(min_size=0, max_size=210), stamp=st.text(max_size=40))
def test_validation_never_crashes_and_what_it_accepts_is_canonical_and_storable(
    props: dict[str, Any], name: str, stamp: str
) -> None:
    ev = {"type": "track", "event": name, "userId": "u", "properties": props, "timestamp": stamp}
    try:
        raw = loads(json.dumps({"batch": [ev]}))
        out = validate_batch(raw, NOW, 500)[0]
    except ValueError:
        return  # refused with a reason (ContractError is a ValueError); never another exception
    doc = dumps(out)  # encodable: no surrogates, no NaN
    assert b"\\u0000" not in doc.replace(b"\\\\", b"")
    assert decode_by_rules(doc)[1] == doc


@pytest.mark.parametrize("body", [
    b'{"batch":[{"type":"track","event":"e","userId":"u","messageId":"\\ud800"}]}',  # was a 500 (uuid5)
    b'{"batch":[{"type":"track","event":"e","userId":"u","properties":{"\\ud800":{"\\u0000":1}}}]}',  # (reply)
])
def test_found_by_the_property_tests_refusals_are_printable(body: bytes) -> None:
    with pytest.raises(ContractError) as err:
        validate_batch(loads(body), NOW, 500)
    json.dumps(err.value.problems, ensure_ascii=False).encode("utf-8")  # the 400 reply can be rendered


@pytest.mark.parametrize("type_", [{}, [], None, 1, True])
def test_found_by_schemathesis_a_type_of_any_json_kind_is_a_400(type_: Any) -> None:
    with pytest.raises(ContractError, match=r"batch\[0\]\.type: must be one of"):
        one({"type": type_, "userId": "u"})


def test_event_ids_are_what_the_uuid_module_makes() -> None:
    """The collector's bulk ids: version 4 random UUIDs, and uuid5 of a messageId (retries are idempotent)."""
    import uuid as uuid_module

    from footprint.contract import MESSAGE_ID_NAMESPACE, message_id_uuid, random_uuids

    ids = random_uuids(2000)
    assert len(set(ids)) == 2000
    for text in ids:
        parsed = uuid_module.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid_module.RFC_4122
    for name in ("m-1", "caf\u00e9", "x" * 200):
        assert message_id_uuid(name) == str(uuid_module.uuid5(MESSAGE_ID_NAMESPACE, name))


def test_what_the_field_table_derives_is_the_documented_api() -> None:
    """The inbound fields per type, the read API's filters and names, as the API documents them (derived
    from the one field table: a change to a row shows here)."""
    from footprint.contract import EQUALITY, INBOUND_COMMON, INBOUND_TYPES, OUTBOUND_EXTRA, outbound_names

    assert [(f.name, f.column) for f in INBOUND_COMMON] == [
        ("userId", "user_id"), ("anonymousId", "anonymous_id"), ("timestamp", "footprint_time"),
        ("messageId", None), ("context", None)]
    assert {t: [(f.name, f.column, f.required) for f in fs] for t, fs in INBOUND_TYPES.items()} == {
        "track": [("event", "event", True), ("properties", "properties", False)],
        "identify": [("traits", "traits", False)],
        "group": [("groupId", "group_id", True), ("traits", "traits", False)],
        "page": [("name", "event", False), ("properties", "properties", False)],
    }
    assert list(INBOUND_TYPES) == ["track", "identify", "group", "page"]
    assert EQUALITY == {"event": "event", "type": "type", "userId": "user_id", "anonymousId": "anonymous_id",
                        "groupId": "group_id", "country": "country"}
    assert list(EQUALITY) == ["event", "type", "userId", "anonymousId", "groupId", "country"]
    assert OUTBOUND_EXTRA["referrer_host"] == "referrerHost" and OUTBOUND_EXTRA["visitor_id"] == "visitorId"
    assert outbound_names("page")["event"] == "name" and outbound_names("track")["event"] == "event"
    assert "event" not in outbound_names("identify") and "group_id" in outbound_names("group")
