"""The HTTP contract, with an in-memory sender standing in for the Kafka producer queue."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from footprint.collector import create_app
from footprint.contract import MAX_DEPTH
from footprint.metrics import CollectorMetrics
from footprint.settings import Settings

AUTH = {"Authorization": "Bearer k1"}


class QueueSender:
    """Stands in for the Kafka producer: batches are "acknowledged" unless ``refuse`` says why not."""

    def __init__(self, refuse: str | None = None) -> None:
        self.metrics = CollectorMetrics()
        self.sent: list[dict[str, Any]] = []
        self.refuse = refuse
        self.down: str | None = None

    async def deliver(self, events: list[tuple[str, bytes, str]], timeout: float,
                      received_at: Any = None) -> str | None:
        if self.refuse:
            return self.refuse
        for key, value, _type in events:
            assert key == json.loads(value)["event_id"]
            self.sent.append(json.loads(value))
        return None

    def ready(self) -> str | None:
        return self.down

    def queue_length(self) -> int:
        return len(self.sent)


def client(sender: QueueSender, **kw: Any) -> TestClient:
    settings = Settings(api_keys="k1,k2", **kw)
    return TestClient(create_app(settings, sender))


def test_the_collector_records_no_page_view_of_its_own() -> None:
    """A site's pages come from its own app (footprint.track) or the snippet, never from requests
    to the collector (which no real site sends)."""
    s = QueueSender()
    with client(s) as c:
        assert c.get("/missing").status_code == 404
        c.get("/healthz")
        c.get("/metrics")
        c.get("/f.js")
    assert s.sent == []


def test_batch_is_accepted_with_202_and_event_ids() -> None:
    s = QueueSender()
    body = {"batch": [{"type": "track", "event": "Buy", "userId": "u"},
                      {"type": "group", "anonymousId": "a", "groupId": "g", "traits": {"n": 1}}]}
    with client(s) as c:
        r = c.post("/v1/events", json=body, headers={"Authorization": "Bearer k2"})
    assert r.status_code == 202
    assert r.json()["accepted"] == 2
    assert [e["event_id"] for e in s.sent] == r.json()["event_ids"]


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
    with client(s, max_body_bytes=2048, max_batch_events=3) as c:
        big = {"batch": [{"type": "track", "event": "e", "userId": "u", "properties": {"x": "y" * 4000}}]}
        assert c.post("/v1/events", json=big, headers=AUTH).status_code == 413
        many = {"batch": [{"type": "track", "event": "e", "userId": "u"}] * 4}
        r = c.post("/v1/events", json=many, headers=AUTH)
        assert r.status_code == 413 and "batch" in r.json()["detail"]
        deep: dict[str, Any] = {}
        node = deep
        for _ in range(MAX_DEPTH):
            node["a"] = {}
            node = node["a"]
        r = c.post("/v1/events", json={"batch": [{"type": "track", "event": "e", "userId": "u", "properties": deep}]},
                   headers=AUTH)
        assert r.status_code == 400 and "batch[0].properties: nesting deeper than" in r.json()["detail"]
        assert c.post("/v1/events", content=b"{", headers={**AUTH, "Content-Type": "application/json"}) \
            .status_code == 400
        assert c.post("/v1/events", content=b"x", headers={**AUTH, "Content-Type": "text/plain"}).status_code == 415
        assert c.post("/v1/events", json={"batch": []}, headers=AUTH).status_code == 400
    assert s.sent == []


def test_kafka_not_acknowledging_is_503_with_retry_after() -> None:
    s = QueueSender(refuse="Kafka did not acknowledge within 10 s")
    body = {"batch": [{"type": "track", "event": "e", "userId": "u"}] * 3}
    with client(s, retry_after_seconds=7) as c:
        r = c.post("/v1/events", json=body, headers=AUTH)
    assert r.status_code == 503 and r.headers["retry-after"] == "7"
    assert "did not acknowledge" in r.json()["detail"]


def test_healthz_is_readiness() -> None:
    s = QueueSender()
    with client(s) as c:
        ok = c.get("/healthz")
        s.down = "KafkaError{code=_TRANSPORT}"
        down = c.get("/healthz")
    assert ok.status_code == 200 and ok.json()["status"] == "ok" and ok.json()["version"]
    assert down.status_code == 503 and "_TRANSPORT" in down.json()["kafka"]


@pytest.mark.parametrize(
    ("body", "ctype", "status", "detail"),
    [
        # one good, one bad: nothing is produced (a retry of the fixed batch cannot duplicate the good one)
        (b'{"batch":[{"type":"track","event":"e","userId":"u"},{"type":"track","event":"e","userId":"u",'
         b'"timestamp":"0001-01-01T00:00:00+01:00"}]}', "application/json", 400, "batch[1].timestamp"),
        (b'{"batch":[{"type":"track","event":"e","userId":"u","properties":' + b"[" * 600 + b"]" * 600 + b"}]}",
         "application/json", 400, "batch[0].properties"),
        (b'{"batch":[{"type":"track","event":"e","userId":"u","properties":{"\\ud800":1}}]}',
         "application/json", 400, "surrogate"),
        (b'{"batch":[{"type":"track","event":"e","userId":"u","properties":{"k":"\\ud800"}}]}',
         "application/json", 400, "surrogate"),
        (b'{"batch":[{"type":"track","event":"e","userId":"u","properties":{"k":1e400}}]}',
         "application/json", 400, "out of range"),
        (b'{"batch":[{"type":"track","event":"e","userId":"u","properties":{"k":NaN}}]}',
         "application/json", 400, "NaN"),
        (b'{"batch":[{"type":"track","event":"e\\u0000","userId":"u"}]}', "application/json", 400, "NUL"),
        (b'{"batch":[{"type":"track","event":"e","userId":"u","timestamp":"1999-06-01T00:00:00Z"}]}',
         "application/json", 400, "2000..2199"),
        ('{"batch":[{"type":"track","event":"é","userId":"u"}]}'.encode("utf-16"), "application/json", 400,
         "UTF-8"),
        (b"{}", "application/json; charset=latin-1", 415, "UTF-8"),
        (b"\xff\xfe", "application/json", 400, "UTF-8"),
    ],
)
def test_bad_bodies_get_a_4xx_naming_the_cause_and_produce_nothing(
    body: bytes, ctype: str, status: int, detail: str
) -> None:
    s = QueueSender()
    with client(s) as c:
        r = c.post("/v1/events", content=body, headers={**AUTH, "Content-Type": ctype})
    assert r.status_code == status, r.text
    assert detail in r.json()["detail"]
    assert s.sent == []


def test_utf8_charset_is_accepted() -> None:
    s = QueueSender()
    with client(s) as c:
        r = c.post("/v1/events", content='{"batch":[{"type":"track","event":"é","userId":"u"}]}'.encode(),
                   headers={**AUTH, "Content-Type": 'application/json; charset="UTF-8"'})
    assert r.status_code == 202, r.text
    assert [e["event"] for e in s.sent] == ["é"]


def test_the_collectors_own_endpoints_are_not_page_views() -> None:
    s = QueueSender()
    with client(s) as c:
        c.post("/v1/events", json={"batch": [{"type": "track", "event": "e", "userId": "u"}]}, headers=AUTH)
        c.get("/openapi.json")
        c.get("/healthz")
    assert [e["type"] for e in s.sent] == ["track"]


def test_openapi_describes_every_endpoint() -> None:
    with client(QueueSender()) as c:
        spec = c.get("/openapi.json").json()
    post = spec["paths"]["/v1/events"]["post"]
    body = post["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["batch"] and len(body["properties"]["batch"]["items"]["oneOf"]) == 4
    assert {"202", "400", "401", "413", "415", "503"} <= set(post["responses"])
    assert {"200", "503"} <= set(spec["paths"]["/healthz"]["get"]["responses"])
    assert "200" in spec["paths"]["/metrics"]["get"]["responses"]


def test_metrics_are_for_the_configured_networks_or_a_private_key_only() -> None:
    """Issue 28: the collector's port is public; its /metrics is not (404 to anyone else)."""
    settings = Settings(api_keys="k", private_keys="p-key", metrics_from="127.0.0.0/8,10.9.0.0/16")
    app = create_app(settings, QueueSender())
    cases = [  # (peer, headers, status)
        (("127.0.0.1", 1), {}, 200),
        (("10.9.3.4", 1), {}, 200),
        (("203.0.113.9", 1), {}, 404),
        (("203.0.113.9", 1), {"X-Forwarded-For": "127.0.0.1"}, 404),  # an untrusted peer's header is ignored
        (("127.0.0.1", 1), {"X-Forwarded-For": "203.0.113.9"}, 404),  # behind the proxy: the real client
        (("127.0.0.1", 1), {"X-Forwarded-For": "10.9.0.1"}, 200),
        (("203.0.113.9", 1), {"Authorization": "Bearer p-key"}, 200),
        (("203.0.113.9", 1), {"Authorization": "Bearer k"}, 404),  # a public key reads nothing
    ]
    for peer, headers, status in cases:
        with TestClient(app, client=peer) as c:
            r = c.get("/metrics", headers=headers)
        assert r.status_code == status, (peer, headers, r.text)
        assert ("footprint_events_enqueued" in r.text) == (status == 200)
