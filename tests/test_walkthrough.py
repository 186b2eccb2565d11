"""The README's walkthrough, run as written against the deployed host (molecule only).

"Try it on the demo" is taken from README.md and run by bash in a scratch directory laid out like
a checkout after `make demo`: the API key in inventory/local/.secrets/, the CA copied to
footprint-demo-ca.crt, .venv the control node's venv. The only change to the commands is the demo
host's address, replaced by the collector of the host under test. The browser trusts the CA with
the line `make demo` prints (tools/demo-trust), in a home of its own. Then a headless Chromium does
what the README says: open /pricing on the app, open the snippet's page with ?utm_source=readme,
click "cart" and "sign up". Checked: both stores hold exactly those events (one page view from the
middleware, two from the snippet, one Signup) with the same values, the README's `footprint stats`
(run on the host) says both stores agree, the read API finds the Signup (the query of the README's
first read-API example, `type=track&properties.plan=pro`), and the dashboard shows the pages and
the event.

Marked destructive (molecule only, never in `make smoke`): it needs this control node's ports 8080
and 8081, Chromium and certutil (`make deps`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ROOT, secret, setting, web_scheme, web_verify
from test_delivery import ch_rows, endpoints, pg_rows, wait_for

__all__ = ["endpoints"]  # the fixture, shared with test_delivery

testinfra_hosts = ["ansible://app"]
pytestmark = pytest.mark.destructive

DEMO = "https://10.77.0.10:8000"  # the demo's collector, as the README writes it
SITE_PORTS = (8081, 8080)  # the README's app with the middleware, its page with the snippet
CHROMIUM = "/usr/bin/chromium"
DESKTOP_CHROME = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
                  "Safari/537.36")  # headless Chromium's own user agent is a bot's: its views count apart


def readme_blocks() -> list[str]:
    """The shell blocks of "Try it on the demo": the setup, then the stats command."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Try it on the demo"):text.index("## Look at your data")]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert len(blocks) == 2, "the walkthrough changed shape: update tests/test_walkthrough.py with it"
    assert DEMO in blocks[0], f"the walkthrough no longer sends to {DEMO}: update DEMO"
    return blocks


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def checkout(tmp_path: Path, hostvars: dict[str, Any]) -> Path:
    """A scratch directory shaped like a checkout after `make demo`."""
    if not setting(hostvars, "footprint_tls_enabled"):
        pytest.skip("the walkthrough is written for the HTTPS demo (footprint_tls_enabled)")
    root = tmp_path / "checkout"
    (root / "inventory" / "local" / ".secrets").mkdir(parents=True)
    (root / "inventory" / "local" / ".secrets" / "footprint_api_key").write_text(
        secret(hostvars, "footprint_api_keys").reveal())
    shutil.copy(setting(hostvars, "footprint_tls_ca_cert"), root / "footprint-demo-ca.crt")
    (root / ".venv").symlink_to(Path(sys.prefix))
    return root


@pytest.fixture
def walkthrough(checkout: Path, hostvars: dict[str, Any], address: str) -> Iterator[str]:
    """The README's setup block run by bash; yields the collector's address. Its servers (in the
    background, as the README leaves them) are stopped afterwards."""
    busy = [p for p in SITE_PORTS if port_open(p)]
    if busy:
        pytest.fail(f"ports {busy} are in use on this control node: the walkthrough needs them (stop what holds them)")
    collector = f"{web_scheme(hostvars)}://{address}:{setting(hostvars, 'footprint_collector_port')}"
    setup = readme_blocks()[0].replace(DEMO, collector)
    log = checkout / "walkthrough.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(["bash", "-e", "-c", setup], cwd=checkout, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # its background servers stay in its session
    try:
        assert proc.wait(60) == 0, "the walkthrough's commands failed:\n" + log.read_text()[-3000:]
        assert '"status":"ok"' in log.read_text().replace(" ", ""), "the walkthrough's curl of /healthz failed"
        deadline = time.monotonic() + 60
        while not all(port_open(p) for p in SITE_PORTS):
            assert time.monotonic() < deadline, "the walkthrough's two servers did not start:\n" + log.read_text()[-3000:]
            time.sleep(0.5)
        yield collector
    finally:  # its servers, in its session: asked to stop, killed after 10 s
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):  # nothing left (the block failed early)
                os.killpg(proc.pid, sig)
            deadline = time.monotonic() + wait
            while any(port_open(p) for p in SITE_PORTS) and time.monotonic() < deadline:
                time.sleep(0.2)
            if not any(port_open(p) for p in SITE_PORTS):
                break


def trust_the_ca(checkout: Path, collector: str, home: Path) -> None:
    """The Chromium line `make demo` prints, run in `home`."""
    lines = subprocess.run([str(ROOT / "tools" / "demo-trust"), str(checkout / "footprint-demo-ca.crt"), collector],
                           check=True, capture_output=True, text=True).stdout.splitlines()
    [line] = [line for line in lines if line.strip().startswith("Chromium:")]
    command = line.split("Chromium:", 1)[1].strip()
    res = subprocess.run(["sh", "-c", command], env=dict(os.environ, HOME=str(home)), capture_output=True, text=True)
    assert res.returncode == 0, f"make demo's Chromium trust line failed: {command}\n{res.stderr}"


def browse(home: Path) -> list[str]:
    """What the README asks of the reader, in a headless Chromium; the page's console errors."""
    from playwright.sync_api import sync_playwright

    assert os.path.exists(CHROMIUM), "Debian's chromium is needed (make deps installs it)"
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], env={**os.environ, "HOME": str(home)})
        try:
            page = browser.new_page(user_agent=DESKTOP_CHROME)
            # (the README's static server has no favicon: the browser's 404 for it is not the snippet's)
            page.on("console", lambda m: errors.append(m.text) if m.type == "error"
                    and not m.location.get("url", "").endswith("/favicon.ico") else None)
            assert page.goto("http://localhost:8081/pricing").ok  # type: ignore[union-attr]
            # the snippet sends each event at once (a beacon): the collector's answers, counted
            answers: list[int] = []
            page.on("response", lambda r: answers.append(r.status) if r.url.endswith("/v1/b")
                    and r.request.method == "POST" else None)
            page.goto("http://localhost:8080/?utm_source=readme")
            page.wait_for_function("window.footprint !== undefined", timeout=15000)  # the snippet loaded over HTTPS
            page.click("text=cart")
            page.click("text=sign up")
            deadline = time.monotonic() + 15
            while len(answers) < 3 and time.monotonic() < deadline:  # the page, the cart, the event
                page.wait_for_timeout(200)
            assert answers == [202, 202, 202], f"the collector's answers to the snippet: {answers}"
            page.goto("about:blank")
        finally:
            browser.close()
    return errors


def since(ep: dict[str, Any], start: datetime) -> dict[str, list[dict[str, Any]]]:
    """The walkthrough's events in each store: those received since it began, on its links."""
    where = "received_at >= {t} AND (link IN ('/pricing', '/', '/cart') OR event = 'Signup') AND NOT synthetic"
    return {
        "postgres": pg_rows(ep, where.format(t="%s"), (start,)),
        "clickhouse": ch_rows(ep, where.format(t="{t:DateTime64(6, 'UTC')}"), {"t": start}),
    }


def test_the_readme_walkthrough_works_as_written(
    host: Any, hostvars: dict[str, Any], endpoints: dict[str, Any], checkout: Path, walkthrough: str, tmp_path: Path
) -> None:
    start = datetime.now(UTC) - timedelta(seconds=2)
    home = tmp_path / "home"
    home.mkdir()
    trust_the_ca(checkout, walkthrough, home)
    errors = browse(home)
    assert errors == [], f"the snippet's page logged errors: {errors}"

    def stored() -> dict[str, list[dict[str, Any]]] | None:
        rows = since(endpoints, start)
        return rows if all(len(r) >= 4 for r in rows.values()) else None

    rows = wait_for("the walkthrough's four events in both stores", stored, timeout=90)
    time.sleep(2)  # anything more on its way would show now
    rows = since(endpoints, start)
    for store, found in rows.items():
        got = sorted((r["type"], r["link"], r["event"]) for r in found)
        assert got == [("page", "/", ""), ("page", "/cart", ""), ("page", "/pricing", ""), ("track", "", "Signup")], (
            f"{store}: {got}")
    assert {r["event_id"] for r in rows["postgres"]} == {r["event_id"] for r in rows["clickhouse"]}
    by_id = {r["event_id"]: r for r in rows["clickhouse"]}
    for pg in rows["postgres"]:
        ch = by_id[pg["event_id"]]
        assert (pg["visitor_id"], pg["link"], pg["utm_source"], pg["browser"]) == (
            ch["visitor_id"], ch["link"], ch["utm_source"], ch["browser"])
    landing = next(r for r in rows["postgres"] if r["link"] == "/")
    assert landing["utm_source"] == "readme" and landing["browser"] == "Chrome" and not landing["bot"]
    signup = next(r for r in rows["postgres"] if r["event"] == "Signup")
    assert signup["properties"] == {"plan": "pro"}

    # "then compare the two stores": the README's command, on the host
    stats = shlex.split(readme_blocks()[1].replace("\\\n", " "))
    assert stats[:3] == ["testbed/host", "exec", "footprint-demo"], stats
    res = host.run(shlex.join(stats[3:]))
    assert res.rc == 0 and "answers same" in res.stdout and "DIFFERENT" not in res.stdout, (
        f"footprint stats: rc {res.rc}\n{res.stdout[-2000:]}{res.stderr[-1000:]}")

    # "Look at your data": the read API's first example, and the dashboard
    private = secret(hostvars, "footprint_private_keys").reveal()
    found = httpx.get(f"{walkthrough}/v1/events", params={"type": "track", "properties.plan": "pro", "limit": "50"},
                      headers={"Authorization": f"Bearer {private}"}, verify=web_verify(hostvars), timeout=30).json()
    assert any(e.get("event") == "Signup" and e.get("properties") == {"plan": "pro"}
               and datetime.fromisoformat(e["timestamp"]) >= start for e in found["data"]), json.dumps(found)[:2000]
    reach = address_for_dashboard(hostvars, walkthrough)
    dashboard = f"{web_scheme(hostvars)}://{reach}:{setting(hostvars, 'footprint_dashboard_port')}"
    with httpx.Client(base_url=dashboard, timeout=30, verify=web_verify(hostvars)) as c:
        assert c.post("/login", data={"secret": secret(hostvars, "footprint_dashboard_password").reveal()}).status_code == 303
        charts = c.get("/api/stats", params={"range": "1", "type": "track"}).json()["charts"]
        pricing = c.get("/api/stats", params={"range": "1", "link": "/pricing"}).json()["charts"]
    assert any(row[0] == "/pricing" for row in map(list_of, pricing["top_links"])), pricing["top_links"]
    assert any(row[0] == "Signup" for row in map(list_of, charts["top_events"])), charts["top_events"]


def address_for_dashboard(hostvars: dict[str, Any], collector: str) -> str:
    listen = setting(hostvars, "footprint_dashboard_host")
    return collector.split("://", 1)[1].rsplit(":", 1)[0] if listen in ("0.0.0.0", "::") else str(listen)


def list_of(row: Any) -> list[Any]:
    """A chart row as a list (the dashboard's JSON gives rows as lists or as objects)."""
    return list(row.values()) if isinstance(row, dict) else list(row)
