"""The dashboard's Health panel against a real Prometheus (Debian's binary, on loopback, over HTTPS with a
certificate made for the test, scraping every second) whose one scrape target is a tiny local HTTP
server serving a metrics text the test writes, plus a rule file so that ``ALERTS`` has firing alerts.
The dashboard runs as ``footprint dashboard`` (as in test_dashboard.py) and the page in headless
chromium shows each line with the served figures and the state they imply; new figures turn the panel
to problem; Prometheus stopped gives one line with its URL and the cause; a phone screen has no
horizontal scrolling; no console errors; the browser never talks to Prometheus itself."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from footprint.dashboard.health import collect, queries
from footprint.settings import Settings
from helpers import dashboard_process, wait_for
from services import free_port

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
CHROMIUM = "/usr/bin/chromium"
KEY = "health-private-key"
DAY = 86400

RULES = """groups:
  - name: test
    rules:
      - alert: FootprintDiskFullSoon
        expr: footprint_disk_days_left < 30
        labels: {severity: warning}
      - alert: FootprintStoresDisagree
        expr: footprint_audit_ok == 0
        labels: {severity: critical}
"""


def metrics(now: float, bad: bool) -> str:
    """Three hosts' figures as the exporters and the kit's textfiles give them (``bad``: the second round)."""
    lag = (200_000, 50_000) if bad else (12, 30)
    days = 2 if bad else 20
    lines = [
        f'footprint_kafka_group_lag{{group="footprint-consumer",topic="web-logs-topic",partition="0"}} {lag[0]}',
        f'footprint_kafka_group_lag{{group="footprint-consumer",topic="web-logs-topic",partition="1"}} {lag[1]}',
        f'footprint_kafka_topic_end_offset{{topic="web-logs-topic.dlq",partition="0"}} {9 if bad else 5}',
        'footprint_kafka_topic_end_offset{topic="web-logs-topic.dlq",partition="1"} 2',
        'footprint_kafka_topic_end_offset{topic="web-logs-topic",partition="0"} 100000',
        # the disk check on app1 (two filesystems) and db1; mon1 has node exporter only
        'footprint_disk_free_bytes{host="app1",path="/var/lib/kafka",mountpoint="/"} 64424509440',
        'footprint_disk_size_bytes{host="app1",path="/var/lib/kafka",mountpoint="/"} 107374182400',
        'footprint_disk_days_left{host="app1",path="/var/lib/kafka",mountpoint="/"} +Inf',
        'footprint_disk_free_bytes{host="app1",path="/var/lib/postgresql",mountpoint="/srv"} 32212254720',
        'footprint_disk_size_bytes{host="app1",path="/var/lib/postgresql",mountpoint="/srv"} 107374182400',
        f'footprint_disk_days_left{{host="app1",path="/var/lib/postgresql",mountpoint="/srv"}} {days}',
        'footprint_disk_free_bytes{host="db1",path="/var/lib/clickhouse",mountpoint="/"} 85899345920',
        'footprint_disk_size_bytes{host="db1",path="/var/lib/clickhouse",mountpoint="/"} 107374182400',
        'footprint_disk_days_left{host="db1",path="/var/lib/clickhouse",mountpoint="/"} NaN',
        # node exporter: app1's /boot is left to its disk check; mon1's tmpfs is no disk
        'node_filesystem_avail_bytes{host="app1",mountpoint="/boot",fstype="ext4"} 1',
        'node_filesystem_size_bytes{host="app1",mountpoint="/boot",fstype="ext4"} 100',
        'node_filesystem_avail_bytes{host="mon1",mountpoint="/",fstype="ext4"} 42949672960',
        'node_filesystem_size_bytes{host="mon1",mountpoint="/",fstype="ext4"} 53687091200',
        'node_filesystem_avail_bytes{host="mon1",mountpoint="/run",fstype="tmpfs"} 1',
        'node_filesystem_size_bytes{host="mon1",mountpoint="/run",fstype="tmpfs"} 100',
        f'footprint_certificate_expiry_timestamp_seconds{{host="app1",path="/etc/ssl/footprint/host.crt"}}'
        f' {now + (5 if bad else 200) * DAY:.0f}',
        f'footprint_certificate_expiry_timestamp_seconds{{host="app1",path="/etc/ssl/footprint/ca.crt"}}'
        f' {now + 3000 * DAY:.0f}',
        f'footprint_audit_ok{{host="app1"}} {0 if bad else 1}',
        'footprint_audit_missing{host="app1",store="postgres"} 0',
        f'footprint_audit_missing{{host="app1",store="clickhouse"}} {3 if bad else 0}',
        'footprint_audit_duplicates{host="app1",store="postgres"} 0',
        'footprint_audit_duplicates{host="app1",store="clickhouse"} 0',
        'footprint_audit_in_flight{host="app1"} 17',
        f'footprint_audit_last_run_timestamp_seconds{{host="app1"}} {now - 60:.0f}',
    ]
    if bad:  # no backup figures in the first round: "no data"
        lines += [
            f'footprint_backup_last_success_timestamp_seconds{{host="app1"}} {now - 60 * 3600:.0f}',
            'footprint_backup_last_run_ok{host="app1"} 0',
            f'footprint_backup_last_success_timestamp_seconds{{host="db1"}} {now - 3 * 3600:.0f}',
            'footprint_backup_last_run_ok{host="db1"} 1',
        ]
    return "\n".join(lines) + "\n"


@dataclass
class Target:
    """The scrape target: serves ``text`` at /metrics."""

    text: str = ""
    server: ThreadingHTTPServer = field(init=False)

    def __post_init__(self) -> None:
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = target.text.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if not Path(PROMETHEUS).exists():
        pytest.skip("NO PROMETHEUS: the Health panel's browser test needs Debian's prometheus binary:"
                    " apt-get install -y prometheus (make deps)")
    tmp = tmp_path_factory.mktemp("prometheus")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    target = Target(metrics(time.time(), bad=False))
    (tmp / "rules.yml").write_text(RULES)
    (tmp / "web.yml").write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n")
    (tmp / "prometheus.yml").write_text(f"""global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: [{tmp / "rules.yml"}]
scrape_configs:
  - job_name: footprint-test
    honor_labels: true
    static_configs: [{{targets: ["127.0.0.1:{target.server.server_port}"]}}]
""")
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    log = (tmp / "prometheus.log").open("wb")
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={tmp / 'prometheus.yml'}",
                             f"--web.config.file={tmp / 'web.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    client = httpx.Client(base_url=url, verify=ssl.create_default_context(cafile=str(cert)), timeout=5)

    def firing(alert: str) -> bool:
        try:
            answer = client.get("/api/v1/query", params={"query": f'ALERTS{{alertname="{alert}",alertstate="firing"}}'})
        except httpx.HTTPError:
            return False
        return answer.status_code == 200 and bool(answer.json()["data"]["result"])

    try:
        wait_for(lambda: firing("FootprintDiskFullSoon"), timeout=60, what="Prometheus scraping, the alert firing")
        yield {"url": url, "ca": str(cert), "target": target, "proc": proc, "firing": firing}
    finally:
        client.close()
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)
        target.server.shutdown()
        log.close()


def test_without_the_ca_the_certificate_is_not_trusted(prometheus: dict[str, Any]) -> None:
    """Prometheus' own certificate, checked against the system's CAs (no CA file set, no store CA): one
    line naming the cause and the setting; a CA file that is missing says so too."""
    report = collect(Settings(prometheus_url=prometheus["url"]))
    assert report.state == "unreachable" and report.lines == []
    assert report.message.startswith(f"Prometheus at {prometheus['url']} is unreachable: its TLS certificate is"
                                     " not trusted (")
    assert "set FOOTPRINT_PROMETHEUS_CA_CERT" in report.message
    missing = collect(Settings(prometheus_url=prometheus["url"], prometheus_ca_cert="/nonexistent/ca.crt"))
    assert missing.state == "unreachable" and "cannot read the CA file '/nonexistent/ca.crt'" in missing.message
    good = collect(Settings(prometheus_url=prometheus["url"], ch_ca_cert=prometheus["ca"]))  # the stores' CA
    assert good.state == "warning" and good.lines


def _lines(page: Any) -> dict[tuple[str, str], tuple[str, str]]:
    """(check, subject) -> (state, text) of every line the panel shows."""
    rows = page.eval_on_selector_all("#health li", """els => els.map(e => [e.dataset.check, e.dataset.subject,
        e.dataset.state, e.querySelector('.text').innerText])""")
    return {(check, subject): (state, text) for check, subject, state, text in rows}


def _wait_state(page: Any, check: str, subject: str, state: str) -> None:
    page.wait_for_function("([c, s, st]) => [...document.querySelectorAll('#health li')].some(e =>"
                           " e.dataset.check === c && e.dataset.subject === s && e.dataset.state === st)",
                           arg=[check, subject, state], timeout=30_000)


def test_health_panel_in_a_browser(base_settings: Settings, prometheus: dict[str, Any],
                                   tmp_path_factory: pytest.TempPathFactory) -> None:
    from playwright.sync_api import sync_playwright

    settings = base_settings.model_copy(update={"private_keys": [SecretStr(KEY)], "dashboard_refresh_seconds": 2})
    log_path = tmp_path_factory.mktemp("dashboard-health") / "dashboard.log"
    errors: list[str] = []
    asked: list[str] = []  # every URL the browser requested
    prometheus_port = prometheus["url"].rsplit(":", 1)[1]
    with dashboard_process(settings, log_path, prometheus_url=prometheus["url"], prometheus_ca_cert=prometheus["ca"],
                           dashboard_health_cache_seconds=1) as (base, _), sync_playwright() as p:
        login = httpx.post(base + "/login", content=f"secret={KEY}",
                           headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=10)
        session = {"name": "footprint_session", "value": login.cookies["footprint_session"], "url": base}
        assert httpx.get(base + "/api/health", timeout=10).status_code == 401  # no session, no health
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            ctx = browser.new_context(viewport={"width": 1280, "height": 1000})
            ctx.add_cookies([session])
            page = ctx.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: asked.append(r.url))
            started = time.monotonic()
            page.goto(base + "/")
            page.wait_for_function("() => Number(document.body.dataset.health || 0) >= 1", timeout=30_000)
            drawn_ms = (time.monotonic() - started) * 1000
            _wait_state(page, "consumer lag", "footprint-consumer", "ok")  # a second sample: the trend is known
            page.wait_for_function("() => document.querySelector('#health li .text').innerText.includes('not growing')",
                                   timeout=30_000)

            # the first round: each line with the served figures and the state they imply
            lines = _lines(page)
            assert lines[("consumer lag", "footprint-consumer")] == ("ok", "42 events behind, not growing")
            assert lines[("dead letters", "web-logs-topic.dlq")] == ("ok", "7 in all, none in the last hour")
            state, text = lines[("disk", "app1")]
            assert state == "warning" and "30% free (30.0 GiB of 100.0 GiB) on /var/lib/postgresql" in text
            assert "20.0 days left on /var/lib/postgresql" in text and "/boot" not in text
            assert lines[("disk", "db1")] == ("ok", "80% free (80.0 GiB of 100.0 GiB) on /var/lib/clickhouse;"
                                                    " days left not known yet")
            assert lines[("disk", "mon1")] == ("ok", "80% free (40.0 GiB of 50.0 GiB) on /; node exporter's figures"
                                                     " (no disk check on this host)")
            state, text = lines[("certificate", "app1")]
            assert state == "ok" and text.startswith("/etc/ssl/footprint/host.crt expires in 200 days")
            assert lines[("last backup", "")] == (
                "nodata", "no data: Prometheus has no footprint_backup_last_success_timestamp_seconds")
            state, text = lines[("audit", "app1")]
            assert state == "ok" and text.startswith("stores agree; 17 in flight; ran ")
            assert lines[("alerts", "FootprintDiskFullSoon")] == ("warning", "warning on app1")
            assert page.get_attribute("#health-panel", "data-state") == "warning"
            meta = page.inner_text("#health-meta")
            assert prometheus["url"] in meta and " ms at " in meta
            health = httpx.get(base + "/api/health", cookies={"footprint_session": session["value"]}, timeout=10).json()
            print(f"\nhealth panel: drawn {drawn_ms:.0f} ms after the page was asked for;"
                  f" Prometheus answered its {len(queries('t'))} queries in {health['query_ms']} ms")

            # the second round: an audit that finds events missing, a disk 2 days from full, a growing lag,
            # new dead letters, a certificate about to expire, a failed backup: the panel turns to problem
            prometheus["target"].text = metrics(time.time(), bad=True)
            _wait_state(page, "alerts", "FootprintStoresDisagree", "problem")
            _wait_state(page, "last backup", "app1", "problem")
            _wait_state(page, "dead letters", "web-logs-topic.dlq", "warning")
            lines = _lines(page)
            state, text = lines[("consumer lag", "footprint-consumer")]
            assert state == "problem" and text.startswith("250,000 events behind, growing (about +"), text
            assert lines[("dead letters", "web-logs-topic.dlq")] == ("warning", "11 in all, 4 in the last hour")
            state, text = lines[("disk", "app1")]
            assert state == "problem" and "2.0 days left on /var/lib/postgresql" in text
            state, text = lines[("certificate", "app1")]
            assert state == "problem" and text.startswith("/etc/ssl/footprint/host.crt expires in 5 days")
            assert lines[("last backup", "app1")] == ("problem", "last good backup 2.5 days ago; last run FAILED")
            assert lines[("last backup", "db1")][0] == "ok"
            assert lines[("last backup", "db1")][1].startswith("last good backup 3.0 h ago; last run ok")
            state, text = lines[("audit", "app1")]
            assert state == "problem" and text.startswith("stores DISAGREE; missing: clickhouse 3; 17 in flight")
            assert lines[("alerts", "FootprintStoresDisagree")] == ("problem", "critical on app1")
            assert page.get_attribute("#health-panel", "data-state") == "problem"
            assert page.inner_text("#health-state") == "PROBLEM"
            page.screenshot(path=str(log_path.parent / "health.png"), full_page=True)

            # a phone: the panel's long lines wrap, nothing scrolls sideways
            phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                        is_mobile=True, has_touch=True)
            phone.add_cookies([session])
            mobile = phone.new_page()
            mobile.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            mobile.on("pageerror", lambda e: errors.append(str(e)))
            mobile.on("request", lambda r: asked.append(r.url))
            mobile.goto(base + "/")
            _wait_state(mobile, "audit", "app1", "problem")
            width = mobile.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
            assert width[0] <= width[1], f"horizontal overflow on a phone: {width}"
            mobile.screenshot(path=str(log_path.parent / "health-phone.png"), full_page=True)

            # Prometheus stopped: one line with its URL and the cause, the rest of the page as before
            prometheus["proc"].terminate()
            prometheus["proc"].wait(30)
            page.wait_for_function("() => document.getElementById('health-panel').dataset.state === 'unreachable'",
                                   timeout=30_000)
            assert page.inner_text("#health-message") == (
                f"Prometheus at {prometheus['url']} is unreachable: connection refused")
            assert page.eval_on_selector_all("#health li", "els => els.length") == 0
            assert errors == []
            assert not [u for u in asked if f":{prometheus_port}" in u], "the browser asked Prometheus itself"
        finally:
            browser.close()
