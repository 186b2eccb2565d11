"""Pure logic of the read side: key checks, signed tokens, filter parsing and the SQL it builds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from footprint import query
from footprint.auth import Signer, authorized, bearer, matches
from footprint.contract import format_time, outbound, outbound_names
from footprint.settings import Settings


def test_keys_match_exactly_and_only_as_bearer() -> None:
    keys = [b"alpha-key", b"beta-key"]
    assert matches("beta-key", keys) and not matches("beta-ke", keys) and not matches("", keys)
    assert not matches("alpha-key", [])
    assert authorized("Bearer alpha-key", keys) and authorized("bearer  alpha-key ", keys)
    assert not authorized("Basic alpha-key", keys) and not authorized(None, keys)
    assert bearer("Bearer") == ""


def test_a_key_cannot_be_public_and_private() -> None:
    with pytest.raises(ValidationError, match="both public"):
        Settings(api_keys="k1,shared", private_keys="shared")
    s = Settings(api_keys="k1", private_keys="p1, p2")
    assert [k.get_secret_value() for k in s.private_keys] == ["p1", "p2"]


def test_signed_tokens_refuse_any_change_and_other_signers() -> None:
    signer = Signer(b"secret", "cursor")
    token = signer.sign(b"payload")
    assert signer.verify(token) == b"payload"
    body, _, mac = token.partition(".")
    assert signer.verify(body + "." + mac[:-1] + ("A" if mac[-1] != "A" else "B")) is None
    assert signer.verify("x" + token) is None
    assert Signer(b"secret", "session").verify(token) is None  # another purpose
    assert Signer(b"other", "cursor").verify(token) is None
    assert signer.verify("not a token") is None and signer.verify("." * 5000) is None


def test_sessions_expire() -> None:
    s = Signer(b"k", "session")
    assert s.verify_expiring(s.sign_expiring("dashboard", 60)) == "dashboard"
    assert s.verify_expiring(s.sign_expiring("dashboard", -1)) is None


def test_signing_key_follows_the_private_secrets() -> None:
    a = Signer.from_settings(Settings(private_keys="one"), "cursor")
    b = Signer.from_settings(Settings(private_keys="two"), "cursor")
    assert b.verify(a.sign(b"x")) is None


def _parse(params: dict[str, str]) -> query.EventQuery:
    return query.parse(params, list(params), Signer(b"k", "cursor"))


def test_filters_become_parameters_never_sql_text() -> None:
    q = _parse({"userId": "x' OR 1=1 --", "link": "/a'b", "properties.pl'an": "pro",
                "since": "2026-01-01T00:00:00+01:00"})
    sql, params = query.to_sql(q)
    assert "OR 1=1" not in sql and "pl'an" not in sql and "/a'b" not in sql
    assert "x' OR 1=1 --" in params.values() and "pl'an" in params.values()
    assert params["since"] == "2025-12-31T23:00:00.000000"  # UTC, canonical


@pytest.mark.parametrize(("params", "named"), [
    ({"limit": "1001"}, "limit"), ({"limit": "1e3"}, "limit"), ({"limit": "٣"}, "limit"),
    ({"type": "x"}, "type"), ({"properties.a..b": "1"}, "properties"),
    ({f"properties.k{i}": "v" for i in range(6)}, "at most 5"),
    ({"cursor": "abc"}, "cursor"), ({"unknown": "1"}, "unknown"),
])
def test_bad_filters_name_the_parameter(params: dict[str, str], named: str) -> None:
    with pytest.raises(query.BadFilter, match=named):
        _parse(params)


def test_a_cursor_is_bound_to_its_filters() -> None:
    signer = Signer(b"k", "cursor")
    q = query.parse({"type": "page"}, ["type"], signer)
    cursor = query.next_cursor({"footprint_time": "2026-01-01T00:00:00.000000Z", "event_id": "e"}, q, signer)
    again = query.parse({"type": "page", "cursor": cursor}, ["type", "cursor"], signer)
    assert again.after == ("2026-01-01T00:00:00.000000Z", "e")
    with pytest.raises(query.BadFilter, match="cursor"):
        query.parse({"type": "track", "cursor": cursor}, ["type", "cursor"], signer)
    with pytest.raises(query.BadFilter, match="more than once"):
        query.parse({"type": "page"}, ["type", "type"], signer)


def test_outbound_uses_the_inbound_names_per_type() -> None:
    assert outbound_names("page")["event"] == "name" and outbound_names("track")["event"] == "event"
    assert outbound_names("group")["group_id"] == "groupId"
    e = outbound({"type": "track", "event": "Paid", "user_id": "u", "footprint_time": "t", "event_id": "i"})
    assert e == {"eventId": "i", "type": "track", "event": "Paid", "userId": "u", "timestamp": "t"}



@settings(max_examples=300, deadline=None)
@given(offsets=st.lists(st.integers(-3 * 86400, 400 * 86400), max_size=60),
       limit=st.integers(1, 8), until=st.none() | st.integers(0, 40 * 86400),
       since=st.none() | st.integers(0, 90 * 86400), pages=st.integers(1, 4))
def test_a_page_tried_from_the_newest_hour_back_is_the_page_of_the_whole_history(
        offsets: list[int], limit: int, until: int | None, since: int | None, pages: int) -> None:
    """``page_rows`` tries ever older floors; whatever the rows' times (future ones included), each page
    is exactly what one query over the whole history answers."""
    assume(since is None or until is None or since > until)  # (since after until is a 400)
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    rows = [(format_time(now - timedelta(seconds=o)), f"{i:04d}") for i, o in enumerate(offsets)]
    params = {"limit": str(limit)}
    if until is not None:
        params["until"] = format_time(now - timedelta(seconds=until))
    if since is not None:
        params["since"] = format_time(now - timedelta(seconds=since))
    q = _parse(params)

    def run(sql: str, values: dict[str, Any]) -> list[tuple[str, str]]:  # the SQL's conditions, in Python
        def kept(r: tuple[str, str]) -> bool:
            return all((("floor" not in values or r[0][:-1] >= values["floor"]),
                        ("since" not in values or r[0][:-1] >= values["since"]),
                        ("until" not in values or r[0][:-1] < values["until"]),
                        ("at" not in values or (r[0][:-1], r[1]) < (values["at"], values["aid"]))))
        return sorted(filter(kept, rows), reverse=True)[:values["limit"]]

    for _ in range(pages):
        got = list(query.page_rows(q, now, run))
        whole = run(*query.to_sql(q))
        assert got == whole
        if len(got) <= limit:
            break
        q.after = got[limit - 1]
