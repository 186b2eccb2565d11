"""The middleware inside a sample FastAPI app (straight to Kafka) and a sample WSGI app (batches to a
real collector over HTTP), ending in both stores."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from footprint.settings import Settings
from footprint.track import (
    FootprintASGI,
    FootprintWSGI,
    HttpSender,
    KafkaRelaySender,
    KafkaSender,
    PageRecorder,
    Sender,
)
from helpers import RunningConsumer, ch_client, settings_env, wait_for
from services import free_port

BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"


def _stored(settings: Settings, prefix: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(method, link, bot, referrer_host, utm_source) of the page events under ``prefix`` in PostgreSQL and in
    ClickHouse."""
    import psycopg

    with psycopg.connect(settings.pg_owner_dsn.get_secret_value()) as c:
        pg = c.execute("SELECT method, link, bot, referrer_host, utm_source FROM events WHERE link LIKE %s"
                       " ORDER BY link, method, bot", (prefix + "%",)).fetchall()
    ch = ch_client(settings)
    try:
        rows = ch.query("SELECT method, link, bot, referrer_host, utm_source FROM events FINAL"
                        " WHERE startsWith(link, {p:String}) ORDER BY link, method, bot",
                        parameters={"p": prefix}).result_rows
    finally:
        ch.close()
    return [tuple(r) for r in pg], [tuple(r) for r in rows]  # type: ignore[misc]


@pytest.mark.parametrize("kind", ["KafkaSender", "KafkaRelaySender"])
def test_a_fastapi_app_sends_its_page_views_straight_to_kafka(settings: Settings, kind: str) -> None:
    """From the app's own thread (KafkaSender) or from a relay process of its own (KafkaRelaySender)."""
    app = FastAPI()

    @app.get("/{path:path}")
    async def page(path: str) -> dict[str, str]:
        return {"ok": path}

    prefix = f"/asgi-{kind}/"
    senders: dict[str, Callable[[str, str], Sender]] = {"KafkaSender": KafkaSender,
                                                         "KafkaRelaySender": KafkaRelaySender}
    sender = senders[kind](settings.kafka_bootstrap, settings.kafka_topic)
    tracked = FootprintASGI(app, sender, PageRecorder(site="shop", skip=("/static/",)))
    with TestClient(tracked) as client:
        assert client.get(f"{prefix}?utm_source=news", headers={"User-Agent": BROWSER,  # the relay makes the
                                                                 "Referer": "https://news.example.com/a"}).is_success
        for path in (f"{prefix}pricing", "/static/x.css"):  # event from the fields: both senders store the same
            assert client.get(path, headers={"User-Agent": BROWSER}).status_code == 200
        assert client.get(f"{prefix}pricing", headers={"User-Agent": "Googlebot/2.1"}).status_code == 200
        assert client.post(f"{prefix}signup", headers={"User-Agent": BROWSER}).status_code == 405  # recorded too
    sender.close()
    assert sender.dropped == 0
    expected = [("GET", prefix, False, "news.example.com", "news"), ("GET", f"{prefix}pricing", False, "", ""),
                ("GET", f"{prefix}pricing", True, "", ""), ("POST", f"{prefix}signup", False, "", "")]  # a bot: flagged
    with RunningConsumer(settings):
        wait_for(lambda: _stored(settings, prefix) == (expected, expected), what="both stores")


def test_a_wsgi_app_sends_its_page_views_to_the_collector(settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    log = (tmp_path / "collector.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "footprint.cli", "serve"], stdout=log, stderr=subprocess.STDOUT,
                            env=settings_env(settings, collector_port=port, api_keys="site-key"))
    try:
        wait_for(lambda: _ready(port), timeout=60, what="collector")

        def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"hello"]

        sender = HttpSender(f"http://127.0.0.1:{port}", key="site-key", flush_seconds=0.2)
        app = FootprintWSGI(wsgi_app, sender)
        client = httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://shop")
        for path in ("/wsgi/", "/wsgi/docs"):
            assert client.get(path, headers={"User-Agent": BROWSER}).text == "hello"
        assert client.get("/wsgi/docs", headers={"User-Agent": "Googlebot/2.1"}).text == "hello"
        sender.close()
        assert (sender.sent, sender.dropped) == (3, 0)
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    expected = [("GET", "/wsgi/", False, "", ""), ("GET", "/wsgi/docs", False, "", ""),
                ("GET", "/wsgi/docs", True, "", "")]
    with RunningConsumer(settings):
        wait_for(lambda: _stored(settings, "/wsgi/") == (expected, expected), what="both stores")


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
