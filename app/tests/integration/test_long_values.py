"""Long multibyte values: they must never stall the consumer (PostgreSQL's btree row limit is 2704 bytes)."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from footprint.collector import create_app
from footprint.contract import TEXT_MAX_BYTES, encode_event, make_event, truncate_utf8
from footprint.metrics import CollectorMetrics
from footprint.producer import EventProducer
from footprint.settings import Settings
from footprint.sinks import PostgresSink
from footprint.storewrite import store
from footprint.track import FootprintASGI, KafkaSender
from helpers import RunningConsumer, ch_client, wait_for


def _pg_links(settings: Settings, links: list[str]) -> dict[str, int]:
    with psycopg.connect(settings.pg_owner_dsn.get_secret_value()) as c:
        rows = c.execute("SELECT link, count(*) FROM events WHERE link = ANY(%s) GROUP BY 1", (links,)).fetchall()
    return {r[0]: r[1] for r in rows}


def _ch_links(settings: Settings, links: list[str]) -> dict[str, int]:
    c = ch_client(settings)
    try:
        rows = c.query("SELECT link, count() FROM events FINAL WHERE link IN {links:Array(String)} GROUP BY 1",
                       parameters={"links": links}).result_rows
        return {r[0]: r[1] for r in rows}
    finally:
        c.close()


def test_a_2048_char_multibyte_path_is_stored_in_both_stores_and_the_consumer_goes_on(settings: Settings) -> None:
    rnd = random.Random(7)
    tag = uuid.uuid4().hex[:8]
    # 2048 characters of 3 bytes each (6144 bytes): one repeated character, and varied (incompressible) ones
    same = f"/{tag}/" + "€" * 2048
    varied = f"/{tag}/" + "".join(chr(0x4E00 + rnd.randrange(20000)) for _ in range(2048))
    after = f"/{tag}/after"
    producer = EventProducer(settings.kafka_bootstrap, settings.kafka_topic, CollectorMetrics())
    producer.start()
    sender = KafkaSender(settings.kafka_bootstrap, settings.kafka_topic)
    site = FootprintASGI(FastAPI(), sender)  # a site's app with the middleware: every path is a page view
    try:
        with TestClient(site) as pages, TestClient(create_app(settings, producer)) as collector:
            assert pages.get(same).status_code == 404
            assert pages.get(varied).status_code == 404
            r = collector.post("/v1/events", headers={"Authorization": "Bearer test-key"}, json={"batch": [
                {"type": "page", "anonymousId": "a" * 200, "properties": {"path": varied + "/api"}},
            ]})
            assert r.status_code == 202, r.text
            assert pages.get(after).status_code == 404
    finally:
        sender.close(timeout=30)
        assert producer.close(timeout=30) == 0
    assert sender.dropped == 0
    expected = [truncate_utf8(same, TEXT_MAX_BYTES), truncate_utf8(varied, TEXT_MAX_BYTES),
                truncate_utf8(varied + "/api", TEXT_MAX_BYTES), after]
    assert all(len(link.encode()) <= TEXT_MAX_BYTES for link in expected)
    expected_counts = {link: expected.count(link) for link in expected}  # the API path truncates like the GET
    with RunningConsumer(settings):
        wait_for(lambda: _pg_links(settings, expected) == expected_counts
                 and _ch_links(settings, expected) == expected_counts, what="long-path events in both stores")
        # and the consumer keeps going with later events
        later = make_event(type="page", method="GET", link=f"/{tag}/later", anonymous_id="x",
                           footprint_time=datetime.now(UTC), received_at=datetime.now(UTC))
        from helpers import produce

        produce(settings, [later])
        wait_for(lambda: _pg_links(settings, [later["link"]]) == {later["link"]: 1}
                 and _ch_links(settings, [later["link"]]) == {later["link"]: 1}, what="later event stored")


def test_a_row_postgres_refuses_is_told_from_an_outage_by_its_probe(settings: Settings) -> None:
    """Bypassing the contract: PostgreSQL refuses an index row over 2704 bytes (SQLSTATE 54000) while it
    takes its known-good probe event, so only that event is rejected, and the connection stays usable."""
    rnd = random.Random(8)
    now = datetime.now(UTC)
    huge = "/" + "".join(chr(0x4E00 + rnd.randrange(20000)) for _ in range(3000))  # ~9 KB, incompressible
    bad = make_event(type="page", method="GET", link=huge, anonymous_id="x", footprint_time=now, received_at=now)
    good = make_event(type="page", method="GET", link="/fine", anonymous_id="x", footprint_time=now, received_at=now)
    docs = {e["event_id"]: encode_event(e) for e in (bad, good)}
    sink = PostgresSink(settings.pg_dsn.get_secret_value())
    try:
        with pytest.raises(psycopg.errors.ProgramLimitExceeded):
            sink.write({bad["event_id"]: docs[bad["event_id"]]})
        rejected = store(sink, docs)
        assert [key for key, _ in rejected] == [bad["event_id"]] and "index row" in rejected[0][1]
    finally:
        sink.close()
    with psycopg.connect(settings.pg_owner_dsn.get_secret_value()) as c:
        assert c.execute("SELECT count(*) FROM events WHERE event_id = %s", (good["event_id"],)).fetchone() == (1,)
        # written to PostgreSQL alone, on purpose: removed, so that later tests comparing the two stores
        # over the shared database (the last hour's events per minute) see the same data in both
        c.execute("DELETE FROM events WHERE event_id = %s", (good["event_id"],))
