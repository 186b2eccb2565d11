"""Countries end to end: events sent to the real collector (behind a trusted proxy, from an untrusted peer,
naming an address or a country) go through real Kafka and the consumer; each event's country is the same in
PostgreSQL and ClickHouse, no address is stored, and ``footprint stats`` gives the same countries in both
stores, under the country filter too; the read API filters by country."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from footprint.collector import create_app
from footprint.metrics import CollectorMetrics
from footprint.producer import EventProducer
from footprint.settings import Settings
from helpers import RunningConsumer, ch_client, settings_env, wait_for

pytestmark = pytest.mark.skipif(not Path("/usr/share/GeoIP/GeoIP.dat").exists(),
                                reason="Debian's geoip-database is not installed (apt-get install geoip-database)")
GB, US, DE = "81.2.69.160", "8.8.8.8", "193.99.144.80"
AUTH = {"Authorization": "Bearer test-key"}


def _countries(settings: Settings, ids: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """Each event's country in PostgreSQL and in ClickHouse."""
    with psycopg.connect(settings.pg_owner_dsn.get_secret_value()) as c:
        pg = dict(c.execute("SELECT event_id::text, country FROM events WHERE event_id::text = ANY(%s)",
                            (ids,)).fetchall())
    client = ch_client(settings)
    try:
        ch = dict(client.query("SELECT toString(event_id), country FROM events FINAL"
                               " WHERE toString(event_id) IN {ids:Array(String)}", parameters={"ids": ids}).result_rows)
    finally:
        client.close()
    return pg, ch


def _stored_text(settings: Settings, ids: list[str]) -> str:
    with psycopg.connect(settings.pg_owner_dsn.get_secret_value()) as c:
        rows = c.execute("SELECT to_jsonb(e)::text FROM events e WHERE event_id::text = ANY(%s)", (ids,)).fetchall()
    return "\n".join(r[0] for r in rows)


def test_each_events_country_lands_identically_in_both_stores_and_in_the_stats(settings: Settings) -> None:
    run = uuid.uuid4().hex[:8]
    producer = EventProducer(settings.kafka_bootstrap, settings.kafka_topic, CollectorMetrics())
    producer.start()
    sent: dict[str, str] = {}  # event id -> the country expected
    when = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def page(n: int, **context: Any) -> dict[str, Any]:
        return {"type": "page", "anonymousId": f"{run}-v{n}", "timestamp": when,
                "properties": {"path": f"/{run}/p{n}"}, "context": context}

    cases = [  # (peer, X-Forwarded-For, the client's country, events, their countries)
        (("127.0.0.1", 40000), GB, "GB", [page(1), page(2), page(3)], ["GB", "GB", "GB"]),  # behind the proxy
        (("127.0.0.1", 40001), US, "US", [page(4)], ["US"]),
        ((DE, 40002), US, "DE", [page(5)], ["DE"]),  # a spoofed header from an untrusted peer: the peer's country
        (("127.0.0.1", 40003), GB, "GB", [page(6, ip=US), page(7, location={"country": "fr"})], ["US", "FR"]),
        (("127.0.0.1", 40004), "10.1.2.3", "", [page(8)], [""]),  # a private address: not known
    ]
    try:
        for peer, forwarded, client_country, batch, countries in cases:
            with TestClient(create_app(settings, producer), client=peer) as client:
                who = client.get("/v1/whoami", headers={"X-Forwarded-For": forwarded}).json()
                assert who["country"] == client_country and who["peer"] == peer[0], who
                r = client.post("/v1/events", json={"batch": batch}, headers={**AUTH, "X-Forwarded-For": forwarded})
                assert r.status_code == 202, r.text
                sent.update(zip(r.json()["event_ids"], countries, strict=True))
    finally:
        assert producer.close(timeout=30) == 0

    ids = list(sent)
    with RunningConsumer(settings):
        wait_for(lambda: [len(x) for x in _countries(settings, ids)] == [len(ids)] * 2, timeout=120,
                 what="every event in both stores")
    pg, ch = _countries(settings, ids)
    assert pg == ch == sent
    stored = _stored_text(settings, ids)
    assert all(address not in stored for address in (GB, US, DE, "10.1.2.3"))  # the address is never stored

    env = settings_env(settings)
    day = datetime.now(UTC).date()
    window = ["--since", (day - timedelta(days=1)).isoformat(), "--until", (day + timedelta(days=1)).isoformat()]

    def stats(*args: str) -> dict[str, Any]:
        res = subprocess.run([sys.executable, "-m", "footprint.cli", "stats", "--json", *window, "--link", f"/{run}/",
                              *args], env=env, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr  # 0: both stores gave the same answers
        return {r["query"]: r for r in json.loads(res.stdout)}

    everything = stats()  # views and visitors per country, most views first, then by code ("" first)
    assert everything["countries"]["postgres"] == everything["countries"]["clickhouse"] == [
        ["GB", 3, 3], ["US", 2, 2], ["", 1, 1], ["DE", 1, 1], ["FR", 1, 1]]
    gb = stats("--country", "GB")
    assert all(r["same"] for r in gb.values())
    assert gb["countries"]["clickhouse"] == [["GB", 3, 3]]
    assert sorted(row[0] for row in gb["top_links"]["clickhouse"]) == [f"/{run}/p{n}" for n in (1, 2, 3)]
    unknown = stats("--country", "")
    assert unknown["countries"]["clickhouse"] == [["", 1, 1]]
    assert [row[0] for row in unknown["top_links"]["postgres"]] == [f"/{run}/p8"]


def test_the_read_api_filters_by_country(settings: Settings) -> None:
    from pydantic import SecretStr

    from footprint.contract import encode_event, make_event
    from footprint.sinks import ClickHouseSink, PostgresSink

    run = uuid.uuid4().hex[:8]
    now = datetime.now(UTC)
    events = [make_event(type="track", event=f"{run}-e", footprint_time=now, received_at=now, user_id=f"{run}-u",
                         enriched={"country": country}) for country in ("DE", "DE", "US", "")]
    for sink in (PostgresSink(settings.pg_dsn.get_secret_value()), ClickHouseSink(settings)):
        sink.write({e["event_id"]: encode_event(e) for e in events})
        sink.close()
    with TestClient(create_app(settings.model_copy(update={"private_keys": [SecretStr("read-key")]}),
                               _NoKafka())) as client:
        got = client.get("/v1/events", params={"event": f"{run}-e", "country": "DE"},
                         headers={"Authorization": "Bearer read-key"})
    assert got.status_code == 200, got.text
    assert sorted(e["eventId"] for e in got.json()["data"]) == sorted(e["event_id"] for e in events[:2])
    assert {e["country"] for e in got.json()["data"]} == {"DE"}


class _NoKafka:
    """The collector's sender where nothing is sent (the read API only)."""

    metrics = CollectorMetrics()

    async def deliver(self, events: list[tuple[str, bytes, str]], timeout: float,
                      received_at: datetime | None = None) -> str | None:
        return "not used"

    def ready(self) -> str | None:
        return None

    def queue_length(self) -> int:
        return 0
