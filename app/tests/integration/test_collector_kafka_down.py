"""The middleware with a real producer and no reachable broker: requests still succeed, drops are counted."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from footprint.collector import create_app
from footprint.metrics import CollectorMetrics
from footprint.producer import EventProducer
from footprint.settings import Settings
from services import free_port


def test_kafka_outage_and_full_queue_never_fail_a_request() -> None:
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    producer = EventProducer(dead, "web-logs-topic", CollectorMetrics(), queue_max=5)
    producer.start()
    try:
        with TestClient(create_app(Settings(kafka_bootstrap=dead, api_keys="k"), producer)) as client:
            started = time.monotonic()
            statuses = [client.get(f"/p/{i}").status_code for i in range(20)]
            elapsed = time.monotonic() - started
            metrics = client.get("/metrics").text
            health = client.get("/healthz")
            api = client.post("/v1/events", json={"batch": [{"type": "track", "event": "e", "userId": "u"}]},
                              headers={"Authorization": "Bearer k"})
    finally:
        left = producer.close(timeout=0.5)
    assert statuses == [404] * 20
    assert elapsed < 10, "requests waited on Kafka"
    assert producer.metrics.enqueued.labels("page")._value.get() == 5
    assert producer.metrics.dropped.labels("queue_full")._value.get() == 15 + 1  # pages + the track
    assert 'footprint_events_dropped_total{reason="queue_full"}' in metrics
    assert health.status_code == 503 and health.json()["status"] == "unavailable"
    assert api.status_code == 503 and api.headers["retry-after"]
    assert left > 0  # the queued events were never delivered (and were reported, not lost silently)


def test_202_means_kafka_has_the_batch(settings: Settings) -> None:
    """The answer comes after the acknowledgement: the events are in the topic when the client hears 202."""
    from helpers import end_offsets

    producer = EventProducer(settings.kafka_bootstrap, settings.kafka_topic, CollectorMetrics())
    producer.start()
    try:
        with TestClient(create_app(settings, producer)) as client:
            before = sum(end_offsets(settings).values())
            r = client.post("/v1/events", headers={"Authorization": "Bearer test-key"},
                            json={"batch": [{"type": "track", "event": f"e{i}", "userId": "u"} for i in range(7)]})
            after = sum(end_offsets(settings).values())
    finally:
        producer.close()
    assert r.status_code == 202, r.text
    assert after - before == 7
