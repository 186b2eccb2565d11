"""The browser snippet in a real browser (Debian's chromium, headless, driven by playwright) against a
real collector (uvicorn) and Kafka: page views, single-page-app navigation and custom events are
recorded from an allowed site; nothing from another origin, nothing under Do-Not-Track or GPC."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from footprint.settings import Settings
from helpers import settings_env, wait_for
from services import free_port

CHROMIUM = "/usr/bin/chromium"
DESKTOP_CHROME = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
                  "Safari/537.36")
PAGE = """<!doctype html><html><head><title>shop</title>
<script defer src="http://127.0.0.1:{collector}/f.js" data-key="{key}"></script></head>
<body><button id="spa" onclick="history.pushState({{}}, '', '/shop/cart')">cart</button></body></html>"""


@pytest.fixture
def collector(settings: Settings, tmp_path: Path) -> Iterator[dict[str, Any]]:
    port, site, other = free_port(), free_port(), free_port()
    env = settings_env(settings, collector_port=port, site_origins=f"http://127.0.0.1:{site}",
                       api_keys="public-key", log_level="WARNING")
    log = (tmp_path / "collector.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "footprint.cli", "serve"], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    servers = []
    for p in (site, other):
        root = tmp_path / str(p)
        for path in ("shop", "dnt", "gpc", "other", "sentinel"):
            (root / path).mkdir(parents=True)
            (root / path / "index.html").write_text(PAGE.format(collector=port, key="public-key"))
        server = ThreadingHTTPServer(("127.0.0.1", p), functools.partial(_Quiet, directory=str(root)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    try:
        wait_for(lambda: _ready(port), timeout=60, what="collector ready")
        yield {"port": port, "site": f"http://127.0.0.1:{site}", "other": f"http://127.0.0.1:{other}"}
    finally:
        for server in servers:
            server.shutdown()
        proc.terminate()
        proc.wait(30)
        log.close()
    assert "Traceback" not in (tmp_path / "collector.log").read_text()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _events(settings: Settings, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Every event on the topic so far: read from the start of each partition up to its end as it was at the call
    (not for a fixed time: under load a new consumer may take longer than that to get its first record)."""
    c = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"read-{uuid.uuid4()}",
                  "enable.auto.commit": False})
    out = []
    try:
        partitions = c.list_topics(settings.kafka_topic, timeout=10).topics[settings.kafka_topic].partitions
        marks = {p: c.get_watermark_offsets(TopicPartition(settings.kafka_topic, p), timeout=10) for p in partitions}
        ends = {p: high for p, (_, high) in marks.items()}
        left = {p for p, (low, high) in marks.items() if high > low}  # no record left in it: nothing to wait for
        c.assign([TopicPartition(settings.kafka_topic, p, OFFSET_BEGINNING) for p in left])
        deadline = time.monotonic() + timeout
        while left:
            assert time.monotonic() < deadline, f"the topic's records up to {ends} not read within {timeout} s"
            m = c.poll(0.2)
            if m is None or m.error():
                continue
            value, offset, partition = m.value(), m.offset(), m.partition()
            if value is None or offset is None or partition is None:
                continue
            out.append(json.loads(value))
            if offset + 1 >= ends[partition]:
                left.discard(partition)
    finally:
        c.close()
    return out


def test_the_snippet_records_pages_spa_navigation_and_custom_events(settings: Settings,
                                                                   collector: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    assert os.path.exists(CHROMIUM), "Debian's chromium is needed (make deps installs it)"
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            # pages that must send nothing: another origin, Do-Not-Track, Global Privacy Control
            page = browser.new_page()
            page.goto(f"{collector['other']}/other/")
            page.wait_for_function("window.footprint !== undefined")
            for flag, path in (("doNotTrack", "dnt"), ("globalPrivacyControl", "gpc")):
                ctx = browser.new_context()
                value = "'1'" if flag == "doNotTrack" else "true"
                ctx.add_init_script(f"Object.defineProperty(navigator, '{flag}', {{get: () => {value}}})")
                quiet = ctx.new_page()
                quiet.goto(f"{collector['site']}/{path}/")
                quiet.wait_for_function("window.footprint !== undefined")
                quiet.evaluate("footprint.track('Quiet')")
                ctx.close()
            # the real visit
            page = browser.new_page(user_agent=DESKTOP_CHROME)  # headless Chromium's own agent is a bot's
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{collector['site']}/shop/?utm_source=newsletter&utm_campaign=winter&email=a@b.c",
                      referer="https://news.example.com/story?id=7")
            page.wait_for_function("window.footprint !== undefined")
            page.click("#spa")  # history.pushState: a single-page-app navigation
            page.evaluate("footprint.track('Signup', {plan: 'pro', seats: 3})")
            page.goto(f"{collector['site']}/sentinel/")
            page.wait_for_function("window.footprint !== undefined")
        finally:
            browser.close()

    def visit() -> list[dict[str, Any]]:
        return [e for e in _events(settings) if e["type"] == "track" or e["link"].startswith("/s")]

    wait_for(lambda: any(e["link"] == "/sentinel/" for e in visit()), timeout=30, what="the sentinel page view")
    events = visit()
    pages = [e["link"] for e in sorted(events, key=lambda e: e["footprint_time"]) if e["type"] == "page"]
    assert pages == ["/shop/", "/shop/cart", "/sentinel/"], pages  # in the order they happened (the page's clock)
    [track] = [e for e in events if e["type"] == "track"]
    assert track["event"] == "Signup" and track["properties"] == {"plan": "pro", "seats": 3}
    assert len({e["anonymous_id"] for e in events}) == 1 and events[0]["anonymous_id"]  # one visitor, no cookie
    first = next(e for e in events if e["link"] == "/shop/")
    assert (first["referrer_host"], first["utm_source"], first["utm_campaign"]) == (
        "news.example.com", "newsletter", "winter")  # and nothing else of the query string
    assert "a@b.c" not in json.dumps(events)
    assert {(e["browser"], e["os"], e["device"], e["bot"]) for e in events} == {("Chrome", "Linux", "desktop", False)}
    everything = _events(settings)
    assert not [e for e in everything if e["link"] in ("/other/", "/dnt/", "/gpc/") or e["event"] == "Quiet"]
    assert errors == []


def test_the_ingest_endpoint_answers_cors_for_the_site_only(collector: dict[str, Any]) -> None:
    url = f"http://127.0.0.1:{collector['port']}/v1/b"
    body = json.dumps({"key": "public-key", "batch": [{"type": "page", "properties": {"path": "/x"}}]})
    ok = httpx.post(url, content=body, headers={"Origin": collector["site"], "Content-Type": "text/plain"})
    assert ok.status_code == 202 and ok.headers["access-control-allow-origin"] == collector["site"]
    other = httpx.post(url, content=body, headers={"Origin": collector["other"], "Content-Type": "text/plain"})
    assert other.status_code == 403 and "access-control-allow-origin" not in other.headers
    none = httpx.post(url, content=body, headers={"Content-Type": "text/plain"})
    assert none.status_code == 403
    wrong_key = httpx.post(url, content=body.replace("public-key", "nope"), headers={"Origin": collector["site"]})
    assert wrong_key.status_code == 401
    bad = httpx.post(url, content=b'{"key": "public-key", "batch": [{"type": "page", "properties": 1}]}',
                     headers={"Origin": collector["site"]})
    assert bad.status_code == 400 and "batch[0].properties" in bad.json()["detail"]
    pre = httpx.options(url, headers={"Origin": collector["site"], "Access-Control-Request-Method": "POST"})
    assert pre.status_code == 204 and pre.headers["access-control-allow-methods"] == "POST"
    js = httpx.get(f"http://127.0.0.1:{collector['port']}/f.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("application/javascript")
    import gzip

    assert len(gzip.compress(js.content, 9)) < 2048
