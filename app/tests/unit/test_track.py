"""The middleware for the user's own app, with in-memory senders (the real ones: integration tests)."""

from __future__ import annotations

import gc
import json
import os
import signal
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from footprint.contract import canonical, validate_batch
from footprint.enrich import enrich
from footprint.track import FootprintASGI, FootprintWSGI, PageRecorder
from footprint.track.lines import page_line, read_line
from footprint.track.record import Page, PageRequest


class ListSender:
    def __init__(self, explode: bool = False) -> None:
        self.events: list[dict[str, Any]] = []
        self.dropped = 0
        self.explode = explode

    def send(self, event: dict[str, Any]) -> None:
        if self.explode:
            raise RuntimeError("broken sender")
        self.events.append(event)

    def close(self, timeout: float = 0) -> None:
        pass


def fastapi_app(sender: ListSender, recorder: PageRecorder | None = None) -> Any:
    app = FastAPI()

    @app.get("/{path:path}")
    async def any_page(path: str) -> dict[str, str]:
        return {"path": path}

    return FootprintASGI(app, sender, recorder or PageRecorder(site="shop", skip=("/static/", "/healthz")))


def test_asgi_records_pages_skips_what_it_should_and_the_events_obey_the_contract() -> None:
    sender = ListSender()
    with TestClient(fastapi_app(sender)) as c:
        assert c.get("/pricing", headers={"Referer": "https://news.example.com/a?token=secret"}).status_code == 200
        c.get("/static/app.css")
        c.get("/healthz")
        c.post("/pricing")
    assert [(e["properties"]["method"], e["properties"]["path"]) for e in sender.events] == [
        ("GET", "/pricing"), ("POST", "/pricing")]
    assert sender.events[0]["context"]["page"] == {"referrer": "news.example.com"}  # the host, no token
    wire = validate_batch({"batch": sender.events}, datetime.now(UTC), 10, enrich)
    assert [(w["type"], w["method"], w["link"], w["referrer_host"]) for w in wire] == [
        ("page", "GET", "/pricing", "news.example.com"), ("page", "POST", "/pricing", "")]


def test_the_page_event_carries_what_the_enrichment_needs_and_a_link_within_the_site_is_no_referrer() -> None:
    sender = ListSender()
    chrome = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/131.0 Safari/537.36")
    with TestClient(fastapi_app(sender), base_url="http://shop.example") as c:
        c.get("/a?utm_source=news&utm_medium=email&utm_campaign=winter&q=private",
              headers={"Referer": "http://shop.example/home", "User-Agent": chrome})
        c.get("/b", headers={"Referer": "http://[::1", "User-Agent": "Googlebot/2.1 (+http://www.google.com/bot.html)"})
    [a, b] = validate_batch({"batch": sender.events}, datetime.now(UTC), 10, enrich)
    assert (a["referrer_host"], a["utm_source"], a["utm_medium"], a["utm_campaign"], a["utm_term"]) == (
        "", "news", "email", "winter", "")
    assert (a["browser"], a["os"], a["device"], a["bot"]) == ("Chrome", "Windows", "desktop", False)
    assert (b["referrer_host"], b["device"], b["bot"]) == ("", "bot", True)  # a broken Referer is no referrer
    assert "private" not in json.dumps([a, b])  # the rest of the query string is not stored


@pytest.mark.parametrize("path", ["/x%00y", "/%ed%a0%80", "/%ff", "/" + "%e2%82%ac" * 3000])
def test_odd_paths_are_recorded_as_storable_page_events(path: str) -> None:
    sender = ListSender()
    with TestClient(fastapi_app(sender)) as c:
        assert c.get(path).status_code == 200
    [wire] = validate_batch({"batch": sender.events}, datetime.now(UTC), 10, enrich)
    assert canonical(wire) == wire  # the consumer will store it as it is


def test_a_broken_sender_never_fails_the_request() -> None:
    with TestClient(fastapi_app(ListSender(explode=True))) as c:
        assert c.get("/x").status_code == 200

    def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    client = httpx.Client(transport=httpx.WSGITransport(app=FootprintWSGI(wsgi_app, ListSender(explode=True))),
                          base_url="http://shop")
    assert client.get("/x").status_code == 200


def test_wsgi_records_the_utf8_path_and_the_forwarded_client_only_behind_a_trusted_proxy() -> None:
    sender = ListSender()

    def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    app = FootprintWSGI(wsgi_app, sender, PageRecorder(site="shop", trusted_proxies="127.0.0.1"))
    client = httpx.Client(transport=httpx.WSGITransport(app=app, remote_addr="127.0.0.1"), base_url="http://shop")
    client.get("/caf%C3%A9", headers={"X-Forwarded-For": "198.51.100.1", "User-Agent": "UA"})
    client.get("/b", headers={"X-Forwarded-For": "198.51.100.2", "User-Agent": "UA"})
    client.get("/c", headers={"X-Forwarded-For": "198.51.100.1", "User-Agent": "UA"})
    paths = [e["properties"]["path"] for e in sender.events]
    visitors = [e["anonymousId"] for e in sender.events]
    assert paths == ["/café", "/b", "/c"]
    assert visitors[0] == visitors[2] != visitors[1]  # two clients behind the proxy, told apart


@pytest.mark.parametrize("headers", [{"DNT": "1"}, {"Sec-GPC": "1"}, {"DNT": "1", "Sec-GPC": "1"}])
def test_a_browser_that_asks_not_to_be_tracked_is_not_recorded_unless_switched_off(headers: dict[str, str]) -> None:
    """As the snippet does (issue 28): DNT and Global Privacy Control, in both middlewares."""
    def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    for honour, expected in ((True, ["/other"]), (False, ["/asked", "/other"])):
        asgi_sender, wsgi_sender = ListSender(), ListSender()
        recorder = PageRecorder(site="shop", honour_privacy_signals=honour)
        app = FastAPI()

        @app.get("/{path:path}")
        async def any_page(path: str) -> dict[str, str]:
            return {"path": path}

        with TestClient(FootprintASGI(app, asgi_sender, recorder)) as c:
            assert c.get("/asked", headers=headers).status_code == 200  # the page itself is served
            c.get("/other", headers={"DNT": "0"})
        wsgi = FootprintWSGI(wsgi_app, wsgi_sender, PageRecorder(site="shop", honour_privacy_signals=honour))
        client = httpx.Client(transport=httpx.WSGITransport(app=wsgi), base_url="http://shop")
        assert client.get("/asked", headers=headers).text == "ok"
        client.get("/other", headers={"Sec-GPC": "0"})
        for sender in (asgi_sender, wsgi_sender):
            assert [e["properties"]["path"] for e in sender.events] == expected, (honour, headers)
        assert recorder.declined == (1 if honour else 0)


def test_the_event_is_built_once_the_response_is_sent_and_also_when_the_app_fails() -> None:
    """The request path keeps only the request's fields; the event (the same as ever) follows the response."""
    sender = ListSender()

    async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
        assert sender.events == []  # not built before the app ran
        if scope["path"] == "/boom":
            raise RuntimeError("the app failed")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        assert sender.events == []  # nor while it answers

    c = TestClient(FootprintASGI(asgi_app, sender), raise_server_exceptions=False)  # no lifespan: HTTP only
    assert c.get("/a", headers={"User-Agent": "UA"}).text == "ok"
    assert c.get("/boom").status_code == 500
    assert [e["properties"]["path"] for e in sender.events] == ["/a", "/boom"]
    assert sender.events[0]["context"]["userAgent"] == "UA"

    wsgi_sender = ListSender()

    def wsgi_app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"o"
        assert wsgi_sender.events == []  # not while the body is being sent
        yield b"k"

    def failing_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise RuntimeError("the app failed")

    body = FootprintWSGI(wsgi_app, wsgi_sender)(
        {"PATH_INFO": "/a", "REQUEST_METHOD": "GET", "REMOTE_ADDR": "198.51.100.7"}, lambda *a: None)
    assert b"".join(body) == b"ok" and wsgi_sender.events == []
    body.close()  # type: ignore[attr-defined]  # the server closes it once the body is sent
    with pytest.raises(RuntimeError):
        FootprintWSGI(failing_app, wsgi_sender)({"PATH_INFO": "/boom", "REQUEST_METHOD": "GET"}, lambda *a: None)
    assert [e["properties"]["path"] for e in wsgi_sender.events] == ["/a", "/boom"]
    assert wsgi_sender.events[0]["context"]["ip"] == "198.51.100.7"


class PageLineSender(ListSender):
    """A sender that takes the request itself, as ``KafkaRelaySender`` does: its lines, as the relay reads them."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[bytes] = []

    def send_request(self, request: PageRequest, recorder: PageRecorder) -> None:
        self.lines.append(page_line(recorder.page_of(request), time.time()))


_any_text = st.text(st.characters(blacklist_categories=()), max_size=40)  # surrogates, controls, NUL included


@settings(max_examples=300, deadline=None)
@given(st.builds(Page, _any_text, _any_text, _any_text, _any_text, _any_text, st.none() | _any_text, _any_text,
                 st.none() | _any_text, st.datetimes(timezones=st.just(UTC))),
       st.floats(0, 4e9))
def test_a_page_line_becomes_in_the_relay_the_event_the_apps_process_would_build(page: Page, received: float) -> None:
    event, moment = read_line(page_line(page, received))
    here = page.event()
    assert event.pop("messageId") != here.pop("messageId")  # each event its own id (the relay's, once)
    assert event == here
    assert moment == datetime.fromtimestamp(received, UTC)


def test_the_middleware_hands_the_request_to_a_sender_that_takes_it_and_the_relay_builds_the_same_event() -> None:
    events, lines = ListSender(), PageLineSender()
    recorder = PageRecorder(site="shop", skip=("/static/",))  # one salt: one visitor id
    for sender in (events, lines):
        with TestClient(fastapi_app(sender, recorder), base_url="http://shop.example") as c:
            c.get("/a?utm_source=news", headers={"Referer": "https://news.example.com/x", "User-Agent": "UA"})
            c.get("/static/app.css")  # skipped: no line either
    assert lines.events == [] and len(lines.lines) == 1  # the request, not an event
    [(built, received)] = [read_line(line) for line in lines.lines]
    [a] = validate_batch({"batch": events.events}, received, 10, enrich)
    [b] = validate_batch({"batch": [built]}, received, 10, enrich)
    differ = {"event_id", "footprint_time"}  # a random id each; each request its own time
    assert {k: v for k, v in a.items() if k not in differ} == {k: v for k, v in b.items() if k not in differ}
    assert (b["link"], b["referrer_host"], b["utm_source"]) == ("/a", "news.example.com", "news")


def test_the_kafka_senders_queue_is_bounded_and_what_it_cannot_deliver_is_counted() -> None:
    from footprint.track import KafkaSender

    event = PageRecorder(site="shop").page("GET", "/x", "198.51.100.7", None, "UA", None)
    # nothing listens on port 9; librdkafka would log each failed connection until the producer is freed
    sender = KafkaSender("127.0.0.1:9", "t", queue_max=2, flush_seconds=60, config={"log_level": 0})
    for _ in range(5):
        sender.send(event)
    assert sender.dropped == 3  # the queue holds 2: the rest were dropped at once, counted
    sender.close(timeout=0.5)
    assert sender.dropped == 5  # the 2 queued were produced on close, and never delivered
    del sender  # librdkafka retries port 9 for as long as the producer lives
    gc.collect()


def test_the_relay_senders_queue_is_bounded_and_what_its_relay_cannot_deliver_is_counted() -> None:
    from footprint.track import KafkaRelaySender

    event = PageRecorder(site="shop").page("GET", "/x", "198.51.100.7", None, "UA", None)
    # nothing listens on port 9; the relay process produces, and logs nothing (log_level 0)
    sender = KafkaRelaySender("127.0.0.1:9", "t", queue_max=2, flush_seconds=60, config={"log_level": 0},
                              close_seconds=0.5)
    relay = sender._relay
    assert os.sched_getscheduler(relay.pid) == os.SCHED_IDLE  # on what the app leaves of the cores
    for _ in range(5):
        sender.send(event)
    assert sender.dropped == 3  # the queue holds 2 lines: the rest were dropped at once, counted
    sender.close(timeout=0.5)
    assert sender.dropped == 5  # the 2 queued went to the relay on close, which Kafka never took: it reported them
    assert relay.returncode == 0  # the relay ended with its stdin


def test_a_relay_that_exits_is_started_again_and_the_lines_it_had_not_read_are_counted() -> None:
    from footprint.track import KafkaRelaySender

    event = PageRecorder(site="shop").page("GET", "/x", "198.51.100.7", None, "UA", None)
    sender = KafkaRelaySender("127.0.0.1:9", "t", flush_seconds=0.05, config={"log_level": 0}, close_seconds=0.2,
                              idle=False)
    sender.restart_seconds = 0
    first = sender._relay
    assert os.sched_getscheduler(first.pid) == os.SCHED_OTHER  # at the app's priority, as asked
    deadline = time.monotonic() + 20

    def wait(condition: Any) -> None:
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert condition()

    for _ in range(3):
        sender.send(event)
    wait(lambda: sender._relay_read == 3)  # read by the relay, which said so
    os.kill(first.pid, signal.SIGSTOP)  # it reads nothing more
    for _ in range(2):
        sender.send(event)
    wait(lambda: sender._in_pipe == 5)  # in its pipe, unread
    first.kill()
    first.wait(10)
    sender.send(event)  # the next write finds the pipe broken: a new relay takes this one
    wait(lambda: sender._relay is not first)
    # the 2 it never read are counted; the 3 it had read were in its producer, gone with it uncounted (no
    # Kafka here: a relay killed outright is the one loss the sender cannot see)
    assert sender.dropped == 2
    wait(lambda: sender._in_pipe == 1)
    sender.close(timeout=0.2)
    assert sender.dropped == 3  # and the new relay could not deliver its one either (no Kafka): it reported it


def test_the_relay_sender_makes_the_requests_lines_in_its_thread_and_counts_one_it_cannot_make() -> None:
    from footprint.track import KafkaRelaySender

    class Breaks(PageRecorder):
        def page_of(self, request: PageRequest) -> Page:
            if request.path == "/boom":
                raise RuntimeError("a page that cannot be made")
            return super().page_of(request)

    recorder = Breaks(site="shop")
    sender = KafkaRelaySender("127.0.0.1:9", "t", flush_seconds=0.02, config={"log_level": 0}, close_seconds=0.2)
    sender.chunk = 2  # the GIL let go between every two
    now = datetime.now(UTC)
    for path in ("/a", "/boom", "/b", "/c", "/d"):
        recorder.hand_over(PageRequest("GET", path, "198.51.100.7", None, "UA", None, "", None, now), sender)
    deadline = time.monotonic() + 20
    while sender._relay_read < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (sender._relay_read, sender.dropped) == (4, 1)  # four lines read by the relay; the broken one counted
    sender.close(timeout=0.2)
    assert sender.dropped == 5  # and no Kafka took the four: the relay reported them


def test_a_relay_that_cannot_start_fails_the_constructor_naming_it() -> None:
    from footprint.track import KafkaRelaySender

    with pytest.raises(RuntimeError, match=r"relay .*footprint.track.relay\) did not start \(exit code"):
        KafkaRelaySender("127.0.0.1:9", "t", config={"no.such.librdkafka.option": 1})


def test_a_relay_that_falls_behind_bounds_the_queue_and_counts_the_rest() -> None:
    from footprint.track import KafkaRelaySender

    recorder = PageRecorder(site="shop")
    event = recorder.page("GET", "/" + "x" * 3000, "198.51.100.7", None, "UA", None)  # ~3 KB lines: the pipe fills
    sender = KafkaRelaySender("127.0.0.1:9", "t", queue_max=50, flush_seconds=0.02, config={"log_level": 0},
                              close_seconds=0.2)
    relay = sender._relay
    os.kill(relay.pid, signal.SIGSTOP)  # it reads nothing: its pipe fills, the rest waits here
    for _ in range(300):
        sender.send(event)
        time.sleep(0.001)
    time.sleep(0.2)
    waiting = len(sender._queued) + sender._carry_lines
    assert waiting <= 50 and sender._in_pipe < 300
    assert sender.dropped == 300 - waiting - sender._in_pipe  # every event: waiting, in the pipe, or counted
    relay.kill()
    sender.close(timeout=0.2)
    assert sender.dropped == 300  # the relay read none of them: all counted
