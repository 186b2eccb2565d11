"""Countries on a deployed app host (issue 35, item 2): the role installed the country databases and gave the
collector their paths; `GET /v1/whoami` answers with this test's own address as the collector sees it behind
nginx (the trusted proxy) and its country; an event sent from here carries that country, and one sent for a
visitor (`context.ip`) the visitor's, identically in PostgreSQL and ClickHouse; no address is stored.
Every event is a probe (`footprint_probe`), so no statistic counts it."""

from __future__ import annotations

import socket
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import setting
from test_delivery import bearer, ch_rows, endpoints, pg_rows, wait_for

__all__ = ["endpoints"]  # the fixture, shared with test_delivery

testinfra_hosts = ["ansible://app"]
VISITOR = "8.8.8.8"  # US in every edition of the legacy database since 2010


def _my_address(collector: str) -> str:
    """The address this machine reaches the collector's host from (what the collector should see)."""
    url = urlsplit(collector)
    with socket.socket(socket.AF_INET6 if ":" in (url.hostname or "") else socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((url.hostname, url.port or 443))
        return str(s.getsockname()[0])


@pytest.fixture(scope="module")
def whoami(endpoints: dict[str, Any]) -> dict[str, Any]:
    with httpx.Client(timeout=10, verify=endpoints["verify"]) as http:
        r = http.get(f"{endpoints['collector']}/v1/whoami")
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_the_country_databases_are_installed_and_read(host: Any, hostvars: dict[str, Any],
                                                      whoami: dict[str, Any]) -> None:
    if not setting(hostvars, "footprint_geoip_enabled"):
        assert not whoami["databases"]["ipv4"]["loaded"]
        pytest.skip("footprint_geoip_enabled is false: no country databases on purpose")
    assert host.package("geoip-database").is_installed
    for version in ("ipv4", "ipv6"):
        db = whoami["databases"][version]
        assert db["loaded"], db
        assert host.file(db["path"]).is_file
        assert db["info"] and db["built"]


def test_whoami_shows_this_tests_address_behind_the_proxy(endpoints: dict[str, Any],
                                                          whoami: dict[str, Any]) -> None:
    assert whoami["address"] == _my_address(endpoints["collector"]), whoami
    assert len(whoami["country"]) in (0, 2)


def test_an_events_country_lands_identically_in_both_stores(endpoints: dict[str, Any],
                                                           whoami: dict[str, Any]) -> None:
    ep = endpoints
    marker = uuid.uuid4().hex
    when = (datetime.now(UTC) - timedelta(minutes=2)).isoformat()
    props = {"footprint_probe": True, "probe_id": marker}
    batch = [
        {"type": "track", "event": "Country Probe", "userId": f"c-{marker}", "properties": props, "timestamp": when},
        {"type": "track", "event": "Country Probe", "userId": f"c-{marker}", "properties": props, "timestamp": when,
         "context": {"ip": VISITOR}},  # a server sending for its visitor
    ]
    with httpx.Client(timeout=10, verify=ep["verify"]) as http:
        r = http.post(f"{ep['collector']}/v1/events", json={"batch": batch}, headers=bearer(ep["api_key"]))
    assert r.status_code == 202, r.text
    ids = r.json()["event_ids"]
    geoip = whoami["databases"]["ipv4"]["loaded"]
    expected = {ids[0]: whoami["country"], ids[1]: "US" if geoip else ""}
    pg = wait_for("country probes in PostgreSQL",
                  lambda: (rows := pg_rows(ep, "event_id = ANY(%s)", (ids,))) and len(rows) == 2 and rows)
    ch = wait_for("country probes in ClickHouse",
                  lambda: (rows := ch_rows(ep, "event_id IN {ids:Array(UUID)}", {"ids": ids})) and len(rows) == 2
                  and rows)
    assert {str(row["event_id"]): row["country"] for row in pg} == expected
    assert {str(row["event_id"]): row["country"] for row in ch} == expected
    assert all(VISITOR not in str(row) and whoami["address"] not in str(row) for row in (*pg, *ch))
