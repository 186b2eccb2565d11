"""The scenarios' exactly-once checks (tests/exactly_once.py) can fail: fed one duplicate on purpose,
they report it, in the rows as stored and, after a merge folded those, in every rollup (issue 27).

A scratch database with the app's own ClickHouse schema (its migrations) on the real engine; events
stored by the real sink (first write wins), then one of them inserted a second time around it.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from typing import Any

import clickhouse_connect
import pytest
from pydantic import SecretStr

from footprint.contract import encode_event
from footprint.migrate import migrate_clickhouse
from footprint.settings import Settings
from footprint.sinks import ClickHouseSink
from helpers import gen_events
from services import REPO

sys.path.insert(0, str(REPO / "tests"))
import exactly_once  # the scenarios' checks, in the testinfra folder


@pytest.fixture
def scratch(base_settings: Settings, clickhouse: Any) -> Iterator[tuple[Settings, Any]]:
    db = f"dupcheck_{uuid.uuid4().hex[:8]}"
    admin = clickhouse_connect.get_client(host=clickhouse.host, port=clickhouse.http_port, username="default")
    admin.command(f"CREATE DATABASE {db}")
    s = base_settings.model_copy(update={"ch_database": db, "ch_user": "default", "ch_password": SecretStr(""),
                                         "ch_owner_user": "default", "ch_owner_password": SecretStr("")})
    migrate_clickhouse(s)
    client = clickhouse_connect.get_client(host=clickhouse.host, port=clickhouse.http_port, username="default",
                                           database=db)
    try:
        yield s, client
    finally:
        client.close()
        admin.command(f"DROP DATABASE {db} SYNC")
        admin.close()


def test_the_checks_pass_on_events_stored_once_and_report_one_duplicate(scratch: tuple[Settings, Any]) -> None:
    settings, client = scratch
    events = gen_events(200, seed=2727)
    docs = {e["event_id"]: encode_event(e) for e in events}
    sink = ClickHouseSink(settings)
    try:
        sink.write(docs)
        sink.write(docs)  # a redelivery: the sink's id lookup stores nothing twice
        assert exactly_once.problems(client, tries=1) == []
        counted, humans = exactly_once.rollup_vs_events(client)
        assert counted == humans > 100  # the rollup leaves out synthetic events and bots

        victim = next(e["event_id"] for e in events if not e["synthetic"] and not e["bot"])
        # the same event inserted once more around the sink's lookup, as a broken writer would
        client.command(f"INSERT INTO events SELECT * FROM events WHERE event_id = '{victim}'")
        found = exactly_once.problems(client, tries=1)
        assert exactly_once.ch_duplicates(client) == {victim: 2}
        assert any("more than once" in p and victim in p for p in found), found
        rollups = {r for r, _, _ in exactly_once.ROLLUPS}
        assert rollups <= {p.split()[1] for p in found}, found  # every rollup counted the second insert

        client.command("OPTIMIZE TABLE events FINAL")  # the merge folds the rows: only the rollups still see it
        assert exactly_once.ch_duplicates(client) == {}
        found = exactly_once.problems(client, tries=1)
        assert {p.split()[1] for p in found} == rollups, found
        assert "for dimension browser, country, " in next(p for p in found if "breakdowns_daily" in p), found
        assert exactly_once.rollup_vs_events(client) == (humans + 1, humans)
        assert exactly_once.rollup_vs_events(client, rollup="links_daily") == (humans + 1, humans)
    finally:
        sink.close()
