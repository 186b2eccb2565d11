"""The collector with a real producer and no reachable broker: clear 503s, fast, and counted."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from footprint.collector import create_app
from footprint.metrics import CollectorMetrics
from footprint.producer import EventProducer
from footprint.settings import Settings
from services import free_port


def test_kafka_outage_and_full_queue_are_503s_not_waits() -> None:
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    producer = EventProducer(dead, "web-logs-topic", CollectorMetrics(), queue_max=5, message_timeout_ms=2000)
    producer.start()
    track = {"type": "track", "event": "e", "userId": "u"}
    auth = {"Authorization": "Bearer k"}
    try:
        settings = Settings(kafka_bootstrap=dead, api_keys="k", api_ack_timeout_seconds=2)
        with TestClient(create_app(settings, producer), client=("127.0.0.1", 50000)) as client:
            started = time.monotonic()
            small = client.post("/v1/events", json={"batch": [track] * 3}, headers=auth)
            elapsed = time.monotonic() - started
            too_many = client.post("/v1/events", json={"batch": [track] * 7}, headers=auth)  # > the queue
            metrics = client.get("/metrics").text
            health = client.get("/healthz")
    finally:
        producer.close(timeout=0.5)
    assert small.status_code == 503 and small.headers["retry-after"], small.text
    assert elapsed < 10, "the answer waited longer than the API's acknowledgement timeout"
    assert too_many.status_code == 503
    assert producer.metrics.dropped.labels("queue_full")._value.get() == 7
    assert 'footprint_events_dropped_total{reason="queue_full"}' in metrics
    assert health.status_code == 503 and health.json()["status"] == "unavailable"


def test_202_means_kafka_has_the_batch(settings: Settings) -> None:
    """The answer comes after the acknowledgement: the events are in the topic when the client hears 202."""
    from helpers import end_offsets

    producer = EventProducer(settings.kafka_bootstrap, settings.kafka_topic, CollectorMetrics())
    producer.start()
    try:
        with TestClient(create_app(settings, producer), client=("127.0.0.1", 50000)) as client:
            before = sum(end_offsets(settings).values())
            r = client.post("/v1/events", headers={"Authorization": "Bearer test-key"},
                            json={"batch": [{"type": "track", "event": f"e{i}", "userId": "u"} for i in range(7)]})
            after = sum(end_offsets(settings).values())
    finally:
        producer.close()
    assert r.status_code == 202, r.text
    assert after - before == 7
