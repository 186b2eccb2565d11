"""A store outage pauses the consumer: nothing is committed, nothing is lost, everything arrives later."""

from __future__ import annotations

import time
from typing import Any

import pytest

from footprint.settings import Settings
from helpers import RunningConsumer, ch_ids, committed, gen_events, pg_ids, produce, wait_for
from services import wait_port_closed


def _committed_total(settings: Settings) -> int:
    return sum(max(o, 0) for o in committed(settings).values())


def _retrying(rc: RunningConsumer) -> float:
    value = rc.consumer.metrics.registry.get_sample_value("footprint_consumer_retrying_seconds")
    assert value is not None
    return value


# store -> (fixture, port attribute of the fixture, label in footprint's metrics, name in messages)
STORES = {
    "postgres": ("postgres", "port", "postgres", "PostgreSQL"),
    "clickhouse": ("clickhouse", "http_port", "clickhouse", "ClickHouse"),
}


@pytest.mark.parametrize(("store", "seed"), [("postgres", 21), ("clickhouse", 23)])
def test_store_outage_commits_nothing_and_catches_up(
    settings: Settings, request: pytest.FixtureRequest, store: str, seed: int, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings.model_copy(update={"stuck_after_seconds": 2.0})
    fixture, port_attr, label, title = STORES[store]
    server: Any = request.getfixturevalue(fixture)
    before = gen_events(300, seed=seed)
    during = gen_events(1200, seed=seed + 1)
    ids = [e["event_id"] for e in before + during]
    produce(settings, before)
    with RunningConsumer(settings) as rc:
        wait_for(lambda: _committed_total(settings) == len(before), what="first batch committed")
        server.stop()
        try:
            wait_port_closed(getattr(server, port_attr))
            produce(settings, during)
            time.sleep(5.5)  # several retry rounds against the stopped server (0.5, 1, 2 s apart)
            assert _committed_total(settings) == len(before), f"committed past data {title} never saw"
            assert rc.consumer.metrics.store_errors.labels(label)._value.get() >= 2
            assert _retrying(rc) >= 2  # exposed while it lasts
            stuck = [r for r in caplog.records if "retrying for a while" in r.getMessage()]
            assert stuck and stuck[0].levelname == "ERROR" and f"fix {label}" in stuck[0].getMessage()
        finally:
            server.start()
        wait_for(lambda: _committed_total(settings) == len(ids), timeout=60, what=f"catch-up after {title}")
        assert _retrying(rc) == 0
    assert pg_ids(settings, ids) == {i: 1 for i in ids}
    assert ch_ids(settings, ids) == {i: 1 for i in ids}
