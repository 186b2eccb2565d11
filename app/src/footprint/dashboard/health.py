"""The pipeline's health for the dashboard's Health panel, read from Prometheus.

``QUERIES`` are instant queries (``/api/v1/query``) asked together, server side, each with a short
timeout; ``interpret`` turns their answers into lines with a state each: ``ok``, ``warning``,
``problem``, or ``nodata`` (the metric is absent: not an error). It is pure: the answers and the
time in, the lines out. ``collect`` asks and interprets; ``Cached`` keeps its report a few seconds,
so page refreshes and several open pages share one round of queries.

The thresholds follow the monitoring role's alert defaults where there is one (a ``problem`` here
is about when the alert fires), and say ``warning`` a step before.
"""

from __future__ import annotations

import base64
import json
import math
import ssl
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode, urlsplit, urlunsplit
from urllib.request import Request, urlopen

from footprint.settings import Settings

State = Literal["ok", "warning", "problem", "nodata"]
T = TypeVar("T")

LAG_PROBLEM = 100_000  # events behind (the alert FootprintConsumerLagHigh)
LAG_WARNING = 1_000  # ... and growing over the last LAG_MINUTES
LAG_MINUTES = 15
DISK_FREE_PROBLEM, DISK_FREE_WARNING = 0.10, 0.20  # share of the filesystem free
DISK_DAYS_PROBLEM, DISK_DAYS_WARNING = 7, 30  # days left at the current rate (the disk check warns at 30)
CERT_DAYS_PROBLEM, CERT_DAYS_WARNING = 7, 21  # days to expiry (the alert: 21; pki renews from 30)
BACKUP_HOURS_WARNING, BACKUP_HOURS_PROBLEM = 26, 50  # a daily timer missed one day, two days
AUDIT_STALE_SECONDS = 15 * 60  # the alert FootprintAuditStale
NODE_FS = 'fstype!~"tmpfs|ramfs|squashfs|overlay"'
MAX_ANSWER_BYTES = 8 * 1024 * 1024


def queries(dlq_topic: str) -> dict[str, str]:
    """The PromQL of each part of the panel (``dlq_topic``: the app's dead-letter topic)."""
    topic = dlq_topic.replace("\\", "\\\\").replace('"', '\\"')
    dlq = f'footprint_kafka_topic_end_offset{{topic="{topic}"}}'
    return {
        "lag": "sum by (group) (footprint_kafka_group_lag)",
        "lag_growth": f"sum by (group) (delta(footprint_kafka_group_lag[{LAG_MINUTES}m]))",
        "dlq_total": f"sum by (topic) ({dlq})",
        # exact, not extrapolated like increase(): the newest end offset minus the oldest of the hour
        "dlq_hour": f"sum by (topic) (max_over_time({dlq}[1h]) - min_over_time({dlq}[1h]))",
        "disks": '{__name__=~"footprint_disk_(free|size)_bytes|footprint_disk_days_left"}',
        "node_disks": f'{{__name__=~"node_filesystem_(avail|size)_bytes",{NODE_FS}}}',
        "certificates": "footprint_certificate_expiry_timestamp_seconds",
        "backups": '{__name__=~"footprint_backup_last_success_timestamp_seconds|footprint_backup_last_run_ok"}',
        "audit": '{__name__=~"footprint_audit_(ok|missing|duplicates|in_flight|last_run_timestamp_seconds)"}',
        "alerts": 'ALERTS{alertstate="firing"}',
    }


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Line:
    check: str  # what is checked: consumer lag, dead letters, disk, ...
    subject: str  # of what: a consumer group, a host, an alert
    state: State
    text: str  # the figures, in words


class QueryFailed(Exception):
    """Prometheus answered, but not with the result (a refused query, an error of its own)."""


class Unreachable(Exception):
    """No answer from Prometheus: connection, TLS or timeout."""


Answer = list[Sample] | QueryFailed | Unreachable


# --- asking Prometheus


def shown_url(url: str) -> str:
    """``url`` without a password or a query, to be shown."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class Prometheus:
    """Instant queries over HTTP(S), with a CA file to verify it against and a timeout per query."""

    def __init__(self, url: str, ca_file: str = "", timeout: float = 2.0) -> None:
        parts = urlsplit(url)
        self.base = shown_url(url).rstrip("/")
        self.timeout = timeout
        self.headers = {"Accept": "application/json"}
        if parts.username is not None:  # https://user:password@host:9090 (basic auth, e.g. a proxy in front)
            pair = f"{parts.username}:{parts.password or ''}".encode()
            self.headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        self.context = ssl.create_default_context(cafile=ca_file or None) if parts.scheme == "https" else None

    def query(self, promql: str) -> list[Sample]:
        url = f"{self.base}/api/v1/query?" + urlencode({"query": promql, "timeout": f"{self.timeout * 1000:.0f}ms"})
        try:
            with urlopen(Request(url, headers=self.headers), timeout=self.timeout, context=self.context) as answer:
                raw = answer.read(MAX_ANSWER_BYTES)
        except HTTPError as exc:  # Prometheus (or a proxy) answered with an error status
            raise QueryFailed(f"HTTP {exc.code}: {_error_text(exc)}") from None
        except OSError as exc:  # URLError, TLS, a timeout while reading
            raise Unreachable(_cause(exc, self.timeout)) from None
        try:
            body = json.loads(raw)
            if body["status"] != "success":
                raise QueryFailed(str(body.get("error", body["status"]))[:300])
            data = body["data"]
            if data["resultType"] == "scalar":
                return [Sample({}, float(data["result"][1]))]
            return [Sample(dict(r["metric"]), float(r["value"][1])) for r in data["result"]]
        except (ValueError, KeyError, TypeError, IndexError):
            raise QueryFailed("not an answer of Prometheus' query API (is this Prometheus' URL?)") from None


def _error_text(exc: HTTPError) -> str:
    try:
        return str(json.loads(exc.read(4096)).get("error", exc.reason))[:300]
    except (ValueError, AttributeError, OSError):
        return str(exc.reason)[:300]


def _cause(exc: Exception, timeout: float) -> str:
    reason: object = exc.reason if isinstance(exc, URLError) else exc
    if isinstance(reason, ssl.SSLCertVerificationError):
        return (f"its TLS certificate is not trusted ({reason.verify_message}): set FOOTPRINT_PROMETHEUS_CA_CERT"
                " to the CA that signed it")
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, OSError) and reason.strerror:
        return str(reason.strerror)
    return str(reason) or type(reason).__name__


def ask(prometheus: Prometheus, promql: dict[str, str]) -> dict[str, Answer]:
    """Every query at once (each bounded by the timeout), so the panel waits for the slowest only."""

    def one(text: str) -> Answer:
        try:
            return prometheus.query(text)
        except (QueryFailed, Unreachable) as exc:
            return exc

    with ThreadPoolExecutor(max_workers=len(promql), thread_name_prefix="prometheus") as pool:
        return dict(zip(promql, pool.map(one, promql.values()), strict=True))


# --- interpreting the answers (pure)


def _host(labels: dict[str, str]) -> str:
    return labels.get("host") or labels.get("instance") or "?"


def _count(value: float) -> str:
    return f"{value:,.0f}"


def _bytes(value: float) -> str:
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
    step = 0
    while abs(value) >= 1024 and step < len(units) - 1:
        value, step = value / 1024, step + 1
    return f"{value:.0f} B" if step == 0 else f"{value:.1f} {units[step]}"


def _age(seconds: float) -> str:
    if seconds < 90:
        return f"{max(seconds, 0):.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _worst(*states: State) -> State:
    order: tuple[State, ...] = ("problem", "warning", "ok", "nodata")
    return next((s for s in order if s in states), "nodata")


def _nodata(check: str, metric: str) -> list[Line]:
    return [Line(check, "", "nodata", f"no data: Prometheus has no {metric}")]


def _per_host(samples: Iterable[Sample]) -> dict[str, list[Sample]]:
    hosts: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        hosts[_host(s.labels)].append(s)
    return dict(sorted(hosts.items()))


def lag_lines(lag: list[Sample], growth: list[Sample]) -> list[Line]:
    if not lag:
        return _nodata("consumer lag", "footprint_kafka_group_lag")
    grown = {s.labels.get("group", ""): s.value for s in growth}
    out = []
    for s in sorted(lag, key=lambda s: s.labels.get("group", "")):
        group = s.labels.get("group", "")
        delta = grown.get(group, math.nan)
        growing = delta > 0
        state: State = ("problem" if s.value > LAG_PROBLEM else
                        "warning" if growing and s.value >= LAG_WARNING else "ok")
        # delta() extrapolates to the window's ends: an estimate, said so
        trend = (f"growing (about +{_count(delta)} in {LAG_MINUTES} min)" if growing else
                 "not growing" if not math.isnan(delta) else "trend not known yet")
        out.append(Line("consumer lag", group, state, f"{_count(s.value)} events behind, {trend}"))
    return out


def dead_letter_lines(topic: str, total: list[Sample], hour: list[Sample]) -> list[Line]:
    if not total:
        return _nodata("dead letters", f'footprint_kafka_topic_end_offset{{topic="{topic}"}}')
    new = sum(s.value for s in hour if not math.isnan(s.value))
    text = f"{_count(sum(s.value for s in total))} in all, " + (
        f"{_count(new)} in the last hour" if new else "none in the last hour")
    return [Line("dead letters", topic, "warning" if new > 0 else "ok", text)]


DISK_NAMES = {"footprint_disk_free_bytes": "free", "footprint_disk_size_bytes": "size",
              "footprint_disk_days_left": "days"}
NODE_NAMES = {"node_filesystem_avail_bytes": "free", "node_filesystem_size_bytes": "size"}
Places = dict[str, dict[str, float]]  # path (or mountpoint) -> free, size, days -> value


def _places(samples: list[Sample], place: str, names: dict[str, str]) -> dict[str, Places]:
    hosts: dict[str, Places] = defaultdict(lambda: defaultdict(dict))
    for s in samples:
        hosts[_host(s.labels)][s.labels.get(place, "")][names.get(s.labels.get("__name__", ""), "")] = s.value
    return hosts


def disk_lines(disks: list[Sample], node: list[Sample]) -> list[Line]:
    """Per host, the fullest filesystem and the fewest days left of the disk check's figures; a host
    without them (the check off) gets its fullest filesystem from node exporter."""
    checked = _places(disks, "path", DISK_NAMES)
    from_node = {h: p for h, p in _places(node, "mountpoint", NODE_NAMES).items() if h not in checked}
    if not checked and not from_node:
        return _nodata("disk", "footprint_disk_free_bytes or node_filesystem_avail_bytes")
    return [_disk_line(host, checked.get(host) or from_node[host], host in from_node)
            for host in sorted(checked.keys() | from_node.keys())]


def _disk_line(host: str, places: Places, node: bool) -> Line:
    sized = [(v["free"] / v["size"], p, v) for p, v in places.items() if v.get("size", 0) > 0 and "free" in v]
    days = [(v["days"], p) for p, v in places.items() if not math.isnan(v.get("days", math.nan))]
    parts: list[str] = []
    states: list[State] = []
    if sized:
        share, path, v = min(sized, key=lambda t: t[0])
        parts.append(f"{100 * share:.0f}% free ({_bytes(v['free'])} of {_bytes(v['size'])}) on {path}")
        states.append("problem" if share < DISK_FREE_PROBLEM else "warning" if share < DISK_FREE_WARNING else "ok")
    if days:
        left, path = min(days)
        parts.append("not filling up" if math.isinf(left) else f"{left:.1f} days left on {path}")
        states.append("problem" if left < DISK_DAYS_PROBLEM else "warning" if left < DISK_DAYS_WARNING else "ok")
    else:
        parts.append("node exporter's figures (no disk check on this host)" if node else "days left not known yet")
    return Line("disk", host, _worst(*states) if states else "nodata", "; ".join(parts))


def _each_host(check: str, metric: str, samples: list[Sample], line: Callable[[str, list[Sample]], Line]) -> list[Line]:
    """``line(host, its samples)`` per host, or one "no data" line naming ``metric``."""
    if not samples:
        return _nodata(check, metric)
    return [line(host, mine) for host, mine in _per_host(samples).items()]


def certificate_lines(certs: list[Sample], now: float) -> list[Line]:
    def line(host: str, samples: list[Sample]) -> Line:
        soonest = min(samples, key=lambda s: s.value)
        days = (soonest.value - now) / 86400
        state: State = "problem" if days < CERT_DAYS_PROBLEM else "warning" if days < CERT_DAYS_WARNING else "ok"
        when = datetime.fromtimestamp(soonest.value, UTC).date().isoformat()
        left = f"expires in {days:.0f} days ({when})" if days >= 0 else f"EXPIRED {-days:.0f} days ago ({when})"
        return Line("certificate", host, state, f"{soonest.labels.get('path', '?')} {left}")

    return _each_host("certificate", "footprint_certificate_expiry_timestamp_seconds", certs, line)


def backup_lines(backups: list[Sample], now: float) -> list[Line]:
    def line(host: str, samples: list[Sample]) -> Line:
        values = {s.labels.get("__name__", ""): s.value for s in samples}
        success = values.get("footprint_backup_last_success_timestamp_seconds", 0.0)
        run_ok = values.get("footprint_backup_last_run_ok")
        hours = (now - success) / 3600
        state: State = ("problem" if not success or hours > BACKUP_HOURS_PROBLEM else
                        "warning" if hours > BACKUP_HOURS_WARNING or run_ok == 0 else "ok")
        parts = [f"last good backup {_age(now - success)} ago" if success else "no good backup yet"]
        if run_ok is not None:
            parts.append("last run ok" if run_ok == 1 else "last run FAILED")
        return Line("last backup", host, state, "; ".join(parts))

    return _each_host("last backup", "footprint_backup_last_success_timestamp_seconds", backups, line)


def audit_lines(audit: list[Sample], now: float) -> list[Line]:
    def per_store(samples: list[Sample], name: str) -> dict[str, float]:
        return {s.labels["store"]: s.value for s in samples if s.labels.get("__name__") == name and "store" in s.labels}

    def line(host: str, samples: list[Sample]) -> Line:
        one = {s.labels.get("__name__", ""): s.value for s in samples if "store" not in s.labels}
        missing = per_store(samples, "footprint_audit_missing")
        twice = per_store(samples, "footprint_audit_duplicates")
        ok = one.get("footprint_audit_ok")
        ran = one.get("footprint_audit_last_run_timestamp_seconds")
        stale = ran is None or now - ran > AUDIT_STALE_SECONDS
        state: State = ("problem" if ok == 0 or any(v > 0 for v in missing.values()) else
                        "warning" if stale or any(v > 0 for v in twice.values()) else
                        "ok" if ok == 1 else "nodata")
        parts = ["stores agree" if ok == 1 else "stores DISAGREE" if ok == 0 else "no verdict"]
        for what, counts in (("missing", missing), ("stored twice", twice)):
            if any(counts.values()):
                parts.append(f"{what}: " + ", ".join(f"{store} {_count(n)}" for store, n in sorted(counts.items())
                                                     if n))
        if "footprint_audit_in_flight" in one:
            parts.append(f"{_count(one['footprint_audit_in_flight'])} in flight")
        parts.append(f"ran {_age(now - ran)} ago" if ran is not None else "never ran")
        return Line("audit", host, state, "; ".join(parts))

    return _each_host("audit", "footprint_audit_ok", audit, line)


def alert_lines(alerts: list[Sample]) -> list[Line]:
    if not alerts:
        return [Line("alerts", "", "ok", "none firing")]
    return [Line("alerts", s.labels.get("alertname", "?"), "problem" if s.labels.get("severity") == "critical"
                 else "warning", f"{s.labels.get('severity', 'no severity')} on {_host(s.labels)}")
            for s in sorted(alerts, key=lambda s: (s.labels.get("severity") != "critical",
                                                    s.labels.get("alertname", ""), _host(s.labels)))]


def interpret(answers: dict[str, Answer], dlq_topic: str, now: float) -> list[Line]:
    """The panel's lines from the queries' answers, in the panel's order; a part whose query failed
    says why in one line."""
    got = {name: a for name, a in answers.items() if isinstance(a, list)}
    parts: list[tuple[str, tuple[str, ...], Callable[[], list[Line]]]] = [
        ("consumer lag", ("lag", "lag_growth"), lambda: lag_lines(got["lag"], got["lag_growth"])),
        ("dead letters", ("dlq_total", "dlq_hour"),
         lambda: dead_letter_lines(dlq_topic, got["dlq_total"], got["dlq_hour"])),
        ("disk", ("disks", "node_disks"), lambda: disk_lines(got["disks"], got["node_disks"])),
        ("certificate", ("certificates",), lambda: certificate_lines(got["certificates"], now)),
        ("last backup", ("backups",), lambda: backup_lines(got["backups"], now)),
        ("audit", ("audit",), lambda: audit_lines(got["audit"], now)),
        ("alerts", ("alerts",), lambda: alert_lines(got["alerts"])),
    ]
    out: list[Line] = []
    for check, names, make in parts:
        failed = [answers[n] for n in names if n not in got]
        out.extend([Line(check, "", "problem", f"query failed: {failed[0]}")] if failed else make())
    return out


# --- the report the page draws


@dataclass(frozen=True)
class Report:
    state: Literal["ok", "warning", "problem", "nodata", "unreachable", "off"]
    url: str  # shown without a password
    message: str  # the one line when there are no lines (off, unreachable)
    lines: list[Line]
    query_ms: float
    checked_at: str

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def prometheus_ca(settings: Settings) -> str:
    """The CA file Prometheus' certificate is checked against: its own, else the one of the stores."""
    return settings.prometheus_ca_cert or settings.ch_ca_cert


def collect(settings: Settings, now: Callable[[], float] = time.time) -> Report:
    checked = datetime.now(UTC).isoformat(timespec="seconds")
    if not settings.prometheus_url:
        return Report("off", "", "Prometheus is not configured: set FOOTPRINT_PROMETHEUS_URL (e.g."
                      " https://monitor.example.net:9090; the footprint role's footprint_prometheus_url) and, for"
                      " https, FOOTPRINT_PROMETHEUS_CA_CERT (default: the stores' CA, FOOTPRINT_CH_CA_CERT)",
                      [], 0.0, checked)
    url = shown_url(settings.prometheus_url)
    started = time.monotonic()
    try:
        prometheus = Prometheus(settings.prometheus_url, prometheus_ca(settings), settings.prometheus_timeout_seconds)
    except (OSError, ssl.SSLError) as exc:  # the CA file missing or unreadable
        return Report("unreachable", url, f"Prometheus at {url}: cannot read the CA file"
                      f" {prometheus_ca(settings)!r}: {exc}", [], 0.0, checked)
    answers = ask(prometheus, queries(settings.kafka_dlq_topic))
    took = round((time.monotonic() - started) * 1000, 1)
    failed = [a for a in answers.values() if isinstance(a, Exception)]
    if len(failed) == len(answers):  # one line says why, not one per query
        unreachable = [a for a in failed if isinstance(a, Unreachable)]
        message = (f"Prometheus at {url} is unreachable: {unreachable[0]}" if unreachable else
                   f"Prometheus at {url} answers no query: {failed[0]}")
        return Report("unreachable", url, message, [], took, checked)
    lines = interpret(answers, settings.kafka_dlq_topic, now())
    return Report(_worst(*(line.state for line in lines)), url, "", lines, took, checked)


class Cached(Generic[T]):
    """``make()``'s result, made again once it is ``seconds`` old; callers meanwhile wait for the one
    being made (a page refresh in several tabs asks Prometheus once)."""

    def __init__(self, make: Callable[[], T], seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.make, self.seconds, self.clock = make, seconds, clock
        self.lock = threading.Lock()
        self.value: T | None = None
        self.made = -math.inf

    def get(self) -> T:
        with self.lock:
            if self.value is None or self.clock() - self.made >= self.seconds:
                self.value = self.make()
                self.made = self.clock()
            return self.value
