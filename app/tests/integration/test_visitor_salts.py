"""One visitor id per visitor per day across every collector process and host (issue 28, item 1).

Two collector apps (as two worker processes or two app hosts would run) share the day's salt
through the real PostgreSQL: the same browser gets the same id from both. The salt of a past day
is destroyed, and the reader role (dashboard, read API) cannot read the salts.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from footprint.collector import create_app
from footprint.metrics import CollectorMetrics
from footprint.salts import SharedSalts
from footprint.settings import Settings
from helpers import wait_for

UA = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"


class Kept:
    """Stands in for the Kafka producer: keeps what it is given (the stores are not the subject)."""

    def __init__(self) -> None:
        self.metrics = CollectorMetrics()
        self.sent: list[dict[str, Any]] = []

    async def deliver(self, events: list[tuple[str, bytes, str]], timeout: float,
                      received_at: Any = None) -> str | None:
        self.sent.extend(json.loads(value) for _, value, _ in events)
        return None

    def ready(self) -> str | None:
        return None

    def queue_length(self) -> int:
        return 0


def _page_view(client: TestClient) -> None:
    r = client.post("/v1/b", content=json.dumps({"key": "test-key", "batch": [
        {"type": "page", "properties": {"path": "/pricing"}}]}),
        headers={"Origin": "https://shop.example", "Content-Type": "text/plain", "User-Agent": UA})
    assert r.status_code == 202, r.text


def test_two_collector_processes_give_a_visitor_one_id(base_settings: Settings) -> None:
    settings = base_settings.model_copy(update={"site_origins": "https://shop.example", "site": "shop"})
    kept = [Kept(), Kept()]
    apps = [create_app(settings, k) for k in kept]
    with TestClient(apps[0], client=("198.51.100.5", 1)) as a, TestClient(apps[1], client=("198.51.100.5", 2)) as b:
        # each app's refresh runs at its start; wait until both hold the shared salt
        wait_for(lambda: _shared_known(settings), what="today's salt in PostgreSQL")
        time.sleep(0.5)
        for client in (a, b, a, b):
            _page_view(client)
    ids = {e["anonymous_id"] for k in kept for e in k.sent}
    assert len(ids) == 1, f"one browser got {len(ids)} visitor ids from two collector processes"


def _shared_known(settings: Settings) -> bool:
    with psycopg.connect(settings.pg_owner_dsn.get_secret_value()) as c:
        row = c.execute("SELECT count(*) FROM visitor_salts WHERE day = %s", (datetime.now(UTC).date(),)).fetchone()
    return bool(row and row[0] == 1)


def test_past_salts_are_destroyed_and_the_reader_cannot_see_any(base_settings: Settings) -> None:
    today = [date(2031, 5, 1)]
    salts = SharedSalts(base_settings.pg_dsn.get_secret_value(), today=lambda: today[0])
    other = SharedSalts(base_settings.pg_dsn.get_secret_value(), today=lambda: today[0])
    salts.refresh()
    other.refresh()
    first = salts.salt_for(today[0])
    assert first == other.salt_for(today[0]) and len(first) == 32
    tomorrow = salts.salt_for(today[0] + timedelta(days=1))
    assert tomorrow != first  # made ahead: every process switches at midnight without asking
    today[0] += timedelta(days=1)
    other.refresh()
    with psycopg.connect(base_settings.pg_owner_dsn.get_secret_value()) as c:
        days = {r[0] for r in c.execute("SELECT day FROM visitor_salts WHERE day >= %s", (date(2031, 5, 1),))}
    assert days == {date(2031, 5, 2), date(2031, 5, 3)}  # yesterday's salt is gone
    assert other.salt_for(date(2031, 5, 2)) == tomorrow
    with psycopg.connect(base_settings.pg_reader_dsn.get_secret_value()) as c, pytest.raises(
            psycopg.errors.InsufficientPrivilege):
        c.execute("SELECT salt FROM visitor_salts")
    with psycopg.connect(base_settings.pg_owner_dsn.get_secret_value()) as c:
        c.execute("DELETE FROM visitor_salts WHERE day >= %s", (date(2031, 5, 1),))


def test_without_postgresql_a_process_uses_its_own_salt_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    salts = SharedSalts("host=127.0.0.1 port=1 dbname=x user=x connect_timeout=1", refresh_seconds=0.2)
    stop = threading.Event()
    salts.keep_fresh(stop)
    try:
        day = datetime.now(UTC).date()
        assert salts.salt_for(day) == salts.salt_for(day)  # stable within the process
        wait_for(lambda: any("cannot read the shared visitor salt" in r.getMessage() for r in caplog.records),
                 timeout=10, what="the warning")
        assert any("uses its own" in r.getMessage() for r in caplog.records)
    finally:
        stop.set()
