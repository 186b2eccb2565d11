"""The Goals and Funnels panels (issue 35 item 4) in a real browser against a real ``footprint dashboard`` process
(reader credentials only) and the real stores, on a database of the test's own: the inventory's goals and funnel
(FOOTPRINT_GOALS, FOOTPRINT_FUNNELS) are shown read-only with what ``footprint stats --json`` gives (both stores
agreeing); a goal and a funnel made with the dashboard's forms are stored, counted and listed, and deleted with
their buttons; the refusals (a taken name, the inventory's, a goal a funnel steps through, bad definitions) name
the cause; the stores panel compares them; no console errors; a phone screen without sideways scrolling; a share
link shows the panels without the forms. The goal filter (``goal=NAME`` in the address: only the visitors who
reached it) drives every panel as ``footprint stats --goal NAME --json`` and a share link's; the goals and funnels
beside the previous period and their CSV downloads equal ``footprint stats --compare --json``."""

from __future__ import annotations

import csv
import io
import json
import random
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from pydantic import SecretStr
from test_dashboard import (
    CHARTS,
    KEY,
    _cli_stats,
    _expected,
    _shown,
    _signed_in,
    _updated,
    _visits_as_cli,
    _watch,
    _window,
    fits_the_width,
    phone_page,
)

from footprint.contract import encode_event, make_event
from footprint.csvexport import cell
from footprint.migrate import migrate_clickhouse, migrate_postgres
from footprint.settings import Settings
from footprint.sinks import ClickHouseSink, PostgresSink
from helpers import dashboard_process, own_database

GOALS = [{"name": "Pricing", "page": "/pricing*"}, {"name": "Signed up", "event": "Signed Up"}]
FUNNELS = [{"name": "Trial", "steps": ["Pricing", "Signed up"], "within": "visit"}]


def _traffic(now: datetime) -> list[dict[str, Any]]:
    """Visitors over the last 12 days (the last 7 and the week before, to compare): reading the blog, looking at
    prices, some signing up (in the same visit or hours later), and a bot and probes that never count."""
    rnd = random.Random(35)
    out = []
    for v in range(40):
        when = now - timedelta(days=rnd.randrange(12), minutes=300 + rnd.randrange(600))  # all before now
        for link in rnd.sample(["/", "/blog/kafka", "/blog/", "/pricing", "/pricing/team", "/docs"],
                               rnd.randrange(1, 5)):
            when += timedelta(minutes=rnd.choice([1, 5, 45]))
            out.append(make_event(type="page", footprint_time=when, received_at=now, anonymous_id=f"v{v}", link=link,
                                  method="GET", enriched={"bot": v == 0, "device": "bot" if v == 0 else "desktop"}))
        if v and rnd.random() < 0.5:  # v0: a bot
            when += timedelta(minutes=rnd.choice([2, 90]))
            out.append(make_event(type="track", event="Signed Up", footprint_time=when, received_at=now,
                                  anonymous_id=f"v{v}", link="/signup"))
    out += [make_event(type="page", link="/pricing", method="GET", anonymous_id="probe", synthetic=True,
                       footprint_time=now - timedelta(minutes=i), received_at=now) for i in range(5)]
    return out


@pytest.fixture(scope="module")
def goals_dashboard(base_settings: Settings, postgres: Any, tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[dict[str, Any]]:
    settings = own_database(base_settings, postgres, "footprint_goals_ui", private_keys=[SecretStr(KEY)])
    migrate_postgres(settings)
    migrate_clickhouse(settings)
    docs = {e["event_id"]: encode_event(e) for e in _traffic(datetime.now(UTC) - timedelta(seconds=5))}
    for sink in (PostgresSink(settings.pg_dsn.get_secret_value()), ClickHouseSink(settings)):
        sink.write(docs)
        sink.close()
    log_path = tmp_path_factory.mktemp("dashboard-goals") / "dashboard.log"
    with dashboard_process(settings, log_path, goals=json.dumps(GOALS), funnels=json.dumps(FUNNELS)) as (base, env):
        yield {"base": base, "env": env}
    assert "Traceback" not in log_path.read_text()


CELLS = "rows => rows.map(r => [...r.cells].filter(c => !c.classList.contains('cmp')).map(c => c.innerText))"


def _as_cli(page: Any, env: dict[str, str], *args: str) -> dict[str, Any]:
    """The Goals and Funnels panels show `footprint stats --json`'s goals and funnels (both stores agreeing; the
    last 30 days, or ``args``); returns those statistics."""
    stats = _cli_stats(env, *(args or _window(30)))
    for name in ("goals", "funnels"):
        assert stats[name]["postgres"] == stats[name]["clickhouse"], name
    goals = page.eval_on_selector_all("#goals tbody tr", CELLS)
    assert [row[:1] + row[2:5] for row in goals] == [
        [name, str(visitors), str(conversions), f"{rate} %"]
        for name, visitors, conversions, _everyone, rate in stats["goals"]["clickhouse"]]
    funnels = page.eval_on_selector_all("#funnels table.funnel tbody tr", """rows => rows.map(r =>
        [r.closest('table').dataset.funnel,
         ...[...r.cells].filter(c => !c.classList.contains('cmp')).slice(0, 5).map(c => c.innerText)])""")
    assert funnels == [[funnel, str(step), goal, str(visitors), f"{first} %", f"{drop} %"]
                       for funnel, step, goal, visitors, first, drop in stats["funnels"]["clickhouse"]]
    return stats


def _shared(browser: Any, page: Any, base: str, query: str, panels: list[str], errors: list[str]) -> Any:
    """A share link of ``query`` and ``panels`` made by the signed-in ``page``, opened by a viewer without a login."""
    made = page.request.post(base + "/api/share", data=json.dumps(
        {"query": query, "panels": panels, "expires_seconds": 3600}), headers={"Content-Type": "application/json"})
    assert made.ok, made.text()
    shared = browser.new_context().new_page()
    _watch(shared, errors)
    shared.goto(base + made.json()["url"])
    _updated(shared, 0)
    return shared


def test_goals_and_funnels_from_the_inventory_and_the_dashboard(goals_dashboard: dict[str, Any]) -> None:
    base, env = goals_dashboard["base"], goals_dashboard["env"]
    with _signed_in(base) as (browser, page, errors):
        stats = _as_cli(page, env)
        pricing, signed = stats["goals"]["clickhouse"]
        assert pricing[1] > 0 and signed[1] > 0 and pricing[3] == signed[3] == 39  # the bot never counts
        trial = stats["funnels"]["clickhouse"]
        assert trial[0][1:4] == [1, "Pricing", pricing[1]] and 0 < trial[1][3] < pricing[1]
        assert page.inner_text("#goals tr[data-goal='Pricing'] td.source") == "inventory"  # no delete button
        assert not page.query_selector("#funnels table[data-funnel='Trial'] button.delete")

        # a goal and a funnel made on the dashboard
        page.fill("#goal-name", "Blog")
        page.select_option("#goal-kind", "page")
        page.fill("#goal-value", "/blog/*")
        page.click("#goal-form button[type=submit]")
        page.wait_for_selector("#goals tr[data-goal='Blog'] button.delete")
        page.fill("#funnel-name", "Reading")
        page.fill("#funnel-steps", "Blog > Pricing > Signed up")
        page.select_option("#funnel-within", "day")
        page.click("#funnel-form button[type=submit]")
        page.wait_for_selector("#funnels table[data-funnel='Reading'] button.delete")
        page.wait_for_function("() => !document.querySelector('#funnel-message').textContent")
        stats = _as_cli(page, env)
        assert [g[0] for g in stats["goals"]["clickhouse"]] == ["Pricing", "Signed up", "Blog"]
        assert [r[0] for r in stats["funnels"]["clickhouse"]] == ["Trial"] * 2 + ["Reading"] * 3

        # a taken name: refused, saying why
        page.fill("#goal-name", "Pricing")
        page.fill("#goal-value", "Paid")
        page.select_option("#goal-kind", "event")
        page.click("#goal-form button[type=submit]")
        page.wait_for_function("() => document.querySelector('#goal-message').textContent.includes('exists')")
        assert "defined in the inventory" in page.inner_text("#goal-message")

        # the stores panel compares them too
        page.wait_for_function("() => document.querySelector('#stores tr[data-query=funnels]')", timeout=60_000)
        for name in ("goals", "funnels"):
            assert "same" in page.inner_text(f"#stores tr[data-query={name}]")

        mobile = phone_page(browser, page.url, errors, page.context.storage_state())
        mobile.wait_for_selector("#funnels table[data-funnel='Reading']")
        fits_the_width(mobile)

        # a share link of the two panels: shown to a viewer without a login, without the forms and buttons
        shared = _shared(browser, page, base, "range=30", ["goals", "funnels"], errors)
        shared.wait_for_selector("#funnels table[data-funnel='Reading']")
        assert not shared.is_visible("#goal-form") and not shared.is_visible("#funnel-form")
        assert not shared.query_selector("button.delete") and not shared.is_visible("#views_per_day")
        assert shared.inner_text("#goals tr[data-goal='Blog'] td.source") == "dashboard"

        # deleted with their buttons: the funnel first (a goal a funnel steps through is kept)
        page.click("#goals tr[data-goal='Blog'] button.delete")
        page.wait_for_function("() => document.querySelector('#goal-message').textContent.includes('Reading')")
        page.click("#funnels table[data-funnel='Reading'] button.delete")
        page.wait_for_selector("#funnels table[data-funnel='Reading']", state="detached")
        page.click("#goals tr[data-goal='Blog'] button.delete")
        page.wait_for_selector("#goals tr[data-goal='Blog']", state="detached")
        stats = _as_cli(page, env)
        assert [g[0] for g in stats["goals"]["clickhouse"]] == ["Pricing", "Signed up"]
    # the browser logs each refused change's answer: the two refusals above (a taken name, a goal still a step)
    refused = "Failed to load resource: the server responded with a status of 409 (Conflict)"
    assert errors == [refused] * 2, errors


def test_the_goal_api_refuses_bad_definitions_naming_the_cause(goals_dashboard: dict[str, Any]) -> None:
    base = goals_dashboard["base"]
    with httpx.Client(base_url=base, timeout=30) as c:
        assert c.post("/api/goals", json={"name": "x", "event": "y"}).status_code == 401  # not signed in
        assert c.delete("/api/goals/Pricing").status_code == 401
        assert c.post("/login", data={"secret": KEY}).status_code == 303
        listed = c.get("/api/goals").json()
        assert [(g["name"], g["source"]) for g in listed["goals"]] == [("Pricing", "inventory"), ("Signed up",
                                                                                                  "inventory")]
        refused = {
            "both kinds": ({"name": "x", "event": "y", "page": "/z"}, 400, "either"),
            "neither": ({"name": "x"}, 400, "either"),
            "no name": ({"event": "y"}, 400, "name"),
            "empty name": ({"name": " ", "event": "y"}, 400, "name"),
            "a NUL": ({"name": "x", "page": "/a\x00"}, 400, "NUL"),
            "another field": ({"name": "x", "event": "y", "kind": "z"}, 400, "kind"),
            "not an object": ([1], 400, "goal"),
            "taken": ({"name": "Signed up", "event": "y"}, 409, "inventory"),
        }
        for case, (body, status, said) in refused.items():
            answer = c.post("/api/goals", json=body)
            assert (answer.status_code, said in answer.json()["detail"]) == (status, True), (case, answer.text)
        for case, (body, status, said) in {
            "one step": ({"name": "f", "steps": ["Pricing"]}, 400, "steps"),
            "eleven steps": ({"name": "f", "steps": ["Pricing"] * 11}, 400, "steps"),
            "within a week": ({"name": "f", "steps": ["Pricing", "Pricing"], "within": "week"}, 400, "within"),
            "no such goal": ({"name": "f", "steps": ["Pricing", "Nope"]}, 409, "Nope"),
            "taken": ({"name": "Trial", "steps": ["Pricing", "Pricing"]}, 409, "inventory"),
        }.items():
            answer = c.post("/api/funnels", json=body)
            assert (answer.status_code, said in answer.json()["detail"]) == (status, True), (case, answer.text)
        assert c.post("/api/goals", content=b"{not json", headers={"Content-Type": "application/json"}
                      ).status_code == 400
        assert c.delete("/api/goals/Pricing").status_code == 409  # the inventory's
        assert c.delete("/api/funnels/Nope").status_code == 404
        name = f"goal/{uuid.uuid4().hex[:6]} with a slash"
        assert c.post("/api/goals", json={"name": name, "event": "Paid"}).status_code == 201
        assert c.delete("/api/goals/" + httpx.URL(f"/{name}").raw_path.decode()[1:]).status_code == 200
        assert c.get("/api/goals").json() == listed


def _number(value: Any) -> str:
    """A number as the page's script writes it (30.0 -> 30)."""
    return str(int(value)) if value == int(value) else str(value)


def _rate(value: Any, points: bool) -> str:
    return f"{_number(value)} %" if not points else f"{'+' if value > 0 else ''}{_number(value)} pts"


def _change(change: float | None, value: Any) -> str:
    if change is None:
        return "new" if value else "\u2013"
    return ("+" if change > 0 else "") + f"{_number(change)} %"


def _compared_cells(stats: dict[str, Any], name: str) -> list[list[Any]]:
    """`footprint stats --compare --json`'s comparison of the goals or funnels (both stores agreeing), each row as the
    panel writes it: the names, then each figure, its previous value and its change."""
    previous = stats[name]["previous"]
    assert previous["same"] and previous["compared"]["postgres"] == previous["compared"]["clickhouse"], name
    keys, rates = (1, (4,)) if name == "goals" else (3, (4, 5))
    out = []
    for r in previous["compared"]["clickhouse"]:
        row = [str(v) for v in r[:keys]]
        for i in range(keys, keys + (len(r) - keys) // 3):
            value, before, change = r[keys + 3 * (i - keys):keys + 3 * (i - keys) + 3]
            if i in rates:
                row += [_rate(value, False), _rate(before, False), _rate(change, True)]
            elif name == "goals" and i == 3:  # the visitors in the filter: no column of the panel
                continue
            else:
                row += [str(value), str(before), _change(change, value)]
        out.append(row)
    return out


def _csv(page: Any, name: str) -> list[list[str]]:
    text = page.evaluate("(n) => fetch(document.querySelector(`a[data-export='${n}']`).href).then(r => r.text())", name)
    return list(csv.reader(io.StringIO(text, newline="")))


def test_the_goal_filter_drives_every_panel_and_goals_compare_and_export(goals_dashboard: dict[str, Any]) -> None:
    base, env = goals_dashboard["base"], goals_dashboard["env"]
    with _signed_in(base) as (browser, page, errors):
        # goal=NAME in the address: every panel shows `footprint stats --goal NAME --json` (the stores agreeing)
        page.goto(base + "/?" + urlencode({"range": "30", "goal": "Signed up"}))
        _updated(page, 0)
        assert page.input_value("#goal") == "Signed up" and "reached the goal" in page.inner_text("#status")
        everyone = _cli_stats(env, *_window(30))
        stats = _as_cli(page, env, *_window(30), "--goal", "Signed up")
        shown, expected = _shown(page), _expected(stats)
        for name in CHARTS[:-1]:
            assert shown[name] == expected[name], name
        _visits_as_cli(page, stats)
        views = sum(r[1] for r in stats["views_per_day"]["clickhouse"])
        assert 0 < views < sum(r[1] for r in everyone["views_per_day"]["clickhouse"])
        signed = stats["goals"]["clickhouse"][1]  # every visitor of this filter reached it
        assert signed[0] == "Signed up" and signed[1] == signed[3] and signed[4] == 100
        assert stats["bots_per_day"]["clickhouse"] == []  # the bot never signed up
        page.wait_for_function("() => Number(document.body.dataset.compared || 0) >= 1", timeout=60_000)
        assert "DIFFERENT" not in page.inner_text("#stores")

        # the goals and funnels beside the previous week, as the CLI gives them; their CSVs the same numbers
        page.goto(base + "/?" + urlencode({"range": "7", "compare": "previous"}))
        _updated(page, 0)
        stats = _cli_stats(env, *_window(7), "--compare")
        goals = _compared_cells(stats, "goals")
        assert any(r[3] not in ("0", "0 %") for r in goals)  # the week before had conversions too
        assert page.eval_on_selector_all("#goals tbody tr", """rows => rows.map(r =>
            [...r.cells].filter((c, i) => i !== 1 && !c.classList.contains('source')).map(c => c.innerText))"""
        ) == goals
        funnels = page.eval_on_selector_all("#funnels table.funnel tbody tr", """rows => rows.map(r =>
            [r.closest('table').dataset.funnel, ...[...r.cells].slice(0, -1).map(c => c.innerText)])""")
        assert funnels == _compared_cells(stats, "funnels")
        for name in ("goals", "funnels"):
            exported = _csv(page, name)
            assert exported[0][-1].endswith("_change_points") and len(exported[0]) == len(exported[1])
            assert exported[1:] == [[cell(v) for v in r] for r in stats[name]["previous"]["compared"]["clickhouse"]]
        page.uncheck("#compare")
        _updated(page, 1)
        for name in ("goals", "funnels"):
            assert _csv(page, name)[1:] == [[cell(v) for v in r] for r in _cli_stats(env, *_window(7))[name][
                "clickhouse"]], name
        fits_the_width(phone_page(browser, base + "/?range=7&compare=previous&goal=Pricing", errors,
                                  page.context.storage_state()))

        # a share link keeps the goal; an unknown goal is refused naming it, in the address, the link and the CLI
        shared = _shared(browser, page, base, "range=30&goal=Signed+up", ["views_per_day", "goals"], errors)
        drawn = shared.evaluate("() => { const c = Chart.getChart('views_per_day');"
                                " return c.data.labels.map((l, i) => [l, c.data.datasets[0].data[i]]); }")
        assert drawn == expected["views_per_day"]
        assert shared.input_value("#goal") == "Signed up"
        for query in ("range=30&goal=Nope", "range=7&compare=previous&goal=Nope"):
            answer = page.request.get(base + "/api/stats?" + query)
            assert answer.status == 400 and "no goal named 'Nope'" in answer.json()["detail"], answer.text()
        answer = page.request.post(base + "/api/share", data=json.dumps(
            {"query": "goal=Nope", "panels": ["goals"], "expires_seconds": 60}), headers={"Content-Type":
                                                                                         "application/json"})
        assert answer.status == 400 and "Nope" in answer.json()["detail"]
        assert errors == []
    res = subprocess.run([sys.executable, "-m", "footprint.cli", "stats", "--goal", "Nope"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "no goal named 'Nope'" in res.stderr and "'Pricing'" in res.stderr, res.stderr
