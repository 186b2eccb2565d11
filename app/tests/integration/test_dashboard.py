"""The dashboard in a real browser (Debian's chromium, headless, driven by playwright) against a real
``footprint dashboard`` process and the real stores: the login refuses a wrong key, the page loads
without console errors, each chart shows the numbers ``footprint stats --json`` gives for the same
filter, changing the filter updates every chart, probes stay out, and a phone screen has no
horizontal overflow; the sources and audience panels (referrers, UTM, browsers, OS, devices) and the bots
kept apart, the filter on source / device / browser / OS driving every panel, and the filter kept in
the page's address (restored from it, a click on a bar filtering by that value); the countries panel and
the country filter (issue 35, items 1, 2 and 6)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from pydantic import SecretStr

from footprint.contract import encode_event, make_event
from footprint.dashboard.app import CHARTS as API_CHARTS
from footprint.dashboard.app import VISITS
from footprint.enrich import enrich
from footprint.settings import Settings
from footprint.sinks import ClickHouseSink, PostgresSink
from footprint.stats import APPROXIMATION, QUERIES
from helpers import USER_AGENTS, dashboard_process

CHROMIUM = "/usr/bin/chromium"
KEY = "dashboard-private-key"
CHARTS = (*API_CHARTS, "live_per_minute")  # what the page draws
COUNTRIES = ("DE", "DE", "US", "GB", "FR", "")  # what the collector resolved (countries.py), "" not known


def _referrers(run: str) -> list[str]:
    """This run's referrer hosts (no other test's traffic has them)."""
    return [f"{run}.news.example", f"www.{run}-search.example"]


def _context(run: str, rnd: random.Random) -> dict[str, Any]:
    """What a browser's snippet sends: a user agent (one in six a bot), a referrer, UTM parameters."""
    searches = ["", f"?utm_source={run}-letter&utm_medium=email&utm_campaign=winter-{run}",
                f"?utm_source={run}-ads&utm_medium=cpc&utm_campaign=spring-{run}"]
    referrer = rnd.choice(["", *(f"https://{host}/from?q=1" for host in _referrers(run))])
    return {"userAgent": rnd.choice(USER_AGENTS), "page": {"referrer": referrer, "search": rnd.choice(searches)}}


def _traffic(run: str, now: datetime, n: int = 600) -> list[dict[str, Any]]:
    """Page and track events over the last 10 days, a share of them in the last hour, and probes; each
    with what the collector derives from its context (referrer host, UTM, browser, OS, device, bot) and
    a country."""
    rnd = random.Random(run)
    out = []
    for i in range(n):
        recent = i % 4 == 0
        when = now - timedelta(seconds=rnd.randrange(3500) if recent else rnd.randrange(10 * 86400))
        kind = "track" if i % 5 == 0 else "page"
        out.append(make_event(
            type=kind, footprint_time=when, received_at=when, anonymous_id=f"{run}-v{rnd.randrange(60)}",
            event=rnd.choice(["Signed Up", "Paid", "Search"]) if kind == "track" else rnd.choice(["Home", "Post"]),
            method=rnd.choice(["GET", "GET", "POST", "HEAD"]) if kind == "page" else None,
            link=f"/{run}" + rnd.choice(["/", "/blog", "/blog/kafka", "/docs"]) if kind == "page" else None,
            enriched={**enrich(_context(run, rnd)), "country": rnd.choice(COUNTRIES)},
        ))
    for i in range(30):  # smoke-check probes: never in any chart
        out.append(make_event(type="page", method="PUT", link=f"/{run}/probe", anonymous_id="probe",
                              footprint_time=now - timedelta(minutes=i), received_at=now, synthetic=True))
    return out


@pytest.fixture(scope="module")
def dashboard(base_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    settings = base_settings.model_copy(update={"private_keys": [SecretStr(KEY)], "dashboard_refresh_seconds": 2})
    run = uuid.uuid4().hex[:8]
    docs = {e["event_id"]: encode_event(e) for e in _traffic(run, datetime.now(UTC) - timedelta(seconds=5))}
    for sink in (PostgresSink(settings.pg_dsn.get_secret_value()), ClickHouseSink(settings)):
        sink.write(docs)
        sink.close()
    log_path = tmp_path_factory.mktemp("dashboard") / "dashboard.log"
    with dashboard_process(settings, log_path) as (base, env):
        yield {"base": base, "run": run, "settings": settings, "env": env}
    assert KEY not in log_path.read_text()


def _cli_stats(env: dict[str, str], *args: str) -> dict[str, Any]:
    res = subprocess.run([sys.executable, "-m", "footprint.cli", "stats", "--json", *args], env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode in (0, 1), res.stderr
    return {r["query"]: r for r in json.loads(res.stdout)}


def _window(days: int) -> list[str]:
    today = datetime.now(UTC).date()
    since, until = today - timedelta(days=days - 1), today + timedelta(days=1)
    return ["--since", since.isoformat(), "--until", until.isoformat()]


def _shown(page: Any) -> dict[str, list[list[Any]]]:
    """What each chart draws: [label, value] pairs, read from the Chart.js instances on the page."""
    return dict(page.evaluate("""(names) => Object.fromEntries(names.map((n) => {
        const c = Chart.getChart(n);
        return [n, c.data.labels.map((l, i) => [l, c.data.datasets[0].data[i]])];
    }))""", list(CHARTS)))


def _expected(stats: dict[str, Any]) -> dict[str, list[list[Any]]]:
    """The same statistics as the page draws them (name "" shown as "(none)"; value = second column)."""
    out = {}
    for name in CHARTS[:-1]:
        rows = stats[name]["clickhouse"]
        assert rows == stats[name]["postgres"], name  # both stores agree on this data
        out[name] = [["(none)" if r[0] == "" else str(r[0]), r[1]] for r in rows]
    return out


def _duration(seconds: int) -> str:
    """A visit's duration as the page writes it: 45s, 14m 05s, 1h 02m 05s."""
    hours, minutes, rest = seconds // 3600, seconds % 3600 // 60, seconds % 60
    return f"{hours}h {minutes:02}m {rest:02}s" if hours else f"{minutes}m {rest:02}s" if minutes else f"{rest}s"


def _visits_as_cli(page: Any, stats: dict[str, Any]) -> None:
    """The Visits panel shows the visits of `footprint stats --json` (both stores agreeing): its figures and its
    entry and exit pages."""
    for name in VISITS:
        assert stats[name]["clickhouse"] == stats[name]["postgres"], name
    visits, _bounces, rate, seconds, pages = stats["visits"]["clickhouse"][0]
    shown = page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('#visits-panel dd:not(.cmp)')]
        .map((dd) => [dd.id, dd.textContent]))""")
    assert shown == {"visits-count": str(visits), "visits-bounce-rate": f"{rate} %",
                     "visits-duration": _duration(seconds), "visits-pages": f"{pages:.2f}"}
    for name in ("entry_pages", "exit_pages"):
        rows = page.eval_on_selector_all(f"#{name} tbody tr",
                                         "rows => rows.map(r => [...r.cells].map(c => c.innerText))")
        assert rows == [["(none)" if link == "" else link, str(n)] for link, n in stats[name]["clickhouse"]], name


def _updated(page: Any, after: int) -> None:
    page.wait_for_function("(n) => Number(document.body.dataset.updated || 0) > n", arg=after, timeout=60_000)


def _live_total(shown: dict[str, list[list[Any]]]) -> int:
    return sum(v for _, v in shown["live_per_minute"])


def test_login_charts_filter_and_phone(dashboard: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    base, run, env = dashboard["base"], dashboard["run"], dashboard["env"]
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            ctx = browser.new_context(viewport={"width": 1280, "height": 1000})
            page = ctx.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))

            # a wrong key: refused, no session, the page says so
            page.goto(base + "/")
            assert page.url.endswith("/login")
            page.fill("#secret", "not-the-key")
            with page.expect_navigation():
                page.click("button[type=submit]")
            assert page.is_visible("#failed")
            assert not [c for c in ctx.cookies() if c["name"] == "footprint_session"]
            assert httpx.get(base + "/api/stats", timeout=10).status_code == 401
            errors.clear()  # the browser logs the 401 of the refused login itself

            # the right key: a signed, HttpOnly, SameSite=Strict session
            page.fill("#secret", KEY)
            with page.expect_navigation():
                page.click("button[type=submit]")
            cookie = next(c for c in ctx.cookies() if c["name"] == "footprint_session")
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
            _updated(page, 0)

            # every chart shows what `footprint stats --json` answers for the same filter (30 days, page)
            stats = _cli_stats(env, *_window(30))
            shown = _shown(page)
            for name, rows in _expected(stats).items():
                assert shown[name] == rows, name
            assert _live_total(shown) > 0
            # the visitors per day are drawn from the daily sketches (exact at this traffic's few visitors a day),
            # and the page says so beside the chart's title
            mark = "[data-approximate=unique_visitors_per_day]"
            assert page.is_visible(mark) and page.inner_text(mark) == f"\u2248 estimate, {APPROXIMATION}"
            _visits_as_cli(page, stats)
            assert 0 < stats["visits"]["clickhouse"][0][1] < stats["visits"]["clickhouse"][0][0]  # bounces and not
            assert all(f"/{run}/probe" != label for label, _ in shown["top_links"])
            # only this run's probes used PUT on this run's links (other tests share the stores: their
            # generated traffic has PUTs of its own)
            mine = _cli_stats(env, *_window(30), "--link", f"/{run}/")
            assert "PUT" not in [row[0] for row in _expected(mine)["methods"]]
            # the stores panel (asked after the charts are drawn): every query, both timings, answers the same
            page.wait_for_function("() => Number(document.body.dataset.compared || 0) >= 1", timeout=60_000)
            table = page.eval_on_selector_all("#stores tbody tr", "rows => rows.map(r => r.innerText)")
            assert len(table) == len(QUERIES) and all("same" in row and "DIFFERENT" not in row for row in table)
            # no Prometheus configured: the Health panel says how to set it (test_dashboard_health.py has the rest)
            page.wait_for_function("() => Number(document.body.dataset.health || 0) >= 1", timeout=30_000)
            assert page.get_attribute("#health-panel", "data-state") == "off"
            assert "set FOOTPRINT_PROMETHEUS_URL" in page.inner_text("#health-message")

            # one filter bar drives every chart: this run's /blog links only
            before = shown
            page.fill("#link", f"/{run}/blog")
            page.click("#filters button[type=submit]")
            _updated(page, 1)
            shown = _shown(page)
            stats = _cli_stats(env, *_window(30), "--link", f"/{run}/blog")
            for name, rows in _expected(stats).items():
                assert shown[name] == rows, name
            for name in CHARTS:
                assert shown[name] != before[name], f"{name} did not change with the filter"
            assert not page.is_visible(mark)  # under a link prefix the chart counts exactly
            assert 0 < _live_total(shown) < _live_total(before)
            assert all(label.startswith(f"/{run}/blog") for label, _ in shown["top_links"])
            _visits_as_cli(page, stats)  # the visits that entered under the prefix
            assert all(link.startswith(f"/{run}/blog") for link, _ in stats["entry_pages"]["clickhouse"])

            # another event type: the track events' names
            page.select_option("#type", "track")
            _updated(page, 2)
            shown = _shown(page)
            stats = _cli_stats(env, *_window(30), "--link", f"/{run}/blog", "--type", "track")
            assert _expected(stats)["top_events"] == shown["top_events"] == []  # track events have no link
            page.fill("#link", "")
            page.click("#filters button[type=submit]")
            _updated(page, 3)
            stats = _cli_stats(env, *_window(30), "--type", "track")
            shown = _shown(page)
            for name, rows in _expected(stats).items():
                assert shown[name] == rows, name
            assert {label for label, _ in shown["top_events"]} >= {"Signed Up", "Paid", "Search"}

            shot = os.environ.get("FOOTPRINT_DASHBOARD_SCREENSHOT")
            page.select_option("#type", "page")
            _updated(page, 4)
            if shot:
                page.screenshot(path=shot, full_page=True)
            assert errors == []

            # a phone: the same page without horizontal overflow
            phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                        is_mobile=True, has_touch=True)
            phone.add_cookies([{k: cookie[k] for k in ("name", "value", "domain", "path", "httpOnly", "sameSite")}])
            mobile = phone.new_page()
            mobile.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            mobile.goto(base + "/")
            _updated(mobile, 0)
            width = mobile.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
            assert width[0] <= width[1], f"horizontal overflow on a phone: {width}"
            assert errors == []
        finally:
            browser.close()


def test_the_api_needs_a_session_and_refuses_bad_filters(dashboard: dict[str, Any]) -> None:
    base = dashboard["base"]
    with httpx.Client(base_url=base, timeout=30) as c:
        for path in ("/api/stats", "/api/live", "/api/stores"):
            assert c.get(path).status_code == 401, path
        assert c.get("/", follow_redirects=False).status_code == 303
        c.cookies.set("footprint_session", "eyJ9.AAAA")  # forged
        assert c.get("/api/stats").status_code == 401
        c.cookies.clear()
        r = c.post("/login", content="secret=" + KEY, headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 303 and "footprint_session" in c.cookies
        for params in ({"range": "2"}, {"type": "click"}, {"link": "x" * 3000}, {"colour": "red"},
                       {"source": "x" * 201}, {"os": "Linux\x00"}, {"referrer": "news.example.com"}):
            for path in ("/api/stats", "/api/live", "/api/stores"):
                bad = c.get(path, params=params)
                assert bad.status_code == 400 and bad.json()["error"] == "invalid", (path, params)
        assert tuple(c.get("/api/stats", params={"range": "7"}).json()["charts"]) == (*API_CHARTS, *VISITS)
        compared = c.get("/api/stores", params={"range": "7"}).json()["stores"]
        assert [r["query"] for r in compared] == list(QUERIES)
        c.cookies.clear()
        assert c.get("/static/../app.py").status_code == 404
        assert c.post("/login", content="secret=" + "test-key").status_code == 401  # a public key is no login


def test_parallel_guesses_are_throttled_and_logout_ends_the_session(dashboard: dict[str, Any]) -> None:
    """Issue 28: 30 wrong passwords sent at once from one address: at most 5 are compared, the rest
    answered 429 with Retry-After, and that address is locked out (even with the right key) while
    another logs in; a session cookie kept from before a logout opens nothing after it; a favicon."""
    import asyncio

    base = dashboard["base"]
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    guesser = {**form, "X-Forwarded-For": "198.51.100.77"}  # the test client is a trusted proxy (127.0.0.1)

    async def guesses() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=base, timeout=30) as c:
            return list(await asyncio.gather(*(c.post("/login", content=f"secret=wrong-{i}", headers=guesser)
                                               for i in range(30))))

    answers = asyncio.run(guesses())
    statuses = sorted(r.status_code for r in answers)
    assert statuses.count(401) <= 5 and statuses.count(429) >= 25, statuses
    assert all(int(r.headers["Retry-After"]) >= 1 for r in answers if r.status_code == 429)
    with httpx.Client(base_url=base, timeout=30) as c:
        locked = c.post("/login", content="secret=" + KEY, headers=guesser)
        assert locked.status_code == 429 and "Too many login attempts" in locked.text  # even the right key waits
        r = c.post("/login", content="secret=" + KEY, headers={**form, "X-Forwarded-For": "198.51.100.78"})
        assert r.status_code == 303
        kept = c.cookies["footprint_session"]
        assert c.get("/api/stats").status_code == 200
        assert c.post("/logout").status_code == 303
    with httpx.Client(base_url=base, timeout=30, cookies={"footprint_session": kept}) as c:
        assert c.get("/api/stats").status_code == 401  # the kept cookie was ended on the server
        icon = c.get("/favicon.ico")
        assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")


@contextlib.contextmanager
def _signed_in(base: str) -> Iterator[tuple[Any, Any, list[str]]]:
    """A chromium logged in to the dashboard: its browser, its signed-in page and the console errors."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
            _watch(page, errors)
            sign_in(page, base)
            yield browser, page, errors
        finally:
            browser.close()


def sign_in(page: Any, base: str) -> None:
    """``page`` logged in with the private key, the dashboard drawn."""
    page.goto(base + "/login")
    page.fill("#secret", KEY)
    with page.expect_navigation():
        page.click("button[type=submit]")
    _updated(page, 0)


def phone_page(browser: Any, url: str, errors: list[str], storage_state: Any = None) -> Any:
    """``url`` opened on a 390x844 phone screen (with the cookies of ``storage_state``), drawn."""
    phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                                has_touch=True, storage_state=storage_state)
    mobile = phone.new_page()
    _watch(mobile, errors)
    mobile.goto(url)
    _updated(mobile, 0)
    return mobile


def fits_the_width(page: Any) -> None:
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"horizontal overflow on a phone: {width}"


def _watch(page: Any, errors: list[str]) -> None:
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))


def _same_as_cli(page: Any, env: dict[str, str], *args: str) -> dict[str, list[list[Any]]]:
    """Every panel draws what `footprint stats --json` gives for the same filter (30 days, and ``args``), both
    stores agreeing; returns what is drawn."""
    shown = _shown(page)
    for name, rows in _expected(_cli_stats(env, *_window(30), *args)).items():
        assert shown[name] == rows, (name, args)
    return shown


def _labels(shown: dict[str, list[list[Any]]], name: str) -> list[Any]:
    return [label for label, _ in shown[name]]


def _address(page: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def _click_bar(page: Any, chart: str, index: int) -> str:
    """Click the ``index``-th bar of ``chart`` with the mouse; returns its label."""
    x, y, label = page.evaluate("""([name, i]) => {
        const chart = Chart.getChart(name);
        chart.canvas.scrollIntoView();
        const box = chart.canvas.getBoundingClientRect();
        const point = chart.getDatasetMeta(0).data[i].getCenterPoint();
        return [box.left + point.x, box.top + point.y, chart.data.labels[i]];
    }""", [chart, index])
    page.mouse.click(x, y)
    return str(label)


def _stores_agree(page: Any, generation: int) -> None:
    """The stores panel of the page's ``generation``-th filter: every query, both stores the same."""
    page.wait_for_function("(n) => Number(document.body.dataset.compared || 0) >= n", arg=generation, timeout=60_000)
    table = page.eval_on_selector_all("#stores tbody tr", "rows => rows.map(r => r.innerText)")
    assert len(table) == len(QUERIES) and all("same" in row and "DIFFERENT" not in row for row in table), table


def test_sources_audience_and_bots_follow_every_filter(dashboard: dict[str, Any]) -> None:
    """The source (typed) and device (chosen) filters drive every panel, in both stores alike; the
    address keeps them and opening it restores them; the bots stay in their own panel, shown on request;
    a click on a bar filters by its value."""
    base, run, env = dashboard["base"], dashboard["run"], dashboard["env"]
    source = _referrers(run)[0]
    with _signed_in(base) as (_, page, errors):
        before = _same_as_cli(page, env)
        page.fill("#source", source)
        page.click("#filters button[type=submit]")
        _updated(page, 1)
        shown = _same_as_cli(page, env, "--source", source)
        for name in CHARTS:
            assert shown[name] != before[name], f"{name} did not change with the source"
        assert 0 < _live_total(shown) < _live_total(before)
        assert _labels(shown, "referrers") == [source]
        assert set(_labels(shown, "utm_sources")) == {"(none)", f"{run}-letter", f"{run}-ads"}
        assert set(_labels(shown, "utm_campaigns")) == {"(none)", f"winter-{run}", f"spring-{run}"}
        assert set(_labels(shown, "utm_mediums")) == {"(none)", "email", "cpc"}
        assert set(_labels(shown, "bot_agents")) == {"Googlebot"} and "bot" not in _labels(shown, "devices")
        assert sum(v for _, v in shown["bots_per_day"]) == sum(v for _, v in shown["bot_agents"]) > 0
        assert _address(page) == {"range": ["30"], "type": ["page"], "source": [source]}
        _stores_agree(page, 2)  # every query with the audience filter, both stores, the same answers

        page.select_option("#device", "mobile")
        _updated(page, 2)
        shown = _same_as_cli(page, env, "--source", source, "--device", "mobile")
        assert _labels(shown, "devices") == ["mobile"] and _labels(shown, "operating_systems") == ["iOS"]
        assert shown["bots_per_day"] == [] and shown["views_per_day"]
        assert _address(page) == {"range": ["30"], "type": ["page"], "source": [source], "device": ["mobile"]}

        again = page.context.new_page()  # the address restores the filter
        _watch(again, errors)
        again.goto(page.url)
        _updated(again, 0)
        assert again.input_value("#source") == source and again.input_value("#device") == "mobile"
        still = {name: rows for name, rows in shown.items() if name != "live_per_minute"}  # its hour may have moved
        assert {name: rows for name, rows in _shown(again).items() if name != "live_per_minute"} == still
        again.close()

        # the bots: apart, shown on request
        page.select_option("#device", label="any")
        _updated(page, 3)
        assert not page.is_visible("#bots_per_day")
        page.click("#bots-panel summary")
        page.wait_for_function("() => Chart.getChart('bots_per_day').width > 0")
        assert page.is_visible("#bots_per_day") and page.is_visible("#bot_agents")

        # a click on a bar of the devices panel filters by that device
        bar = _click_bar(page, "devices", 0)
        _updated(page, 4)
        assert page.input_value("#device") == bar and _address(page)["device"] == [bar]
        shown = _same_as_cli(page, env, "--source", source, "--device", "" if bar == "(none)" else bar)
        assert _labels(shown, "devices") == [bar]
        assert errors == []


def test_the_address_filters_by_browser_os_and_nothing_known_on_a_phone(dashboard: dict[str, Any]) -> None:
    """A bookmarked address with browser and OS, and one with "(none)" (no referrer) and the bots'
    device, draw what `footprint stats` gives; an unknown parameter in the address shows the API's 400; a
    phone screen with the filter and the bots shown scrolls no sideways."""
    base, run, env = dashboard["base"], dashboard["run"], dashboard["env"]
    with _signed_in(base) as (browser, page, errors):
        page.goto(base + "/?" + urlencode({"range": "30", "type": "page", "link": f"/{run}/", "browser": "Firefox",
                                           "os": "Linux"}))
        _updated(page, 0)
        shown = _same_as_cli(page, env, "--link", f"/{run}/", "--browser", "Firefox", "--os", "Linux")
        assert _labels(shown, "browsers") == ["Firefox"] and _labels(shown, "operating_systems") == ["Linux"]
        assert page.input_value("#browser") == "Firefox" and page.input_value("#os") == "Linux"

        page.goto(base + "/?" + urlencode({"range": "30", "link": f"/{run}/", "source": "(none)", "device": "bot"}))
        _updated(page, 0)
        shown = _same_as_cli(page, env, "--link", f"/{run}/", "--source", "", "--device", "bot")
        assert all(shown[name] == [] for name in CHARTS[:-1] if not name.startswith("bot"))  # no human is a bot
        assert _live_total(shown) == 0
        assert _labels(shown, "bot_agents") == ["Googlebot"] and shown["bots_per_day"]
        assert _address(page)["source"] == ["(none)"]
        _stores_agree(page, 1)

        mobile = phone_page(browser, page.url, errors, page.context.storage_state())
        mobile.click("#bots-panel summary")
        mobile.wait_for_function("() => Chart.getChart('bot_agents').width > 0")
        fits_the_width(mobile)
        if shot := os.environ.get("FOOTPRINT_DASHBOARD_SCREENSHOT"):
            mobile.screenshot(path=shot.removesuffix(".png") + "-phone.png", full_page=True)
        assert errors == []

        page.goto(base + "/?range=30&colour=red")  # the API's 400, said on the page
        page.wait_for_selector("#status.error")
        assert "unknown parameter 'colour'" in page.inner_text("#status")
        assert all("400" in e for e in errors), errors  # the browser logs the refused request itself


def test_the_countries_panel_and_the_country_filter_drive_every_panel(dashboard: dict[str, Any]) -> None:
    """The Countries panel draws `footprint stats --json`'s countries (both stores agreeing); the country filter,
    typed, in the address or from a click on a country's bar, drives every panel and the CSV export; "(none)"
    stands for the events whose country is not known; a phone screen with it scrolls no sideways."""
    base, run, env = dashboard["base"], dashboard["run"], dashboard["env"]
    mine = ("--link", f"/{run}/")
    with _signed_in(base) as (browser, page, errors):
        page.goto(base + "/?" + urlencode({"range": "30", "link": f"/{run}/"}))
        _updated(page, 0)
        before = _same_as_cli(page, env, *mine)
        assert set(_labels(before, "countries")) == {"DE", "US", "GB", "FR", "(none)"}
        assert _labels(before, "countries")[0] == "DE"  # drawn twice as often as any other

        page.fill("#country", "US")
        page.click("#filters button[type=submit]")
        _updated(page, 1)
        shown = _same_as_cli(page, env, *mine, "--country", "US")
        assert _labels(shown, "countries") == ["US"]
        for name in CHARTS:
            if name not in ("methods", "bots_per_day", "bot_agents"):  # (a few values: may happen to be equal)
                assert shown[name] != before[name], f"{name} did not change with the country"
        assert _address(page) == {"range": ["30"], "type": ["page"], "link": [f"/{run}/"], "country": ["US"]}
        _stores_agree(page, 2)
        csv = page.evaluate("(url) => fetch(url).then((r) => r.text())",
                            page.get_attribute("a[data-export=countries]", "href"))
        counted = _cli_stats(env, *_window(30), *mine, "--country", "US")["countries"]["clickhouse"]
        assert csv.splitlines() == ["country,events,visitors", *(",".join(map(str, r)) for r in counted)]

        page.goto(base + "/?" + urlencode({"range": "30", "link": f"/{run}/", "country": "(none)"}))
        _updated(page, 0)
        shown = _same_as_cli(page, env, *mine, "--country", "")
        assert _labels(shown, "countries") == ["(none)"] and page.input_value("#country") == "(none)"

        page.goto(base + "/?" + urlencode({"range": "30", "link": f"/{run}/"}))  # a click on a country's bar
        _updated(page, 0)
        bar = _click_bar(page, "countries", 1)
        _updated(page, 1)
        assert page.input_value("#country") == bar and _address(page)["country"] == [bar]
        shown = _same_as_cli(page, env, *mine, "--country", "" if bar == "(none)" else bar)
        assert _labels(shown, "countries") == [bar]

        mobile = phone_page(browser, page.url, errors, page.context.storage_state())
        mobile.evaluate("() => Chart.getChart('countries').canvas.scrollIntoView()")
        fits_the_width(mobile)
        assert errors == []
