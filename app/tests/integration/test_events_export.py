"""``GET /v1/events.csv`` against the real ClickHouse: every event of the read API's filters, streamed in pages,
equal to what ``GET /v1/events`` answers page by page as JSON (texts with commas, quotes, line ends and
any script; events sharing a time across a page's edge), under a reader's row cap far below the export's size."""

from __future__ import annotations

import csv
import io
import json
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from footprint.collector import create_app
from footprint.contract import encode_event, make_event
from footprint.csvexport import EVENT_COLUMNS, page_size
from footprint.settings import Settings
from footprint.sinks import ClickHouseSink, PostgresSink

PRIVATE = {"Authorization": "Bearer private-key"}
CAP = 400  # the reader's rows per query: an export of N events must read them in pages of 399
START = datetime(2026, 9, 14, tzinfo=UTC)
TEXTS = ["plain", "a, comma", 'a "quote"', "two\nlines", "cr\r\nlf", " spaced ", "Grüße, 東京 🚀", "=1+2", ""]


def _events(run: str, n: int) -> list[dict[str, Any]]:
    rnd = random.Random(run)
    out = []
    for i in range(n):
        kind = rnd.choice(["page", "page", "track", "identify"])
        when = START + timedelta(seconds=i // 3)  # three events to a time: ties broken by the id, across pages
        text = rnd.choice(TEXTS)
        out.append(make_event(
            type=kind, footprint_time=when, received_at=when, anonymous_id=f"{run}-a{i % 7}",
            event=rnd.choice(["Signed Up", "Paid, twice"]) if kind == "track" else ("Home" if kind == "page" else None),
            method="GET" if kind == "page" else None, link=f"/{run}/{text}" if kind == "page" else None,
            user_id=f"{run}-{text}" if text else None,
            properties={"run": run, "note": text, "n": i} if kind != "identify" else {},
            traits={"run": run, "name": text} if kind == "identify" else {},
        ))
    return out


@pytest.fixture(scope="module")
def export(base_settings: Settings) -> Iterator[tuple[TestClient, str, int]]:
    settings = base_settings.model_copy(update={"private_keys": [SecretStr("private-key")],
                                                "query_max_result_rows": CAP})
    run = uuid.uuid4().hex[:10]
    events = _events(run, 2300)
    docs = {e["event_id"]: encode_event(e) for e in events}
    for sink in (PostgresSink(settings.pg_dsn.get_secret_value()), ClickHouseSink(settings)):
        sink.write(docs)
        sink.close()
    with TestClient(create_app(settings)) as client:
        yield client, run, sum(e["type"] != "identify" for e in events)  # those with properties.run


def _json_pages(api: TestClient, params: dict[str, str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    query = {**params, "limit": str(CAP - 1)}
    while True:
        page = api.get("/v1/events", params=query, headers=PRIVATE).json()
        out += page["data"]
        if page["next"] is None:
            return out
        query["cursor"] = page["next"]


def _as_json_cells(event: dict[str, Any]) -> list[str]:
    """An event of the JSON answer as the CSV writes it: absent = empty, objects as compact JSON."""
    def cell(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, dict):
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        return str(value)
    return [cell(event.get(name)) for name in EVENT_COLUMNS]


def test_the_csv_export_streams_every_event_as_the_json_pages_give_them(export: Any) -> None:
    api, run, n = export
    assert page_size(CAP) == CAP - 1 < n
    for params in ({"properties.run": run}, {"properties.run": run, "type": "page", "since": "2026-09-14T00:05:00Z"},
                   {"anonymousId": f"{run}-a3"}):
        with api.stream("GET", "/v1/events.csv", params=params, headers=PRIVATE) as r:
            assert r.status_code == 200 and r.headers["content-type"] == "text/csv; charset=utf-8"
            assert 'filename="events.csv"' in r.headers["content-disposition"]
            text = b"".join(r.iter_bytes()).decode("utf-8")
        rows = list(csv.reader(io.StringIO(text, newline="")))
        assert rows[0] == list(EVENT_COLUMNS)
        pages = _json_pages(api, params)
        assert len(pages) > CAP or params.get("anonymousId"), params  # more than a page: the edge is crossed
        assert rows[1:] == [_as_json_cells(e) for e in pages], params
    assert len(_json_pages(api, {"properties.run": run})) == n
    for text in TEXTS:  # each awkward text came back whole somewhere
        assert text == "" or any(text in cell for row in rows for cell in row)


def test_the_export_takes_the_read_api_keys_and_filters(export: Any) -> None:
    api, run, _ = export
    assert api.get("/v1/events.csv").status_code == 401
    assert api.get("/v1/events.csv", headers={"Authorization": "Bearer test-key"}).status_code == 403
    for params, named in (({"limit": "5"}, "limit: an export is every matching event"),
                          ({"cursor": "x"}, "cursor: an export"), ({"type": "click"}, "type: one of"),
                          ({"colour": "red"}, "colour: unknown parameter"), ({"since": "yesterday"}, "since:")):
        r = api.get("/v1/events.csv", params=params, headers=PRIVATE)
        assert r.status_code == 400 and r.json()["detail"].startswith(named), (params, r.text)
    empty = api.get("/v1/events.csv", params={"userId": f"{run}-nobody"}, headers=PRIVATE)
    assert empty.status_code == 200 and empty.text == ",".join(EVENT_COLUMNS) + "\r\n"
    assert "/v1/events.csv" in api.get("/openapi.json").json()["paths"]
