"""The middleware for the user's own app, with in-memory senders (the real ones: integration tests)."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient

from footprint.schema import validate_batch
from footprint.track import FootprintASGI, FootprintWSGI, PageRecorder


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


def fastapi_app(sender: ListSender) -> Any:
    app = FastAPI()

    @app.get("/{path:path}")
    async def any_page(path: str) -> dict[str, str]:
        return {"path": path}

    return FootprintASGI(app, sender, PageRecorder(site="shop", skip=("/static/", "/healthz")))


def test_asgi_records_pages_skips_what_it_should_and_the_events_obey_the_contract() -> None:
    sender = ListSender()
    with TestClient(fastapi_app(sender)) as c:
        assert c.get("/pricing", headers={"Referer": "https://news.example.com/a?token=secret"}).status_code == 200
        c.get("/static/app.css")
        c.get("/healthz")
        c.post("/pricing")
    assert [(e["properties"]["method"], e["properties"]["path"]) for e in sender.events] == [
        ("GET", "/pricing"), ("POST", "/pricing")]
    assert sender.events[0]["properties"]["referrer"] == "news.example.com"  # the host, no token
    wire = validate_batch({"batch": sender.events}, __import__("datetime").datetime.now(
        __import__("datetime").UTC), 10)
    assert [(w["type"], w["method"], w["link"]) for w in wire] == [("page", "GET", "/pricing"),
                                                                   ("page", "POST", "/pricing")]


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
