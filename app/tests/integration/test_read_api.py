"""The read API against the real stores: every filter of ``GET /v1/events``, pagination and cursor
tampering, the SQL limits of ``POST /v1/queries``, erasure in both stores (and of events still in
Kafka), and bad input - each a 4xx naming the cause, nothing changed."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from footprint.collector import create_app
from footprint.contract import encode_event, make_event
from footprint.erasure import ErasedUsers
from footprint.settings import Settings
from footprint.sinks import ClickHouseSink, PostgresSink
from footprint.stats import run_stats
from footprint.visitcloser import close_visits
from helpers import RunningConsumer, ch_client, produce, wait_for

PRIVATE = {"Authorization": "Bearer private-key"}
PUBLIC = {"Authorization": "Bearer test-key"}
START = datetime(2026, 10, 5, tzinfo=UTC)


def _events(run: str, n: int = 240) -> list[dict[str, Any]]:
    rnd = random.Random(run)
    out = []
    for i in range(n):
        kind = rnd.choice(["page", "page", "track", "identify", "group"])
        when = START + timedelta(seconds=rnd.randrange(3 * 86400), microseconds=rnd.randrange(1_000_000))
        out.append(make_event(
            type=kind, footprint_time=when, received_at=when,
            event=rnd.choice(["Signed Up", "Paid"]) if kind == "track" else ("Home" if kind == "page" else None),
            method=rnd.choice(["GET", "POST"]) if kind == "page" else None,
            link=rnd.choice(["/", "/blog", "/blog/kafka", "/docs"]) if kind == "page" else None,
            user_id=rnd.choice(["", f"{run}-u1", f"{run}-u2"]) or None,
            anonymous_id=f"{run}-a{i % 4}",
            group_id=f"{run}-g" if kind == "group" else None,
            properties={"run": run, "plan": rnd.choice(["pro", "free"]), "n": i % 3} if kind != "identify" else {},
            traits={"run": run} if kind == "identify" else {},
        ))
    return out


def _store(settings: Settings, events: list[dict[str, Any]]) -> None:
    docs = {e["event_id"]: encode_event(e) for e in events}
    for sink in (PostgresSink(settings.pg_dsn.get_secret_value()), ClickHouseSink(settings)):
        sink.write(docs)
        sink.close()


@pytest.fixture(scope="module")
def read_settings(base_settings: Settings) -> Settings:
    return base_settings.model_copy(update={
        "private_keys": [SecretStr("private-key")],
        "query_max_execution_seconds": 1.0, "query_max_result_rows": 1000, "query_max_sql_bytes": 4096,
        "erasure_refresh_seconds": 0.5,
    })


@pytest.fixture(scope="module")
def api(read_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(read_settings)) as client:
        yield client


@pytest.fixture(scope="module")
def data(read_settings: Settings) -> tuple[str, list[dict[str, Any]]]:
    run = uuid.uuid4().hex[:10]
    events = _events(run)
    _store(read_settings, events)
    return run, events


def _ids(events: list[dict[str, Any]]) -> list[str]:
    return [e["event_id"] for e in sorted(events, key=lambda e: (e["footprint_time"], e["event_id"]), reverse=True)]


def _get_all(api: TestClient, params: dict[str, Any]) -> list[dict[str, Any]]:
    r = api.get("/v1/events", params={**params, "limit": 1000}, headers=PRIVATE)
    assert r.status_code == 200, r.text
    assert r.json()["next"] is None
    return list(r.json()["data"])


def test_every_filter_selects_exactly_its_events_newest_first(api: TestClient, data: Any) -> None:
    run, events = data
    mine = [e for e in events if e["properties"].get("run") == run]
    cases: dict[str, tuple[dict[str, str], Any]] = {
        "event": ({"event": "Paid"}, lambda e: e["event"] == "Paid"),
        "type": ({"type": "group"}, lambda e: e["type"] == "group"),
        "userId": ({"userId": f"{run}-u1"}, lambda e: e["user_id"] == f"{run}-u1"),
        "anonymousId": ({"anonymousId": f"{run}-a2"}, lambda e: e["anonymous_id"] == f"{run}-a2"),
        "groupId": ({"groupId": f"{run}-g"}, lambda e: e["group_id"] == f"{run}-g"),
        "link prefix": ({"link": "/blog"}, lambda e: e["link"].startswith("/blog")),
        "since": ({"since": "2026-10-06T00:00:00Z"}, lambda e: e["footprint_time"] >= "2026-10-06T"),
        "until": ({"until": "2026-10-06T12:00:00+02:00"}, lambda e: e["footprint_time"] < "2026-10-06T10:00:00"),
        "property text": ({"properties.plan": "pro"}, lambda e: e["properties"].get("plan") == "pro"),
        "property number": ({"properties.n": "2"}, lambda e: e["properties"].get("n") == 2),
        "all at once": ({"type": "page", "link": "/blog", "userId": f"{run}-u2", "since": "2026-10-05T06:00:00Z"},
                        lambda e: e["type"] == "page" and e["link"].startswith("/blog")
                        and e["user_id"] == f"{run}-u2" and e["footprint_time"] >= "2026-10-05T06:00:00"),
    }
    for name, (params, keep) in cases.items():
        want = _ids([e for e in mine if keep(e)])
        assert want, f"{name}: the test data has no match"
        got = _get_all(api, {**params, "properties.run": run})
        assert [g["eventId"] for g in got] == want, name


def test_answers_in_the_inbound_segment_names(api: TestClient, data: Any) -> None:
    run, events = data
    track = next(e for e in events if e["type"] == "track" and e["user_id"])
    page = next(e for e in events if e["type"] == "page")
    by_id = {g["eventId"]: g for g in _get_all(api, {"properties.run": run})}
    t, p = by_id[track["event_id"]], by_id[page["event_id"]]
    assert t["event"] == track["event"] and t["userId"] == track["user_id"]
    assert t["anonymousId"] == track["anonymous_id"] and t["timestamp"] == track["footprint_time"]
    assert t["properties"] == track["properties"] and "user_id" not in t
    assert p["name"] == page["event"] and "event" not in p and p["link"] == page["link"]


def test_pages_follow_the_cursor_to_the_end(api: TestClient, data: Any) -> None:
    run, events = data
    seen: list[str] = []
    params: dict[str, Any] = {"properties.run": run, "limit": 7}
    while True:
        r = api.get("/v1/events", params=params, headers=PRIVATE)
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["data"]) <= 7
        seen += [e["eventId"] for e in page["data"]]
        if page["next"] is None:
            break
        params["cursor"] = page["next"]
    assert seen == _ids([e for e in events if e["properties"].get("run") == run])


def test_a_cursor_changed_or_from_elsewhere_is_a_400(api: TestClient, data: Any) -> None:
    run, _ = data
    first = api.get("/v1/events", params={"properties.run": run, "limit": 5}, headers=PRIVATE).json()["next"]
    assert first
    body, _, mac = first.partition(".")
    forged = [body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1] + "." + mac, first + "x", "abc", "a.b",
              "eyJ0IjoxfQ.AAAA"]
    for cursor in forged:
        r = api.get("/v1/events", params={"properties.run": run, "cursor": cursor}, headers=PRIVATE)
        assert r.status_code == 400 and "cursor" in r.json()["detail"], cursor
    # a real cursor, but of other filters
    r = api.get("/v1/events", params={"properties.run": run, "type": "page", "cursor": first}, headers=PRIVATE)
    assert r.status_code == 400 and "cursor" in r.json()["detail"]


@pytest.mark.parametrize(("params", "named"), [
    ({"limit": str(10**9)}, "limit"), ({"limit": "0"}, "limit"), ({"limit": "-1"}, "limit"),
    ({"limit": "ten"}, "limit"), ({"since": "yesterday"}, "since"), ({"until": "2026-13-01T00:00:00Z"}, "until"),
    ({"since": "2026-10-06T00:00:00Z", "until": "2026-10-05T00:00:00Z"}, "since"), ({"type": "click"}, "type"),
    ({"colour": "red"}, "colour"), ({"properties.": "x"}, "properties"), ({"userId": ""}, "userId"),
    ({"link": ""}, "link"), ({"synthetic": "maybe"}, "synthetic"), ({"event": "x" * 201}, "event"),
])
def test_malformed_filters_are_a_400_naming_them(api: TestClient, params: dict[str, str], named: str) -> None:
    r = api.get("/v1/events", params=params, headers=PRIVATE)
    assert r.status_code == 400, r.text
    assert named in r.json()["detail"]


def test_a_repeated_parameter_is_a_400(api: TestClient) -> None:
    r = api.get("/v1/events?type=page&type=track", headers=PRIVATE)
    assert r.status_code == 400 and "more than once" in r.json()["detail"]


def _count(settings: Settings) -> tuple[int, int]:
    with psycopg.connect(settings.pg_owner_dsn.get_secret_value()) as c:
        pg = c.execute("SELECT count(*) FROM events").fetchone()
    ch = ch_client(settings)
    try:
        return int(pg[0]) if pg else -1, int(ch.command("SELECT count() FROM events"))
    finally:
        ch.close()


def test_missing_or_public_key_on_a_private_endpoint(api: TestClient, read_settings: Settings, data: Any) -> None:
    _run, events = data
    user = next(e["user_id"] for e in events if e["user_id"])
    before = _count(read_settings)
    calls = [("GET", "/v1/events", None), ("POST", "/v1/queries", {"sql": "SELECT 1"}),
             ("DELETE", f"/v1/users/{user}", None), ("GET", f"/v1/erasures/{uuid.uuid4()}", None)]
    for method, path, body in calls:
        for headers, status in (({}, 401), (PUBLIC, 403), ({"Authorization": "Bearer nope"}, 401),
                                ({"Authorization": "Basic private-key"}, 401)):
            r = api.request(method, path, json=body, headers=headers)
            assert r.status_code == status, (method, path, headers.keys(), r.text)
            assert "private-key" not in r.text
    assert _count(read_settings) == before


def _sql(api: TestClient, sql: str) -> Any:
    return api.post("/v1/queries", json={"sql": sql}, headers=PRIVATE)


def test_read_only_sql_answers(api: TestClient, data: Any) -> None:
    run, events = data
    r = _sql(api, f"SELECT type, count() AS n FROM events FINAL WHERE JSONExtractString(properties, 'run') = '{run}'"
                  " GROUP BY type ORDER BY type")
    assert r.status_code == 200, r.text
    want: dict[str, int] = {}
    for e in events:
        if e["properties"].get("run") == run:
            want[e["type"]] = want.get(e["type"], 0) + 1
    assert r.json()["columns"] == ["type", "n"]
    assert {row[0]: row[1] for row in r.json()["rows"]} == want


@pytest.mark.parametrize(("sql", "status", "reason"), [
    ("INSERT INTO events (event_id) VALUES (generateUUIDv4())", 400, "only one SELECT"),
    ("ALTER TABLE events DELETE WHERE 1", 400, "only one SELECT"),
    ("SELECT name FROM system.users", 403, "system.users"),
    ("SELECT * FROM system.tables", 403, "another database"),
    ("SELECT * FROM url('http://127.0.0.1:1/x', CSV)", 403, ""),
    ("SELECT sleep(3)", 403, "function not allowed: sleep"),
    # a sum of hashes: no shortcut (a bare count() over numbers() may finish within 1 s on an idle machine)
    ("SELECT sum(sipHash64(number)) FROM numbers(10000000000000)", 422, "time limit"),
    ("SELECT number FROM numbers(100000)", 422, "row or byte limit"),
    ("SELECT 1; SELECT 2", 400, "only one SELECT"),
    ("SELEC 1", 400, "syntax"),
    ("SELECT nope FROM events", 400, "unknown identifier"),
    ("", 400, "empty"),
    ("SELECT '" + "x" * 5000 + "'", 413, "longer than"),
])
def test_sql_that_writes_reaches_elsewhere_or_runs_too_long_is_refused(
        api: TestClient, read_settings: Settings, sql: str, status: int, reason: str) -> None:
    before = _count(read_settings)
    r = _sql(api, sql)
    assert r.status_code == status, r.text
    assert reason.lower() in r.json()["detail"].lower()
    assert _count(read_settings) == before


@pytest.mark.parametrize("body", [b"", b"{", b"[]", b'{"sql": 1}', b'{"sql": "SELECT 1", "x": 1}', b"\xff"])
def test_a_malformed_query_body_is_a_400(api: TestClient, body: bytes) -> None:
    r = api.post("/v1/queries", content=body, headers={**PRIVATE, "Content-Type": "application/json"})
    assert r.status_code == 400, r.text


def _user_counts(settings: Settings, user: str) -> tuple[int, int, int]:
    with psycopg.connect(settings.pg_owner_dsn.get_secret_value()) as c:
        pg = c.execute("SELECT count(*) FROM events WHERE user_id = %s", (user,)).fetchone()
    ch = ch_client(settings)
    try:
        p = {"u": user}
        ch_n = ch.command("SELECT count() FROM events WHERE user_id = {u:String}", parameters=p)
        ids = ch.command("SELECT count() FROM event_ids WHERE event_id IN"
                         " (SELECT event_id FROM events WHERE user_id = {u:String})", parameters=p)
        return int(pg[0]) if pg else -1, int(ch_n), int(ids)
    finally:
        ch.close()


def _event_ids_held(settings: Settings, ids: list[str]) -> int:
    ch = ch_client(settings)
    try:
        return int(ch.command("SELECT count() FROM event_ids WHERE has({ids:Array(UUID)}, event_id)",
                              parameters={"ids": ids}))
    finally:
        ch.close()


def test_erasure_removes_the_user_from_both_stores_and_the_rollup_stays_consistent(
        api: TestClient, read_settings: Settings) -> None:
    run = uuid.uuid4().hex[:10]
    events = _events(run, 120)
    user = f"{run}-u1"
    theirs = [e["event_id"] for e in events if e["user_id"] == user]
    assert any(e["type"] == "page" for e in events if e["user_id"] == user)
    _store(read_settings, events)
    assert _user_counts(read_settings, user)[0] == len(theirs)
    assert _event_ids_held(read_settings, theirs) == len(theirs)
    others_before = len([e for e in events if e["user_id"] != user])
    # their visits stored too (footprint close-visits): the erasure must stop ClickHouse reading them
    day = START.date()
    closed = close_visits(read_settings, days=(day - timedelta(days=1), day + timedelta(days=5)),
                          under_way=timedelta(0))
    assert closed.made and closed.visits, closed

    r = api.delete(f"/v1/users/{user}", headers=PRIVATE)
    assert r.status_code == 202, r.text
    job = r.json()["jobId"]

    def done() -> bool:
        s = api.get(f"/v1/erasures/{job}", headers=PRIVATE).json()
        assert s["status"] != "failed", s
        return bool(s["status"] == "done")

    wait_for(done, timeout=120, what="erasure job done")
    status = api.get(f"/v1/erasures/{job}", headers=PRIVATE).json()
    assert status["postgresDeleted"] == len(theirs) and status["clickhouseDeleted"] == len(theirs)
    assert _user_counts(read_settings, user) == (0, 0, 0)
    assert _event_ids_held(read_settings, theirs) == 0
    assert len(_get_all(api, {"properties.run": run})) + len(
        [e for e in events if e["type"] == "identify" and e["user_id"] != user]) == others_before
    # the ClickHouse rollups (page views, visitors per link and hour...) and its visits answer as PostgreSQL's raw
    # rows: the visits of the erased user's days are made of the raw events again
    results = run_stats(read_settings, day, day + timedelta(days=4))
    assert all(r.same for r in results), [(r.name, r.pg_rows, r.ch_rows) for r in results if not r.same]


def test_events_still_in_kafka_are_erased_when_they_land(api: TestClient, settings: Settings,
                                                         read_settings: Settings) -> None:
    run = uuid.uuid4().hex[:10]
    user = f"{run}-late"
    r = api.delete(f"/v1/users/{user}", headers=PRIVATE)
    assert r.status_code == 202
    when = datetime.now(UTC)
    late = [make_event(type="track", event="Paid", user_id=user, footprint_time=when, received_at=when)
            for _ in range(20)]
    other = [make_event(type="track", event="Paid", user_id=f"{run}-other", footprint_time=when, received_at=when)
             for _ in range(5)]
    produce(settings, late + other)
    erased = ErasedUsers(settings.pg_dsn.get_secret_value(), 0.5)
    with RunningConsumer(settings, erased=erased):
        wait_for(lambda: _user_counts(read_settings, f"{run}-other")[:2] == (5, 5), what="the other user stored")
    assert _user_counts(read_settings, user) == (0, 0, 0)
    assert _event_ids_held(read_settings, [e["event_id"] for e in late]) == 0


def test_erasure_of_a_bad_user_id_or_an_unknown_job(api: TestClient) -> None:
    assert api.delete("/v1/users/" + "x" * 201, headers=PRIVATE).status_code == 400
    assert api.get("/v1/erasures/not-a-uuid", headers=PRIVATE).status_code == 400
    assert api.get(f"/v1/erasures/{uuid.uuid4()}", headers=PRIVATE).status_code == 404


def test_only_the_owner_can_delete(read_settings: Settings) -> None:
    """Least privilege: the writer (consumer) and the reader have no DELETE in either store."""
    import clickhouse_connect

    for dsn in (read_settings.pg_dsn, read_settings.pg_reader_dsn):
        with psycopg.connect(dsn.get_secret_value()) as c, pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("DELETE FROM events WHERE user_id = 'nobody'")
    for user, password in ((read_settings.ch_user, read_settings.ch_password),
                           (read_settings.ch_reader_user, read_settings.ch_reader_password)):
        client = clickhouse_connect.get_client(host=read_settings.ch_host, port=read_settings.ch_port, username=user,
                                               password=password.get_secret_value(),
                                               database=read_settings.ch_database)
        try:
            with pytest.raises(Exception, match="Code: 497"):
                client.command("ALTER TABLE events DELETE WHERE user_id = 'nobody'")
        finally:
            client.close()
