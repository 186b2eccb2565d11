"""A store outage pauses the consumer: nothing is committed, nothing is lost, everything arrives later."""

from __future__ import annotations

import time
from typing import Any

from footprint.settings import Settings
from helpers import RunningConsumer, ch_ids, committed, gen_events, pg_ids, produce, wait_for
from services import wait_port_closed


def _committed_total(settings: Settings) -> int:
    return sum(max(o, 0) for o in committed(settings).values())


def test_postgres_outage_commits_nothing_and_catches_up(settings: Settings, postgres: Any) -> None:
    before = gen_events(300, seed=21)
    during = gen_events(1200, seed=22)
    ids = [e["event_id"] for e in before + during]
    produce(settings, before)
    with RunningConsumer(settings) as rc:
        wait_for(lambda: _committed_total(settings) == len(before), what="first batch committed")
        postgres.stop()
        try:
            wait_port_closed(postgres.port)
            produce(settings, during)
            time.sleep(4)  # several retry rounds against the stopped server
            assert _committed_total(settings) == len(before), "committed past data PostgreSQL never saw"
            assert rc.consumer.metrics.store_errors.labels("postgres")._value.get() >= 2
        finally:
            postgres.start()
        wait_for(lambda: _committed_total(settings) == len(ids), timeout=60, what="catch-up after PostgreSQL")
    assert pg_ids(settings, ids) == {i: 1 for i in ids}
    assert ch_ids(settings, ids) == {i: 1 for i in ids}


def test_clickhouse_outage_commits_nothing_and_catches_up(settings: Settings, clickhouse: Any) -> None:
    before = gen_events(300, seed=23)
    during = gen_events(1200, seed=24)
    ids = [e["event_id"] for e in before + during]
    produce(settings, before)
    with RunningConsumer(settings) as rc:
        wait_for(lambda: _committed_total(settings) == len(before), what="first batch committed")
        clickhouse.stop()
        try:
            wait_port_closed(clickhouse.http_port)
            produce(settings, during)
            time.sleep(4)
            assert _committed_total(settings) == len(before), "committed past data ClickHouse never saw"
            assert rc.consumer.metrics.store_errors.labels("clickhouse")._value.get() >= 2
        finally:
            clickhouse.start()
        wait_for(lambda: _committed_total(settings) == len(ids), timeout=60, what="catch-up after ClickHouse")
    assert pg_ids(settings, ids) == {i: 1 for i in ids}
    assert ch_ids(settings, ids) == {i: 1 for i in ids}
