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
    assert producer.metrics.dropped.labels("queue_full")._value.get() == 15 + 2  # 15 pages + POST page + track
    assert 'footprint_events_dropped_total{reason="queue_full"}' in metrics
    assert health.status_code == 200
    assert api.status_code == 503 and api.json()["accepted"] == 0
    assert left > 0  # the queued events were never delivered (and were reported, not lost silently)
