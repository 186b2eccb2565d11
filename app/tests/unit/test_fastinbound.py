"""The collector's fast path (``contract.plain_batch``) accepts only what the contract accepts, built identically."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from footprint.contract import ContractError, encode_event, loads, plain_batch, validate_batch
from footprint.enrich import enrich

NOW = datetime(2026, 11, 22, 12, 0, 0, 123456, tzinfo=UTC)
UA = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 Safari/604.1"


def contract(body: bytes, max_events: int = 500) -> list[tuple[str, bytes, str]] | None:
    try:
        events = validate_batch(loads(body), NOW, max_events, enrich)
    except (ValueError, ContractError):
        return None
    return [(e["event_id"], encode_event(e), e["type"]) for e in events]


def same(fast: list[tuple[str, bytes, str]], slow: list[tuple[str, bytes, str]], body: bytes) -> bool:
    """Equal, but for the random ids of events without a messageId."""
    batch = json.loads(body)["batch"]
    if len(fast) != len(slow):
        return False
    for (fid, fdoc, ftype), (sid, sdoc, stype), item in zip(fast, slow, batch, strict=True):
        if not item.get("messageId"):
            fdoc, fid = fdoc.replace(fid.encode(), b"ID"), "ID"
            sdoc, sid = sdoc.replace(sid.encode(), b"ID"), "ID"
        if (fid, fdoc, ftype) != (sid, sdoc, stype):
            return False
    return True


def test_a_plain_batch_takes_the_fast_path_with_the_contracts_events() -> None:
    body = json.dumps({"batch": [
        {"type": "track", "event": "Signed Up", "userId": "u1", "properties": {"plan": "pro", "n": [1, None]},
         "messageId": "m-1", "timestamp": "2026-11-22T11:00:00.5+01:00"},
        {"type": "page", "anonymousId": "a", "name": "Home", "properties": {"path": "/x", "method": "GET"},
         "context": {"userAgent": UA, "page": {"referrer": "https://t.co/x", "search": "?utm_source=s"}}},
        {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}},
        {"type": "group", "userId": "u1", "groupId": "g", "traits": {}},
    ]}).encode()
    fast = plain_batch(body, NOW, 500, enrich)
    slow = contract(body)
    assert fast is not None and slow is not None and same(fast, slow, body)


def test_deep_nesting_is_left_to_the_contract() -> None:
    body = b'{"batch":[{"type":"track","event":"e","userId":"u","properties":{"a":' + b"[" * 100_000
    assert plain_batch(body + b"]" * 100_000 + b"}}]}", NOW, 500, enrich) is None


def test_the_fast_path_leaves_floats_to_the_contracts_encoder() -> None:
    body = json.dumps({"batch": [{"type": "track", "event": "e", "userId": "u", "messageId": "m",
                                  "properties": {"x": 1e-05, "y": 1e16, "z": 2**70}}]}).encode()
    fast = plain_batch(body, NOW, 500, enrich)
    assert fast is not None and fast == contract(body)
    assert b'"x":1e-05' in fast[0][1]


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=12,
)
_short = st.one_of(st.text(max_size=6), st.text(alphabet="ab", min_size=199, max_size=201), st.just(""),
                   st.none(), st.integers())
_fields: dict[str, st.SearchStrategy[Any]] = {
    "userId": _short, "anonymousId": _short, "messageId": _short, "event": _short, "name": _short,
    "groupId": _short,
    "timestamp": st.one_of(st.just("2026-11-22T12:00:00Z"), st.just("2026-11-22 12:00:00.1234567+02:00"),
                           st.just("1999-01-01T00:00:00Z"), st.just("2026-02-30T00:00:00Z"), st.text(max_size=5)),
    "properties": st.one_of(st.dictionaries(st.text(max_size=5), _json, max_size=3),
                            st.fixed_dictionaries({"path": st.text(max_size=5), "method": st.text(max_size=4)}),
                            st.just({"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": 1}}}}}}}}), _json),
    "traits": st.one_of(st.dictionaries(st.text(max_size=5), _json, max_size=3), _json),
    "context": st.one_of(st.fixed_dictionaries({"userAgent": st.sampled_from([UA, "curl/8", ""])}), _json),
    "type": st.sampled_from(["page", "track", "identify", "group", "other"]),
    "extra": st.integers(),
}


_REQUIRED = {"track": {"event": "e"}, "group": {"groupId": "g"}}


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    batch = []
    for _ in range(draw(st.integers(1, 3))):
        type_ = draw(st.sampled_from(["page", "track", "identify", "group"]))
        item: dict[str, Any] = {"type": type_, "userId": "u", **_REQUIRED.get(type_, {})}
        for name in draw(st.lists(st.sampled_from(sorted(_fields)), max_size=3)):
            if draw(st.booleans()):
                item[name] = draw(_fields[name])
            else:
                item.pop(name, None)
        batch.append(item)
    body: Any = {"batch": batch}
    if draw(st.integers(0, 19)) == 0:
        body = draw(st.sampled_from([{"batch": []}, {"batch": batch, "x": 1}, [batch], {"batch": batch * 200}]))
    text = json.dumps(body, ensure_ascii=draw(st.booleans()))
    return text.encode("utf-8", "surrogatepass")


@settings(max_examples=1500, deadline=None)
@given(bodies())
@example(b'{"batch":[{"type":"track","event":"e","userId":"u","event":"f"}]}')
def test_what_the_fast_path_accepts_the_contract_accepts_identically(body: bytes) -> None:
    fast = plain_batch(body, NOW, 500, enrich)
    if fast is not None:
        slow = contract(body)
        assert slow is not None, "the fast path accepted a batch the contract refuses"
        assert same(fast, slow, body)
