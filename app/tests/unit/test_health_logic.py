"""The Health panel's reading of Prometheus' answers (footprint.dashboard.health), without Prometheus: the
states each figure implies, "no data" for an absent metric, a failed query, the cache, the settings,
and the one line for an address that is no Prometheus or does not answer (real loopback sockets)."""

from __future__ import annotations

import math
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import ValidationError

from footprint.dashboard.health import (
    Cached,
    Line,
    QueryFailed,
    Sample,
    alert_lines,
    audit_lines,
    backup_lines,
    certificate_lines,
    collect,
    dead_letter_lines,
    disk_lines,
    interpret,
    lag_lines,
    queries,
    shown_url,
)
from footprint.settings import Settings

NOW = 1_800_000_000.0
DAY = 86400


def s(value: float, **labels: str) -> Sample:
    if "name" in labels:
        labels["__name__"] = labels.pop("name")
    return Sample(labels, value)


def test_the_dead_letter_topic_is_quoted_in_promql() -> None:
    q = queries('odd"topic\\')
    assert 'footprint_kafka_topic_end_offset{topic="odd\\"topic\\\\"}' in q["dlq_total"]
    assert q["lag"] == "sum by (group) (footprint_kafka_group_lag)"


def test_lag_states_and_trend() -> None:
    assert lag_lines([], []) == [
        Line("consumer lag", "", "nodata", "no data: Prometheus has no footprint_kafka_group_lag")]
    lines = lag_lines([s(500, group="a"), s(5_000, group="b"), s(150_000, group="c"), s(7, group="d")],
                      [s(200, group="a"), s(1_200, group="b"), s(-3, group="c")])
    assert [(line.subject, line.state) for line in lines] == [("a", "ok"), ("b", "warning"), ("c", "problem"),
                                                             ("d", "ok")]
    assert lines[1].text == "5,000 events behind, growing (about +1,200 in 15 min)"
    assert lines[2].text == "150,000 events behind, not growing"
    assert lines[3].text == "7 events behind, trend not known yet"  # one sample so far


def test_dead_letters() -> None:
    assert dead_letter_lines("t.dlq", [], [])[0].state == "nodata"
    assert dead_letter_lines("t.dlq", [s(12)], [s(0)]) == [
        Line("dead letters", "t.dlq", "ok", "12 in all, none in the last hour")]
    assert dead_letter_lines("t.dlq", [s(15)], [s(3)])[0] == Line("dead letters", "t.dlq", "warning",
                                                                   "15 in all, 3 in the last hour")


def test_disks_per_host_with_node_exporter_where_no_disk_check_runs() -> None:
    gib = 1024**3
    disks = [s(9 * gib, name="footprint_disk_free_bytes", host="a", path="/var/lib/kafka"),
             s(100 * gib, name="footprint_disk_size_bytes", host="a", path="/var/lib/kafka"),
             s(math.inf, name="footprint_disk_days_left", host="a", path="/var/lib/kafka"),
             s(50 * gib, name="footprint_disk_free_bytes", host="b", path="/var/lib"),
             s(100 * gib, name="footprint_disk_size_bytes", host="b", path="/var/lib"),
             s(12.5, name="footprint_disk_days_left", host="b", path="/var/lib")]
    node = [s(1, name="node_filesystem_avail_bytes", host="a", mountpoint="/boot"),  # a has the disk check
            s(100, name="node_filesystem_size_bytes", host="a", mountpoint="/boot"),
            s(18 * gib, name="node_filesystem_avail_bytes", instance="c:9100", mountpoint="/"),
            s(100 * gib, name="node_filesystem_size_bytes", instance="c:9100", mountpoint="/")]
    lines = disk_lines(disks, node)
    assert lines == [
        Line("disk", "a", "problem", "9% free (9.0 GiB of 100.0 GiB) on /var/lib/kafka; not filling up"),
        Line("disk", "b", "warning", "50% free (50.0 GiB of 100.0 GiB) on /var/lib; 12.5 days left on /var/lib"),
        Line("disk", "c:9100", "warning",
             "18% free (18.0 GiB of 100.0 GiB) on /; node exporter's figures (no disk check on this host)"),
    ]
    assert disk_lines([], [])[0].state == "nodata"


def test_certificates_backups_audit_alerts() -> None:
    certs = [s(NOW + 40 * DAY, host="a", path="/ca.crt"), s(NOW - 2 * DAY, host="a", path="/host.crt"),
             s(NOW + 10 * DAY, host="b", path="/host.crt")]
    assert [(line.subject, line.state, line.text) for line in certificate_lines(certs, NOW)] == [
        ("a", "problem", "/host.crt EXPIRED 2 days ago (2027-01-13)"),
        ("b", "warning", "/host.crt expires in 10 days (2027-01-25)")]

    backups = [s(0, name="footprint_backup_last_run_ok", host="never"),
               s(NOW - 3600, name="footprint_backup_last_success_timestamp_seconds", host="failed-since"),
               s(0, name="footprint_backup_last_run_ok", host="failed-since"),
               s(NOW - 30 * 3600, name="footprint_backup_last_success_timestamp_seconds", host="late")]
    assert [(line.subject, line.state, line.text) for line in backup_lines(backups, NOW)] == [
        ("failed-since", "warning", "last good backup 60 min ago; last run FAILED"),
        ("late", "warning", "last good backup 30.0 h ago"),
        ("never", "problem", "no good backup yet; last run FAILED")]

    audit = [s(1, name="footprint_audit_ok", host="a"), s(2, name="footprint_audit_duplicates", host="a", store="pg"),
             s(NOW - 60, name="footprint_audit_last_run_timestamp_seconds", host="a"),
             s(1, name="footprint_audit_ok", host="stale"),
             s(NOW - 3600, name="footprint_audit_last_run_timestamp_seconds", host="stale")]
    assert [(line.subject, line.state, line.text) for line in audit_lines(audit, NOW)] == [
        ("a", "warning", "stores agree; stored twice: pg 2; ran 60 s ago"),
        ("stale", "warning", "stores agree; ran 60 min ago")]
    assert audit_lines([], NOW)[0].state == "nodata"

    assert alert_lines([]) == [Line("alerts", "", "ok", "none firing")]
    firing = alert_lines([s(1, alertname="B", severity="warning", instance="x:9100"),
                          s(1, alertname="A", severity="critical", host="y")])
    assert firing == [Line("alerts", "A", "problem", "critical on y"),
                      Line("alerts", "B", "warning", "warning on x:9100")]


def test_a_failed_query_is_a_line_of_its_own() -> None:
    answers: dict[str, Any] = {name: [] for name in queries("t")}
    answers["certificates"] = QueryFailed("HTTP 400: bad_data")
    lines = interpret(answers, "t", NOW)
    assert Line("certificate", "", "problem", "query failed: HTTP 400: bad_data") in lines
    assert [line.check for line in lines] == ["consumer lag", "dead letters", "disk", "certificate", "last backup",
                                              "audit", "alerts"]


def test_not_configured_says_how() -> None:
    report = collect(Settings(prometheus_url=""))
    assert report.state == "off" and report.lines == []
    assert "set FOOTPRINT_PROMETHEUS_URL" in report.message and "footprint_prometheus_url" in report.message


def test_the_url_setting_and_how_it_is_shown() -> None:
    for bad in ("prometheus:9090", "ftp://h:9090", "http://h:99999", "http://h:9090/?x=1", "http://"):
        with pytest.raises(ValidationError, match="prometheus_url"):
            Settings(prometheus_url=bad)
    assert shown_url("https://user:secret@mon.example:9090/prom/") == "https://mon.example:9090/prom/"
    assert shown_url("http://[fd00::1]:9090") == "http://[fd00::1]:9090"


def test_the_cache_asks_once_per_period() -> None:
    now = [0.0]
    made: list[int] = []
    cached = Cached(lambda: made.append(1) or len(made), seconds=5, clock=lambda: now[0])
    assert (cached.get(), cached.get()) == (1, 1)
    now[0] = 4.9
    assert cached.get() == 1
    now[0] = 5.0
    assert cached.get() == 2


@pytest.fixture
def not_prometheus() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(404)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


def test_an_address_that_is_no_prometheus_is_one_line(not_prometheus: str) -> None:
    report = collect(Settings(prometheus_url=not_prometheus))
    assert report.state == "unreachable" and report.lines == []
    assert report.message == f"Prometheus at {not_prometheus} answers no query: HTTP 404: Not Found"


def test_a_silent_prometheus_costs_one_timeout() -> None:
    with socket.socket() as listener:  # accepts connections (the backlog), never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        report = collect(Settings(prometheus_url=url, prometheus_timeout_seconds=0.5))
    assert report.message == f"Prometheus at {url} is unreachable: no answer within 0.5 s"
    assert report.query_ms < 2000  # the queries wait together, not one after the other
