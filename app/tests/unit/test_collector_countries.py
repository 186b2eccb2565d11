"""The collector's countries: the client address behind trusted proxies only, ``GET /v1/whoami``, the
country of each way in (API, snippet), a missing database (no country, ``/healthz`` says so, events accepted)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_collector import QueueSender

from footprint.collector import create_app
from footprint.settings import Settings

pytestmark = pytest.mark.skipif(not Path("/usr/share/GeoIP/GeoIP.dat").exists(),
                                reason="Debian's geoip-database is not installed (apt-get install geoip-database)")
GB, US, DE = "81.2.69.160", "8.8.8.8", "193.99.144.80"
AUTH = {"Authorization": "Bearer k1"}
TRACK = {"type": "track", "event": "e", "userId": "u"}


def app(sender: QueueSender, **kw: Any) -> Any:
    return create_app(Settings(api_keys="k1", site_origins="https://site.example", **kw), sender)


@pytest.mark.parametrize(("peer", "forwarded", "address", "country"), [
    (GB, None, GB, "GB"),
    (GB, US, GB, "GB"),  # a spoofed X-Forwarded-For from an untrusted peer is ignored
    ("127.0.0.1", US, US, "US"),  # behind the (trusted, loopback) proxy: its client
    ("127.0.0.1", f"{DE}, {US}", US, "US"),  # the right-most address the trusted proxy added, not the client's own
    ("10.1.2.3", f"{US}, 10.0.0.7", US, "US"),  # two proxies of a trusted network
    ("127.0.0.1", None, "127.0.0.1", ""),
])
def test_whoami_shows_the_address_and_country_as_the_collector_sees_them(
        peer: str, forwarded: str | None, address: str, country: str) -> None:
    with TestClient(app(QueueSender(), trusted_proxies="127.0.0.1,::1,10.0.0.0/8"), client=(peer, 1)) as c:
        r = c.get("/v1/whoami", headers={"X-Forwarded-For": forwarded} if forwarded else {})
    body = r.json()
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    assert (body["address"], body["country"], body["peer"]) == (address, country, peer)
    assert body["forwarded_for"] == forwarded
    assert body["databases"]["ipv4"]["path"] == "/usr/share/GeoIP/GeoIP.dat" and body["databases"]["ipv4"]["loaded"]
    assert body["databases"]["ipv6"]["built"]


def test_an_api_event_gets_the_senders_country_unless_it_names_one_or_an_ip() -> None:
    s = QueueSender()
    batch = [TRACK, {**TRACK, "context": {"ip": DE}}, {**TRACK, "context": {"location": {"country": "fr"}}},
             {**TRACK, "context": {"userAgent": "curl/8"}}]
    for plain in (True, False):  # the fast path and the contract's path (a non-ASCII text takes the second)
        body = {"batch": batch if plain else [*batch, {**TRACK, "event": "é"}]}
        with TestClient(app(s), client=(US, 1)) as c:
            assert c.post("/v1/events", json=body, headers={**AUTH, "X-Forwarded-For": GB}).status_code == 202
    assert [e["country"] for e in s.sent] == ["US", "DE", "FR", "US", "US", "DE", "FR", "US", "US"]


def test_a_snippet_event_gets_the_browsers_country_whatever_the_page_says() -> None:
    s = QueueSender()
    body = json.dumps({"key": "k1", "batch": [{"type": "page", "anonymousId": "x", "properties": {"path": "/"},
                                               "context": {"ip": US, "location": {"country": "FR"}}}]})
    with TestClient(app(s), client=("127.0.0.1", 1)) as c:
        r = c.post("/v1/b", content=body, headers={"Origin": "https://site.example", "X-Forwarded-For": DE,
                                                   "Content-Type": "text/plain"})
    assert r.status_code == 202 and [e["country"] for e in s.sent] == ["DE"]


def test_without_a_database_events_are_accepted_without_a_country_and_healthz_says_why(tmp_path: Path) -> None:
    s = QueueSender()
    missing = str(tmp_path / "GeoIP.dat")
    with TestClient(app(s, geoip_database=missing, geoip_database_v6=""), client=(US, 1)) as c:
        assert c.post("/v1/events", json={"batch": [TRACK]}, headers=AUTH).status_code == 202
        health = c.get("/healthz")
        who = c.get("/v1/whoami").json()
    assert [e["country"] for e in s.sent] == [""]
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert missing in health.json()["countries"] and "IPv6: off" in health.json()["countries"]
    assert who["country"] == "" and who["databases"]["ipv4"] == {
        "path": missing, "loaded": False, "info": "", "built": "", "error": who["databases"]["ipv4"]["error"]}
    assert "cannot read" in who["databases"]["ipv4"]["error"]
