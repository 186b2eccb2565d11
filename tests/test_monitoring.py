"""Watch it (issue 31): Prometheus scrapes every part over TLS, and an alert reaches a person.

    .venv/bin/pytest tests/test_monitoring.py --hosts=ansible://app --ansible-inventory=INVENTORY

- Every target Prometheus knows (node-exporter, Kafka's JMX exporter, PostgreSQL's exporter, the
  collector, the consumer through nginx, Prometheus and Alertmanager themselves) is up, and the
  kit's textfiles reach it (certificate expiry, the audit's figures).
- `destructive`: under traffic, the consumer is stopped. FootprintConsumerNotCommitting must reach
  the webhook receiver this test runs (the inventory's monitoring_alert_webhook_urls points at the
  control node) as `firing`, then as `resolved` once the consumer is back; every accepted event
  is then stored exactly once in both stores, and `footprint audit` says so: 0 missing, 0
  duplicated. Skipped (named) where the inventory sends alerts to no receiver on the control node.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import resolved, setting
from test_delivery import endpoints_of, wait_for
from test_kafka_cluster import CollectorTraffic

# Monitoring arrives with site.yml; playbooks/upgrade.yml does not add it to a host deployed before
# it (README, "Upgrading"), so the upgrade's own smoke checks leave these to `make smoke` after the
# next site.yml run (-m "not after_site").
pytestmark = pytest.mark.after_site

testinfra_hosts = ["ansible://app"]

ALERT = "FootprintConsumerNotCommitting"
AUDIT = "set -a; . /etc/footprint/footprint.env; exec runuser -u footprint -- /opt/footprint/venv/bin/footprint audit"


class Prometheus:
    """Instant queries and the target list of the deploy's Prometheus (its URL and CA from the inventory)."""

    def __init__(self, app_vars: dict[str, Any]) -> None:
        self.url = str(setting(app_vars, "footprint_prometheus_url"))
        if not self.url:
            pytest.fail("footprint_prometheus_url is empty: monitoring is off in this inventory")
        tls = self.url.startswith("https")
        verify = ssl.create_default_context(cafile=str(setting(app_vars, "footprint_tls_ca_cert"))) if tls else True
        self.client = httpx.Client(base_url=self.url, timeout=10, verify=verify)

    def query(self, promql: str) -> list[dict[str, Any]]:
        body = self.client.get("/api/v1/query", params={"query": promql}).raise_for_status().json()
        return list(body["data"]["result"])

    def targets(self) -> list[dict[str, Any]]:
        return list(self.client.get("/api/v1/targets").raise_for_status().json()["data"]["activeTargets"])


class Receiver:
    """The person: a webhook receiver on the control node that keeps what Alertmanager posts."""

    def __init__(self, port: int) -> None:
        self.posts: list[dict[str, Any]] = []
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                posts.append({"at": time.time(), **json.loads(body)})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def seen(self, alertname: str, status: str, since: float) -> dict[str, Any] | None:
        for post in self.posts:
            for alert in post.get("alerts", []):
                if alert["labels"].get("alertname") == alertname and alert["status"] == status and post["at"] >= since:
                    return alert
        return None


def _monitoring_vars(request: pytest.FixtureRequest, hostvars: dict[str, Any]) -> dict[str, Any]:
    groups = hostvars["groups"]
    first = (groups.get("monitoring") or groups["footprint"])[0]
    return resolved(request.config, first)


def test_prometheus_scrapes_every_part_and_reads_the_kits_textfiles(
    hostvars: dict[str, Any], request: pytest.FixtureRequest,
) -> None:
    prometheus = Prometheus(hostvars)
    jobs = {"prometheus", "alertmanager", "node", "kafka", "postgresql", "footprint-collector"}
    if setting(hostvars, "clickhouse_prometheus_enabled"):
        jobs.add("clickhouse")  # the server's own /metrics (the stand-in's engine serves it too)
    if str(setting(hostvars, "footprint_prometheus_url")).startswith("https"):
        jobs.add("footprint-consumer")  # through nginx; without TLS only where Prometheus shares the host

    def all_up() -> list[dict[str, Any]] | None:
        targets = prometheus.targets()
        up = {t["labels"]["job"] for t in targets if t["health"] == "up"}
        return targets if jobs <= up and all(t["health"] == "up" for t in targets) else None

    targets = wait_for("every Prometheus target up", all_up, timeout=90)
    # over TLS wherever the deploy has it (ClickHouse's own switch: the stand-in serves plain HTTP)
    assert all(t["scrapeUrl"].startswith("https://") for t in targets
               if t["labels"]["job"] != "clickhouse" and prometheus.url.startswith("https")), (
        [t["scrapeUrl"] for t in targets])
    assert prometheus.query('ClickHouseMetrics_TCPConnection >= 0') or "clickhouse" not in jobs, "no ClickHouse metrics"
    # the certificates' expiry (hourly textfile) and Kafka's quorum through the JMX agent
    expiry = wait_for("the host certificate's expiry in Prometheus", lambda: prometheus.query(
        'footprint_certificate_expiry_timestamp_seconds{path="/etc/ssl/footprint/host.crt"}'), timeout=60)
    days = (float(expiry[0]["value"][1]) - time.time()) / 86400
    # issued for pki_host_valid_days, renewed within the last pki_renew_days (the cluster scenario: 3 and 1)
    valid, renew = int(setting(hostvars, "pki_host_valid_days")), int(setting(hostvars, "pki_renew_days"))
    assert renew < days <= valid, f"the host certificate expires in {days:.1f} days (issued for {valid}, renewed within {renew})"
    assert prometheus.query("pg_up == 1"), "PostgreSQL's exporter does not reach PostgreSQL"
    assert prometheus.query('footprint_audit_last_run_timestamp_seconds > time() - 300'), "no recent audit figures"
    # nothing is firing on a healthy deploy but what the suite's own stops left pending
    firing = [a["metric"]["alertname"] for a in prometheus.query('ALERTS{alertstate="firing"}')]
    assert not set(firing) & {"FootprintTargetDown", "FootprintStoreDown", "FootprintStoresDisagree",
                              "FootprintEventsMissing", "FootprintCertificateExpiring"}, firing


@pytest.mark.destructive
def test_a_stopped_consumer_alerts_a_person_and_the_alert_resolves(
    host: Any, hostvars: dict[str, Any], request: pytest.FixtureRequest, component: Any, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    apps = list(hostvars["groups"]["app"])
    if host.backend.get_hostname() != apps[0]:
        pytest.skip("runs once (from the first app host's parameter)")
    urls = [str(u) for u in setting(_monitoring_vars(request, hostvars), "monitoring_alert_webhook_urls")]
    if not urls:
        pytest.skip("monitoring_alert_webhook_urls is empty: no receiver to check (the docker scenario sets one)")
    port = urlsplit(urls[0]).port or 80
    prometheus = Prometheus(hostvars)
    wait_for(f"{ALERT} not active before the check", lambda: not prometheus.query(f'ALERTS{{alertname="{ALERT}"}}'),
             timeout=180)
    traffic = CollectorTraffic([endpoints_of(component, resolved(request.config, h)) for h in apps], tmp_path)
    with Receiver(port) as person:
        traffic.start()
        stopped = time.time()
        assert host.run("systemctl stop footprint-consumer").rc == 0
        try:
            fired = wait_for(f"{ALERT} firing at the webhook receiver", lambda: person.seen(ALERT, "firing", stopped),
                             timeout=300)
            took_fire = time.time() - stopped
        finally:
            assert host.run("systemctl start footprint-consumer").rc == 0
        started = time.time()
        assert "nothing was committed" in fired["annotations"]["summary"], fired
        wait_for(f"{ALERT} resolved at the webhook receiver", lambda: person.seen(ALERT, "resolved", started),
                 timeout=300)
        took_resolve = time.time() - started
    report = traffic.stop_and_check()
    audit = host.run(f"{AUDIT} --since 2h --json")
    assert audit.rc == 0, f"footprint audit: rc {audit.rc}\n{audit.stdout[-2000:]}{audit.stderr[-1000:]}"
    figures = json.loads(audit.stdout)
    totals = figures["totals"]
    stores = totals["stores"]
    assert figures["ok"] and totals["accepted"] > 0 and totals["in_flight"] == 0, totals
    for store in ("postgresql", "clickhouse"):
        assert stores[store]["missing"] == 0 and stores[store]["duplicates"] == 0, (store, stores[store])
        assert stores[store]["extra"] == 0 and stores[store]["stored"] > 0, (store, stores[store])
    with capsys.disabled():
        print(f"\nmonitoring: {ALERT} fired {took_fire:.0f} s after the consumer stopped, resolved "
              f"{took_resolve:.0f} s after it started; {report}; audit: {totals['accepted']} accepted, "
              f"missing/duplicated {[(stores[s]['missing'], stores[s]['duplicates']) for s in stores]}")
