"""The HTTP contract, with an in-memory sender standing in for the Kafka producer queue."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from footprint.collector import create_app
from footprint.metrics import CollectorMetrics
from footprint.settings import Settings

AUTH = {"Authorization": "Bearer k1"}


class QueueSender:
    def __init__(self, capacity: int = 1000, explode: bool = False) -> None:
        self.metrics = CollectorMetrics()
        self.last_error: str | None = None
        self.sent: list[dict[str, Any]] = []
        self.capacity = capacity
        self.explode = explode

    def send(self, key: str, value: bytes, type_: str) -> bool:
        if self.explode:
            raise RuntimeError("boom")
        if len(self.sent) >= self.capacity:
            self.metrics.dropped.labels("queue_full").inc()
            return False
        self.sent.append(json.loads(value))
        return True

    def queue_length(self) -> int:
        return len(self.sent)


def client(sender: QueueSender, **kw: Any) -> TestClient:
    settings = Settings(api_keys="k1,k2", **kw)
    return TestClient(create_app(settings, sender))


def test_every_request_records_one_page_event() -> None:
    s = QueueSender()
    with client(s) as c:
        assert c.get("/missing", headers={"X-Footprint-Probe": "1"}).status_code == 404
        c.get("/healthz")
        c.get("/metrics")
    assert len(s.sent) == 1
    ev = s.sent[0]
    assert (ev["type"], ev["method"], ev["link"], ev["synthetic"]) == ("page", "GET", "/missing", True)
    assert ev["visitor_id"] == ev["anonymous_id"] != ""


@pytest.mark.parametrize("sender", [QueueSender(capacity=0), QueueSender(explode=True)])
def test_tracking_failure_never_fails_the_request(sender: QueueSender) -> None:
    with client(sender) as c:
        assert c.get("/anything").status_code == 404
        metrics = c.get("/metrics").text
    assert "footprint_events_dropped_total" in metrics
    assert sender.metrics.dropped.labels("queue_full" if sender.capacity == 0 else "middleware_error") \
        ._value.get() == 1


def test_batch_is_accepted_with_202_and_event_ids() -> None:
    s = QueueSender()
    body = {"batch": [{"type": "track", "event": "Buy", "userId": "u"},
                      {"type": "group", "anonymousId": "a", "groupId": "g", "traits": {"n": 1}}]}
    with client(s) as c:
        r = c.post("/v1/events", json=body, headers={"Authorization": "Bearer k2"})
    assert r.status_code == 202
    assert r.json()["accepted"] == 2
    api_events = [e for e in s.sent if e["type"] != "page" or e["link"] != "/v1/events"]
    assert [e["event_id"] for e in api_events] == r.json()["event_ids"]


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Bearer wrong"}, 401), ({"Authorization": "Basic k1"}, 401)],
)
def test_bearer_key_is_required(headers: dict[str, str], status: int) -> None:
    with client(QueueSender()) as c:
        r = c.post("/v1/events", json={"batch": [{"type": "track", "event": "e", "userId": "u"}]}, headers=headers)
    assert r.status_code == status and r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"type": "track", "userId": "u"}, "batch[0].event"),
        ({"type": "track", "event": "e"}, "userId or anonymousId"),
        ({"type": "group", "userId": "u"}, "batch[0].groupId"),
        ({"type": "track", "event": "e", "userId": "u", "colour": 1}, "batch[0].colour"),
        ({"type": "nope", "userId": "u"}, "batch[0]"),
        ({"type": "track", "event": "e", "userId": "u", "timestamp": "2026-11-01T10:00:00"}, "batch[0].timestamp"),
        ({"type": "track", "event": "e", "userId": "u", "properties": []}, "batch[0].properties"),
    ],
)
def test_invalid_events_get_400_naming_the_field(event: dict[str, Any], field: str) -> None:
    s = QueueSender()
    with client(s) as c:
        r = c.post("/v1/events", json={"batch": [event]}, headers=AUTH)
    assert r.status_code == 400, r.text
    assert field in r.json()["detail"]
    assert [e for e in s.sent if e["link"] != "/v1/events"] == []


def test_size_limits() -> None:
    s = QueueSender()
    with client(s, max_body_bytes=2048, max_batch_events=3, max_property_depth=2) as c:
        big = {"batch": [{"type": "track", "event": "e", "userId": "u", "properties": {"x": "y" * 4000}}]}
        assert c.post("/v1/events", json=big, headers=AUTH).status_code == 413
        many = {"batch": [{"type": "track", "event": "e", "userId": "u"}] * 4}
        r = c.post("/v1/events", json=many, headers=AUTH)
        assert r.status_code == 413 and "batch" in r.json()["detail"]
        deep = {"batch": [{"type": "track", "event": "e", "userId": "u", "properties": {"a": {"b": {"c": 1}}}}]}
        r = c.post("/v1/events", json=deep, headers=AUTH)
        assert r.status_code == 400 and "batch[0].properties" in r.json()["detail"]
        assert c.post("/v1/events", content=b"{", headers={**AUTH, "Content-Type": "application/json"}) \
            .status_code == 400
        assert c.post("/v1/events", content=b"x", headers={**AUTH, "Content-Type": "text/plain"}).status_code == 415
        assert c.post("/v1/events", json={"batch": []}, headers=AUTH).status_code == 400


def test_full_queue_on_the_api_is_503_not_500() -> None:
    s = QueueSender(capacity=2)  # the middleware's page event takes one slot
    body = {"batch": [{"type": "track", "event": "e", "userId": "u"}] * 3}
    with client(s) as c:
        r = c.post("/v1/events", json=body, headers=AUTH)
    assert r.status_code == 503 and r.json()["accepted"] == 1
