"""Issue 35, item 5 in a real browser (Debian's chromium, headless) against a real ``footprint dashboard`` and the
real stores: the previous period beside every panel equals ``footprint stats --compare --json`` (both stores
agreeing), each panel's CSV holds the numbers it draws, and a share link opens its panels read-only without
a login until it expires, and never once changed; no console errors; a phone screen scrolls no sideways."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from test_dashboard import (
    CHARTS,
    KEY,
    _cli_stats,
    _duration,
    _signed_in,
    _updated,
    _watch,
    _window,
    dashboard,  # noqa: F401 (the module's own dashboard, data and process: a fixture)
    fits_the_width,
    phone_page,
)

from footprint.dashboard.view import VISITS
from footprint.stats import QUERIES

DRAWN = CHARTS[:-1]  # the live chart moves with the clock: compared by the unit tests and by its totals


def _label(value: Any) -> str:
    return "(none)" if value == "" else str(value)


def _shown_compared(page: Any, names: tuple[str, ...] = DRAWN) -> dict[str, list[list[Any]]]:
    """Each chart's [label, value, previous value, change %] as drawn (its two datasets)."""
    return dict(page.evaluate("""(names) => Object.fromEntries(names.map((n) => {
        const c = Chart.getChart(n);
        const [now, before] = c.data.datasets;
        return [n, c.data.labels.map((l, i) => [l, now.data[i], before.data[i], before.change[i]])];
    }))""", list(names)))


def _cli_compared(stats: dict[str, Any], name: str) -> list[list[Any]]:
    previous = stats[name]["previous"]
    assert previous["same"] and previous["postgres"] == previous["clickhouse"], name  # the stores agree
    assert previous["compared"]["postgres"] == previous["compared"]["clickhouse"], name
    return [[_label(r[0]), *r[1:]] for r in previous["compared"]["clickhouse"]]


def _percent(change: float | None, value: Any) -> str:
    if change is None:
        return "new" if value else "\u2013"  # an en dash: none either time
    return ("+" if change > 0 else "") + (str(int(change)) if change == int(change) else str(change)) + " %"


def _visits_compared(page: Any, stats: dict[str, Any]) -> None:
    rows = {r[0]: r for r in _cli_compared(stats, "visits")}
    formats = {"count": ("visits", str), "bounce-rate": ("bounce_rate_percent", lambda v: f"{v} %"),
               "duration": ("average_duration_seconds", _duration), "pages": ("pages_per_visit", lambda v: f"{v:.2f}")}
    for id_, (figure, fmt) in formats.items():
        _, value, before, change = rows[figure]
        assert page.inner_text(f"#visits-{id_}") == fmt(value)
        assert page.inner_text(f"#visits-{id_}-previous") == f"previous {fmt(before)} ({_percent(change, value)})"
    for name in ("entry_pages", "exit_pages"):
        expected = [[r[0], str(r[1]), str(r[2]), _percent(r[3], r[1])] for r in _cli_compared(stats, name)]
        assert _cells(page, name) == expected, name


def _cells(page: Any, name: str) -> list[list[str]]:
    cells = "rows => rows.map(r => [...r.cells].map(c => c.innerText))"
    return list(page.eval_on_selector_all(f"#{name} tbody tr", cells))


def _csv(page: Any, name: str) -> list[list[str]]:
    """The panel's CSV, fetched by the page from its own link."""
    text = page.evaluate("(n) => fetch(document.querySelector(`a[data-export='${n}']`).href).then(r => r.text())", name)
    return list(csv.reader(io.StringIO(text, newline="")))


def test_compare_with_the_previous_period_equals_the_cli_in_both_stores(dashboard: dict[str, Any]) -> None:  # noqa: F811
    base, run, env = dashboard["base"], dashboard["run"], dashboard["env"]
    with _signed_in(base) as (browser, page, errors):
        page.check("#compare")  # the toggle: a change of the filter, kept in the address
        _updated(page, 1)
        assert "compare=previous" in page.url
        stats = _cli_stats(env, *_window(30), "--compare")
        shown = _shown_compared(page)
        for name in DRAWN:
            assert shown[name] == _cli_compared(stats, name), name
        _visits_compared(page, stats)

        # 7 days (the data's 10 days reach into the previous week) and a link prefix, from the address
        page.goto(base + "/?" + urlencode({"range": "7", "link": f"/{run}/", "compare": "previous"}))
        _updated(page, 0)
        stats = _cli_stats(env, *_window(7), "--link", f"/{run}/", "--compare")
        shown = _shown_compared(page)
        for name in DRAWN:
            assert shown[name] == _cli_compared(stats, name), name
        assert any(before for _, _, before, _ in shown["views_per_day"])  # the previous week has views
        assert any(change is not None for *_, change in shown["top_links"])
        _visits_compared(page, stats)
        assert "(" in page.evaluate("() => Chart.getChart('top_links').scales.y.ticks[0].label")  # the change shown
        live = page.evaluate("() => Chart.getChart('live_per_minute').data.datasets.length")
        assert live == 2
        # the stores panel: every statistic of both periods, the same answers in both stores
        page.wait_for_function("() => Number(document.body.dataset.compared || 0) >= 1", timeout=60_000)
        table = page.eval_on_selector_all("#stores tbody tr", "rows => rows.map(r => r.innerText)")
        assert len(table) == 2 * len(QUERIES) and all("same" in r and "DIFFERENT" not in r for r in table), table

        mobile = phone_page(browser, page.url, errors, page.context.storage_state())
        mobile.click("#share summary")  # the share form open too
        fits_the_width(mobile)
        assert errors == []


def test_every_panel_exports_the_numbers_it_draws(dashboard: dict[str, Any]) -> None:  # noqa: F811
    base, run = dashboard["base"], dashboard["run"]
    with _signed_in(base) as (_, page, errors):
        page.goto(base + "/?" + urlencode({"range": "7", "link": f"/{run}/"}))
        _updated(page, 0)
        with page.expect_download() as download:  # a click on the link downloads the file
            page.click("a[data-export='top_links']")
        saved = download.value
        assert saved.suggested_filename.startswith("top_links-") and saved.suggested_filename.endswith(".csv")
        links = list(csv.reader(io.StringIO(Path(saved.path()).read_text(encoding="utf-8"), newline="")))
        assert links[0] == ["link", "views", "visitors"]
        drawn = page.evaluate("""(names) => Object.fromEntries(names.map((n) => {
            const c = Chart.getChart(n);
            return [n, c.data.labels.map((l, i) => [l, String(c.data.datasets[0].data[i])])];
        }))""", list(DRAWN))
        assert [[_label(r[0]), r[1]] for r in links[1:]] == drawn["top_links"]
        for name in DRAWN:
            rows = _csv(page, name)
            assert [[_label(r[0]), r[1]] for r in rows[1:]] == drawn[name], name
        visits = _csv(page, "visits")
        assert visits[0] == ["visits", "bounces", "bounce_rate_percent", "average_duration_seconds", "pages_per_visit"]
        assert visits[1][0] == page.inner_text("#visits-count") and f"{visits[1][2]} %" == page.inner_text(
            "#visits-bounce-rate")
        for name in ("entry_pages", "exit_pages"):
            assert [[_label(r[0]), r[1]] for r in _csv(page, name)[1:]] == _cells(page, name), name

        page.check("#compare")  # comparing: the previous value and the change of each row
        _updated(page, 1)
        shown = _shown_compared(page)
        for name in DRAWN:
            rows = _csv(page, name)
            assert rows[0][2].startswith("previous_") and rows[0][3] == "change_percent", name
            exported = [[_label(r[0]), int(r[1]), int(r[2]), float(r[3]) if r[3] else None] for r in rows[1:]]
            assert exported == shown[name], name
        assert _csv(page, "visits")[0] == ["figure", "value", "previous", "change_percent"]
        assert errors == []
    with httpx.Client(base_url=base, timeout=30) as c:  # the export needs the session like every /api/ answer
        assert c.get("/api/export/top_links.csv").status_code == 401


def _share(base: str, panels: list[str], query: str, seconds: int) -> str:
    with httpx.Client(base_url=base, timeout=30) as c:
        r = c.post("/login", content="secret=" + KEY, headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 303
        made = c.post("/api/share", json={"query": query, "panels": panels, "expires_seconds": seconds})
        assert made.status_code == 200, made.text
        return base + made.json()["url"]


def test_a_share_link_works_without_a_login_until_it_expires(dashboard: dict[str, Any]) -> None:  # noqa: F811
    base, run, env = dashboard["base"], dashboard["run"], dashboard["env"]
    with _signed_in(base) as (browser, page, errors):
        page.goto(base + "/?" + urlencode({"range": "7", "link": f"/{run}/", "compare": "previous"}))
        _updated(page, 0)
        page.click("#share summary")  # the dashboard makes one for the current view: some panels, 1 hour
        for panel in ("views_per_day", "top_links", "referrers", "visits"):
            page.check(f"#share-panels input[value='{panel}']")
        for box in page.query_selector_all("#share-panels input"):
            if box.get_attribute("value") not in ("views_per_day", "top_links", "referrers", "visits"):
                box.uncheck()
        page.select_option("#share-expires", "3600")
        page.click("#share-form button[type=submit]")
        page.wait_for_selector("#share-url:not([hidden])")
        url = page.input_value("#share-url")
        assert url.startswith(base + "/share/") and "until" in page.inner_text("#share-meta")

        viewer = browser.new_context(viewport={"width": 1280, "height": 1000})  # no cookie: never logged in
        shared = viewer.new_page()
        _watch(shared, errors)
        shared.goto(url)
        _updated(shared, 0)
        assert shared.url == url and not viewer.cookies()
        stats = _cli_stats(env, *_window(7), "--link", f"/{run}/", "--compare")
        drawn = _shown_compared(shared, ("views_per_day", "top_links", "referrers"))
        for name, rows in drawn.items():
            assert rows == _cli_compared(stats, name), name
        _visits_compared(shared, stats)
        assert not shared.is_visible("#browsers") and not shared.is_visible("#stores")
        assert not shared.is_visible("#health-panel") and not shared.is_visible("form.logout")
        assert shared.is_disabled("#link") and shared.input_value("#link") == f"/{run}/"
        assert shared.is_checked("#compare") and "read-only" in shared.inner_text("#shared")
        # the viewer's export: the shared panels only; the link's filter, whatever is asked
        rows = _csv(shared, "top_links")
        assert [[_label(r[0]), int(r[1]), int(r[2])] for r in rows[1:]] == [r[:3] for r in drawn["top_links"]]
        with httpx.Client(timeout=30) as c:
            assert c.get(url + "/api/export/browsers.csv").status_code == 404
            assert c.get(url + "/api/stores").status_code == 403
            assert c.get(url + "/api/stats?range=365&link=/").json()["filter"]["link"] == f"/{run}/"
            assert c.get(base + "/api/stats").status_code == 401  # the link opens its view, nothing else

        fits_the_width(phone_page(browser, url, errors))  # a viewer's phone, never logged in
        assert errors == []

        # changed: refused, saying why
        token = url.rsplit("/", 1)[1]
        tampered = url[:-len(token)] + token[:-1] + ("A" if token[-1] != "A" else "B")
        answer = shared.goto(tampered)
        assert answer is not None and answer.status == 403
        assert "signature does not match" in shared.inner_text("#refused")
        errors.clear()  # the browser logs the refused page itself

        # a short link: opens now, refused after its end
        short = _share(base, ["views_per_day"], "range=7", 2)
        answer = shared.goto(short)
        assert answer is not None and answer.status == 200
        _updated(shared, 0)
        time.sleep(3)
        answer = shared.goto(short)
        assert answer is not None and answer.status == 410
        assert "expired at" in shared.inner_text("#refused")
        with httpx.Client(timeout=30) as c:
            late = c.get(short + "/api/stats")
            assert late.status_code == 410 and "expired at" in late.json()["detail"]
        assert all("403" in e or "410" in e for e in errors), errors


def test_share_requests_need_a_session_and_name_what_is_wrong(dashboard: dict[str, Any]) -> None:  # noqa: F811
    base = dashboard["base"]
    with httpx.Client(base_url=base, timeout=30) as c:
        body = {"query": "range=7", "panels": ["visits"], "expires_seconds": 60}
        assert c.post("/api/share", json=body).status_code == 401
        c.post("/login", content="secret=" + KEY, headers={"Content-Type": "application/x-www-form-urlencoded"})
        for bad, named in (({**body, "panels": ["health"]}, "panels:"), ({**body, "query": "range=2"}, "range:"),
                           ({**body, "expires_seconds": 0}, "expires_seconds:")):
            r = c.post("/api/share", json=bad)
            assert r.status_code == 400 and r.json()["detail"].startswith(named), r.text
        assert c.post("/api/share", content=b"not json").status_code == 400
        assert tuple(c.get("/api/stats", params={"range": "7"}).json()["charts"])[-len(VISITS):] == VISITS


def test_the_cli_compares_empty_periods_and_refuses_all_time(dashboard: dict[str, Any]) -> None:  # noqa: F811
    """A filter matching nothing: every top list asks the previous period for no label, in both stores;
    without --since there is no previous period: exit 2 naming the fix."""
    env, run = dashboard["env"], dashboard["run"]
    stats = _cli_stats(env, *_window(7), "--link", f"/{run}/nothing-here/", "--compare")
    for name in QUERIES:
        assert stats[name]["same"] and stats[name]["previous"]["same"], name
        if name not in ("visits", "live_per_minute"):
            assert _cli_compared(stats, name) == [], name
    assert _cli_compared(stats, "visits")[0] == ["visits", 0, 0, None]
    res = subprocess.run([sys.executable, "-m", "footprint.cli", "stats", "--compare"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2 and "choose a range of days" in res.stderr and "--since" in res.stderr, res.stderr
    text = subprocess.run([sys.executable, "-m", "footprint.cli", "stats", "--compare", *_window(7)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert text.returncode == 0 and "the previous period" in text.stdout, text.stderr
