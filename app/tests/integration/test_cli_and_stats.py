"""The CLI against the real services: SIGTERM, clear startup errors, stats on both stores."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from footprint.contract import MAX_TIME, MIN_TIME, make_event
from footprint.settings import Settings
from footprint.stats import APPROXIMATION, DRAWN, QUERIES, ROLLUP_END, Filter, approximated, run_clickhouse, run_stats
from helpers import RunningConsumer, ch_client, ch_ids, committed, gen_events, pg_ids, produce, settings_env, wait_for
from services import free_port

FOOTPRINT = [sys.executable, "-m", "footprint.cli"]


def test_sigterm_finishes_the_batch_and_commits(settings: Settings) -> None:
    events = gen_events(2000, seed=31)
    ids = [e["event_id"] for e in events]
    produce(settings, events)
    proc = subprocess.Popen([*FOOTPRINT, "consume"], env=settings_env(settings, batch_max_seconds=5),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(pg_ids(settings, ids)) > 0, what="consumer started storing")
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    stored = pg_ids(settings, ids)
    offsets = committed(settings)
    # what was committed is exactly what was stored (offsets 0..n-1 per partition)
    assert sum(max(o, 0) for o in offsets.values()) == len(stored)
    assert '"consumer stopped"' in err


def test_consume_waits_for_a_store_that_refuses_it_and_says_why(settings: Settings) -> None:
    """No exit (and no restart loop under systemd): it waits, logs the cause, and /healthz says it."""
    bad_pg = settings.pg_dsn.get_secret_value().replace("writer-pw", "nope")
    port = free_port()
    env = settings_env(settings, pg_dsn=bad_pg, consumer_http_port=port)
    proc = subprocess.Popen([*FOOTPRINT, "consume"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def health() -> tuple[int, dict[str, Any]]:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            except httpx.HTTPError:
                return 0, {}
            return r.status_code, r.json()

        wait_for(lambda: health()[0] == 503 and "postgres" in health()[1].get("waiting_for", {}), timeout=30,
                 what="/healthz reporting the wait")
        _status, body = health()
        assert body["status"] == "waiting" and "password authentication failed" in body["waiting_for"]["postgres"]
        assert set(body["waiting_for"]) == {"postgres"}  # Kafka and ClickHouse are fine
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert "waiting for stores before consuming" in err and "PostgreSQL (writer)" in err
    assert "password authentication failed" in err and "nope" not in err and "Traceback" not in err


def test_wrong_credentials_give_one_clear_line(settings: Settings) -> None:
    res = subprocess.run([*FOOTPRINT, "check"], env=settings_env(settings, ch_password="nope"),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "Traceback" not in res.stderr + res.stdout
    assert '"pg": "ok"' in res.stdout and '"kafka": "ok"' in res.stdout and "ClickHouse (writer" in res.stdout
    res = subprocess.run([*FOOTPRINT, "check", "--store", "kafka"],
                         env=settings_env(settings, kafka_bootstrap="127.0.0.1:1"),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "Kafka (127.0.0.1:1)" in res.stdout


def _truncate(settings: Settings) -> None:
    with psycopg.connect(settings.pg_owner_dsn.get_secret_value()) as c:
        c.execute("TRUNCATE events")
    ch = ch_client(settings)
    try:
        # event_ids after events
        for table in ("events", "link_hourly", "stats_hourly", "breakdowns_daily", "links_daily", "visitors_daily",
                      "event_ids"):
            ch.command(f"TRUNCATE TABLE {table}")
    finally:
        ch.close()


def test_both_stores_give_identical_stats(settings: Settings) -> None:
    _truncate(settings)
    events = gen_events(6000, seed=41, days=4)
    produce(settings, events)
    produce(settings, events[:1000])  # replays must not change any answer
    with RunningConsumer(settings):
        wait_for(lambda: sum(max(o, 0) for o in committed(settings).values()) == 7000, what="all consumed")
    results = {r.name: r for r in run_stats(settings, date(1970, 1, 1), date(2100, 1, 1), top=5)}
    for r in results.values():
        assert r.pg_rows or r.name == "live_per_minute", r.name  # (the traffic is from 2026-11, not the last hour)
        assert r.pg_rows == r.ch_rows, f"{r.name}: {r.pg_rows[:5]} != {r.ch_rows[:5]}"
    # and both agree with an independent count in Python
    pages = [e for e in events if e["type"] == "page" and not e["synthetic"] and not e["bot"]]
    per_day = Counter(e["footprint_time"][:10] for e in pages)
    assert results["views_per_day"].pg_rows == sorted(per_day.items())
    methods = Counter(e["method"] for e in pages)
    assert dict(results["methods"].ch_rows) == dict(methods)
    visitors: dict[str, set[str]] = {}
    for e in pages:
        visitors.setdefault(e["footprint_time"][:10], set()).add(e["visitor_id"])
    assert results["unique_visitors_per_day"].ch_rows == sorted((d, len(v)) for d, v in visitors.items())
    # the dashboard's chart of them: the estimate from the daily sketches, the same days, each within four times the
    # sketch's relative standard error (1.6 %) of the exact count
    drawn = run_clickhouse(settings, Filter(), ("unique_visitors_per_day",), page=True)
    assert approximated(Filter(), ("unique_visitors_per_day",)) == {"unique_visitors_per_day": APPROXIMATION}
    estimated = dict(drawn["unique_visitors_per_day"])
    assert estimated.keys() == {d for d in visitors}
    assert all(abs(estimated[d] - len(v)) <= 0.064 * len(v) for d, v in visitors.items()), (estimated, visitors)
    # the page's charts of the top links and the countries: the statistic's rows with the views alone (stats.DRAWN)
    page = run_clickhouse(settings, Filter(top=5), tuple(DRAWN), page=True)
    for name in DRAWN:
        assert page[name] and page[name] == [r[:2] for r in results[name].ch_rows], (name, page[name])
    for name, column in (("referrers", "referrer_host"), ("utm_sources", "utm_source"), ("utm_mediums", "utm_medium"),
                         ("utm_campaigns", "utm_campaign"), ("browsers", "browser"), ("operating_systems", "os"),
                         ("devices", "device")):
        counts = Counter(e[column] for e in pages)
        assert dict(results[name].pg_rows) == dict(counts.most_common(5)), name
    assert "bot" not in dict(results["devices"].pg_rows)  # bots are kept out of the stats ...
    bot_pages = [e for e in events if e["type"] == "page" and not e["synthetic"] and e["bot"]]
    bots = Counter(e["footprint_time"][:10] for e in bot_pages)
    assert results["bots_per_day"].ch_rows == sorted(bots.items()) and bots  # ... stored, marked and countable
    assert dict(results["bot_agents"].pg_rows) == dict(Counter(e["browser"] for e in bot_pages))
    # a filter on the audience (ClickHouse builds the rollup's rows from the raw events) gives the same counts
    f = Filter(source="news.example.com", device="mobile", top=5)
    chosen = [e for e in pages if e["referrer_host"] == "news.example.com" and e["device"] == "mobile"]
    audience = {r.name: r for r in run_stats(settings, f.since, f.until, f=f)}
    assert all(r.same for r in audience.values()), [r.name for r in audience.values() if not r.same]
    assert audience["views_per_day"].pg_rows == sorted(Counter(e["footprint_time"][:10] for e in chosen).items())
    chosen_visitors: dict[str, set[str]] = {}
    for e in chosen:
        chosen_visitors.setdefault(e["footprint_time"][:10], set()).add(e["visitor_id"])
    assert audience["unique_visitors_per_day"].ch_rows == sorted((d, len(v)) for d, v in chosen_visitors.items())
    assert dict(audience["referrers"].ch_rows) == {"news.example.com": len(chosen)} and chosen
    # date bounds are applied the same way
    window = {r.name: r for r in run_stats(settings, date(2026, 11, 2), date(2026, 11, 3))}
    assert all(r.same for r in window.values())
    assert window["views_per_day"].pg_rows == [("2026-11-02", per_day["2026-11-02"])]
    # the CLI exits 0 when the stores agree and prints both timings
    res = subprocess.run([*FOOTPRINT, "stats", "--top", "3"], env=settings_env(settings), capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("answers same") == len(QUERIES)


def test_times_at_the_contracts_edges_give_identical_stats(settings: Settings) -> None:
    """The contract takes 2000..2199 and both raw tables hold that exactly; the ClickHouse rollups' hours
    end in 2106 (found by a suite whose fuzzed far-future events made the stores' live minutes differ)."""
    _truncate(settings)
    now = datetime.now(UTC)
    last = timedelta(microseconds=1)
    rollup_end = datetime.combine(ROLLUP_END, datetime.min.time(), UTC)
    times = [MIN_TIME.replace(tzinfo=UTC), rollup_end - last, rollup_end + timedelta(hours=6, minutes=28, seconds=15),
             rollup_end + timedelta(hours=7), MAX_TIME.replace(tzinfo=UTC) - last, now, now + timedelta(minutes=5)]
    events = [make_event(type="page", footprint_time=t, received_at=now, method="GET", link=f"/edge/{i}",
                         anonymous_id=f"edge-{i}") for i, t in enumerate(times)]
    ids = [e["event_id"] for e in events]
    produce(settings, events)
    with RunningConsumer(settings):
        wait_for(lambda: len(pg_ids(settings, ids)) == len(ch_ids(settings, ids)) == len(ids), what="all stored")
    for f in (Filter(), Filter(until=ROLLUP_END), Filter(since=ROLLUP_END - timedelta(days=1), until=ROLLUP_END)):
        results = run_stats(settings, f.since, f.until, f=f)
        assert all(r.same for r in results), [(r.name, r.pg_rows, r.ch_rows) for r in results if not r.same]
    widest = {r.name: r for r in run_stats(settings, date(1970, 1, 1), ROLLUP_END)}
    in_rollup = Counter(t.date().isoformat() for t in times if t < rollup_end)
    assert widest["views_per_day"].ch_rows == sorted(in_rollup.items())
    assert sum(n for _, n in widest["live_per_minute"].ch_rows) == 1  # now's event; not the one 5 minutes ahead
    with pytest.raises(ValueError, match="2106-02-07 at the latest"):
        Filter(until=ROLLUP_END + timedelta(days=1))
    res = subprocess.run([*FOOTPRINT, "stats", "--until", "2199-01-01"], env=settings_env(settings),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "until: 2106-02-07 at the latest" in res.stderr and "Traceback" not in res.stderr


def test_collector_to_both_stores(settings: Settings) -> None:
    """The real collector (uvicorn, real producer) -> Kafka -> consumer -> both stores."""
    import httpx

    from services import free_port

    port = free_port()
    proc = subprocess.Popen([*FOOTPRINT, "serve"], env=settings_env(settings, collector_port=port),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _up(base), what="collector up")
        with httpx.Client(base_url=base) as http:
            for i in range(20):
                assert http.get(f"/page/{i}").status_code == 404  # requests to the collector are no page views
            r = http.post("/v1/events", headers={"Authorization": "Bearer test-key"}, json={"batch": [
                {"type": "track", "event": "Signed Up", "userId": "u1", "properties": {"plan": "pro"}},
                {"type": "identify", "userId": "u1", "traits": {"email": "u1@example.test"}},
                {"type": "group", "userId": "u1", "groupId": "acme"},
                {"type": "page", "anonymousId": "a1", "properties": {"path": "/pricing"}},
            ]})
            assert r.status_code == 202, r.text
            api_ids = r.json()["event_ids"]
            metrics = http.get("/metrics").text
        assert "footprint_events_enqueued_total" in metrics
        with RunningConsumer(settings):
            wait_for(lambda: len(pg_ids(settings, api_ids)) == 4, what="API events stored")
            with psycopg.connect(settings.pg_owner_dsn.get_secret_value()) as c:
                assert c.execute("SELECT count(*) FROM events WHERE link LIKE '/page/%%'").fetchone() == (0,)
                row: Any = c.execute("SELECT type, event, user_id, properties->>'plan' FROM events"
                                     " WHERE event_id = %s", (api_ids[0],)).fetchone()
        assert row == ("track", "Signed Up", "u1", "pro")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _up(base: str) -> bool:
    import httpx

    try:
        return httpx.get(base + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        time.sleep(0.2)
        return False


def test_migrate_command_is_idempotent(settings: Settings) -> None:
    import json

    res = subprocess.run([*FOOTPRINT, "migrate"], env=settings_env(settings), capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"applied": {"postgres": [], "clickhouse": []}}
    res = subprocess.run([*FOOTPRINT, "migrate", "--store", "ch"],
                         env=settings_env(settings, ch_owner_password="wrong"), capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 2 and "ClickHouse (owner" in res.stderr and "Traceback" not in res.stderr
