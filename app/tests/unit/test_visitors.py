"""Anonymous visitor ids: daily salt never stored, client address through trusted proxies only."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from footprint.visitors import VisitorIds, client_address, parse_networks

DAY1 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
DAY1_LATE = datetime(2026, 12, 1, 23, 59, 59, tzinfo=UTC)
DAY2 = datetime(2026, 12, 2, 0, 0, 1, tzinfo=UTC)


def test_the_same_visitor_has_one_id_a_day_and_another_the_next_day() -> None:
    ids = VisitorIds("example.org")
    a = ids.visitor_id("203.0.113.7", "Mozilla/5.0", DAY1)
    assert ids.visitor_id("203.0.113.7", "Mozilla/5.0", DAY1_LATE) == a
    b = ids.visitor_id("203.0.113.7", "Mozilla/5.0", DAY2)
    assert b != a
    assert ids.visitor_id("203.0.113.8", "Mozilla/5.0", DAY2) != b  # another address
    assert ids.visitor_id("203.0.113.7", "curl/8", DAY2) != b  # another agent


def test_ids_cannot_be_recomputed_without_the_salt_that_was_never_stored() -> None:
    """Another process (or this one after a restart) cannot reproduce an id: the salt is random
    and only in memory, so a list of all addresses cannot reverse it either."""
    first = VisitorIds("example.org").visitor_id("203.0.113.7", "Mozilla/5.0", DAY1)
    again = VisitorIds("example.org").visitor_id("203.0.113.7", "Mozilla/5.0", DAY1)
    assert first != again and len(first) == 20


def test_fields_cannot_shift_into_each_other() -> None:
    ids = VisitorIds("s")
    assert ids.visitor_id("1.2.3.4", "5", DAY1) != ids.visitor_id("1.2.3.", "45", DAY1)


TRUSTED = parse_networks("127.0.0.1, 10.0.0.0/8, ::1")


@pytest.mark.parametrize(
    ("peer", "xff", "expected"),
    [
        ("203.0.113.7", None, "203.0.113.7"),
        ("203.0.113.7", "198.51.100.1", "203.0.113.7"),  # an untrusted peer's header is ignored
        ("127.0.0.1", "198.51.100.1", "198.51.100.1"),  # through the local proxy
        ("127.0.0.1", "6.6.6.6, 198.51.100.1", "198.51.100.1"),  # the left part is the client's own claim
        ("127.0.0.1", "198.51.100.1, 10.1.2.3", "198.51.100.1"),  # a chain of trusted proxies
        ("127.0.0.1", "garbage", "127.0.0.1"),
        ("127.0.0.1", "10.0.0.1", "10.0.0.1"),  # only trusted hops: the first one
        ("::1", "2001:db8::1", "2001:db8::1"),
    ],
)
def test_the_client_address_comes_from_a_trusted_proxy_only(peer: str, xff: str | None, expected: str) -> None:
    assert client_address(peer, xff, TRUSTED) == expected


def test_bad_trusted_proxies_are_named() -> None:
    from footprint.settings import Settings

    with pytest.raises(ValueError, match="not-an-ip"):
        Settings(trusted_proxies="127.0.0.1, not-an-ip")


def test_the_snippet_endpoint_uses_them() -> None:
    from test_collector import QueueSender

    from footprint.collector import create_app
    from footprint.settings import Settings

    s = QueueSender()
    app = create_app(Settings(api_keys="k", trusted_proxies="127.0.0.1", site_origins="https://shop.example"), s)
    body = '{"key": "k", "batch": [{"type": "page", "anonymousId": "chosen", "properties": {"path": "/"}}]}'
    with TestClient(app) as c:  # the test client's peer is "testclient": not a trusted proxy
        for forwarded in ("198.51.100.1", "198.51.100.2"):
            r = c.post("/v1/b", content=body, headers={"Origin": "https://shop.example", "User-Agent": "UA",
                                                       "X-Forwarded-For": forwarded, "Content-Type": "text/plain"})
            assert r.status_code == 202, r.text
    a, b = (e["anonymous_id"] for e in s.sent)
    assert a == b != "chosen"  # the spoofed header made no second visitor; the page cannot choose its id
