"""``footprint audit``'s output: a table, the same as JSON, and the figures for Prometheus' node-exporter
textfile collector (written atomically: a temporary file in the same directory, then a rename).

The metric names are a contract with the monitoring role's alert rules and the dashboard's health
panel:

- ``footprint_audit_last_run_timestamp_seconds``, ``footprint_audit_window_seconds``,
  ``footprint_audit_duration_seconds``;
- ``footprint_audit_events{source="accepted"|"postgresql"|"clickhouse"|"dead_letter"}``: events of
  the window (a store's: distinct events, its duplicates apart);
- ``footprint_audit_duplicates{store}``, ``footprint_audit_missing{store}``,
  ``footprint_audit_extra{store}`` (never negative: rows no accepted event accounts for are
  ``extra``, a finding of their own), ``footprint_audit_explained{store,reason}``;
- ``footprint_audit_in_flight``, ``footprint_audit_ok`` (1 or 0);
- ``footprint_kafka_group_committed_offset{group,topic,partition}`` (only where the group has
  committed), ``footprint_kafka_group_lag{group,topic,partition}`` (the events topic, and the
  dead-letter topic where the group has committed offsets: it never reads it),
  ``footprint_kafka_topic_end_offset{topic,partition}`` (both topics).

A run that cannot reach Kafka or a store writes nothing: the file keeps the last run's figures and
``footprint_audit_last_run_timestamp_seconds`` ages (the alert on a stale audit sees it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

from footprint.auditbook import REASONS, STORES, Audit, Bucket, Stored, settle

_SHORT = {"postgresql": "pg", "clickhouse": "ch"}


def _iso(when: datetime | None) -> str | None:
    return when.isoformat().replace("+00:00", "Z") if when is not None else None


def _num(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _store_dict(b: Bucket, store: str, settled: tuple[int, int] | None) -> dict[str, Any]:
    stored = b.stored.get(store, Stored())
    out: dict[str, Any] = {"rows": stored.rows, "stored": stored.distinct, "duplicates": stored.duplicates,
                           "explained": {r: b.explained.get(store, {}).get(r, 0) for r in REASONS},
                           "missing": settled[0] if settled else None, "extra": settled[1] if settled else None}
    if b.lost.get(store):
        out["not_stored_ids"] = b.lost[store]
    return out


def as_json(audit: Audit) -> dict[str, Any]:
    t = audit.totals
    settled = {s: settle(audit.buckets, s) for s in STORES}
    return {
        "ok": t.ok,
        "window": {"since": _iso(audit.since), "until": _iso(audit.until), "ran_at": _iso(audit.ran_at),
                   "seconds": round(audit.window_seconds, 3)},
        "group": audit.group, "topic": audit.topic, "dead_letter_topic": audit.dlq_topic,
        "totals": {"accepted": t.accepted, "in_flight": t.in_flight, "dead_letters": t.dead_letters,
                   "stores": {s: {"stored": st.stored, "duplicates": st.duplicates, "explained": st.explained,
                                  "missing": st.missing, "extra": st.extra, "ok": st.ok}
                              for s, st in t.stores.items()}},
        "hours": [{"start": _iso(b.start), "judged": b.accepted is not None, "read": b.read,
                   "accepted": b.accepted, "in_flight": b.in_flight, "dead_letters": b.dead_letters,
                   "stores": {s: _store_dict(b, s, settled[s][i]) for s in STORES}}
                  for i, b in enumerate(audit.buckets)],
        "kafka": [{"topic": p.topic, "partition": p.partition, "low": p.low, "end": p.end,
                   "committed": p.committed, "lag": p.lag} for p in audit.partitions],
        "notes": audit.notes,
        "read_messages": audit.read_messages,
        "run_seconds": round(audit.seconds, 3),
    }


_COLUMNS = ("stored", "dup", "expl", "miss", "extra")


def render(audit: Audit) -> str:
    """A compact table: one line per hour, the totals, the verdict and what explains it."""
    t = audit.totals
    until = f"{audit.until:%Y-%m-%d %H:%M:%S}" if audit.until else f"now ({audit.ran_at:%Y-%m-%d %H:%M:%S})"
    lines = [f"footprint audit of {audit.topic} (group {audit.group}), UTC {audit.since:%Y-%m-%d %H:%M:%S} .. {until}"]
    head = f"{'hour (UTC)':<17}{'accepted':>10}{'flight':>8}{'dead':>6}"
    for store in STORES:
        head += " |" + "".join(f"{_SHORT[store] + ' ' + c:>10}" if i == 0 else f"{c:>7}"
                               for i, c in enumerate(_COLUMNS))
    lines.append(head)
    settled = {s: settle(audit.buckets, s) for s in STORES}
    for i, b in enumerate(audit.buckets):
        row = f"{b.start:%Y-%m-%d %H:%M}{'':<1}{_num(b.accepted):>10}{_num(b.in_flight):>8}{_num(b.dead_letters):>6}"
        differs = False
        for store in STORES:
            stored = b.stored.get(store, Stored())
            figures = settled[store][i]
            differs |= bool(stored.duplicates or (figures and any(figures)))
            row += (f" |{_num(stored.distinct):>10}{_num(stored.duplicates):>7}{_num(b.explained_total(store)):>7}"
                    f"{_num(figures[0] if figures else None):>7}{_num(figures[1] if figures else None):>7}")
        mark = "  <- differs" if differs else ("  (not judged)" if b.accepted is None else "")
        lines.append(row + ("  read" if b.read else "") + mark)
    total = f"{'total':<17}{_num(t.accepted):>10}{_num(t.in_flight):>8}{_num(t.dead_letters):>6}"
    for store in STORES:
        st = t.stores[store]
        total += (f" |{_num(st.stored):>10}{_num(st.duplicates):>7}{_num(sum(st.explained.values())):>7}"
                  f"{_num(st.missing):>7}{_num(st.extra):>7}")
    lines.append(total)
    lines.append("")
    lines.append(_verdict(audit))
    for b in audit.buckets:
        for store in STORES:
            if b.lost.get(store):
                lines.append(f"  {b.start:%Y-%m-%d %H:%M} {store} does not hold: {', '.join(b.lost[store])}"
                             + (" ..." if len(b.lost[store]) >= 10 else ""))
    lines.extend(f"note: {n}" for n in audit.notes)
    lines.append("dead letters count in the hour of their timestamp, the original message's (dead letters of an"
                 " earlier release carry the time they were written); explained: erased, expired or repeated ids")
    return "\n".join(lines)


def _verdict(audit: Audit) -> str:
    t = audit.totals
    if t.ok:
        return (f"verdict: ok - each of the {t.accepted:,} events accepted is stored once in each store,"
                f" dead-lettered ({t.dead_letters:,}), explained, or in flight ({t.in_flight:,})")
    findings = []
    for store, st in t.stores.items():
        for what, n in (("missing", st.missing), ("stored twice or more", st.duplicates),
                        ("extra (no accepted event accounts for them)", st.extra)):
            if n:
                findings.append(f"{store}: {n:,} {what}")
    return "verdict: NOT OK - " + "; ".join(findings)


def write_textfile(audit: Audit, path: str) -> None:
    """The figures for node-exporter's textfile collector at ``path`` (``*.prom``), atomically."""
    registry = CollectorRegistry()
    t = audit.totals

    def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, doc, labels, registry=registry)

    gauge("footprint_audit_last_run_timestamp_seconds", "Unix time of the last complete audit").set(
        audit.ran_at.timestamp())
    gauge("footprint_audit_window_seconds", "Length of the window audited").set(audit.window_seconds)
    gauge("footprint_audit_duration_seconds", "How long the audit took").set(audit.seconds)
    events = gauge("footprint_audit_events", "Events of the window: accepted by Kafka, stored (distinct) in each"
                   " store, dead-lettered", ("source",))
    events.labels("accepted").set(t.accepted)
    events.labels("dead_letter").set(t.dead_letters)
    duplicates = gauge("footprint_audit_duplicates", "Rows of an event id stored more than once", ("store",))
    missing = gauge("footprint_audit_missing", "Events accepted, neither stored, dead-lettered, explained nor in"
                    " flight (never negative)", ("store",))
    extra = gauge("footprint_audit_extra", "Stored events no accepted event accounts for", ("store",))
    explained = gauge("footprint_audit_explained", "Events not stored on purpose (erased, expired by the"
                      " retention, an id already stored)", ("store", "reason"))
    for store, st in t.stores.items():
        events.labels(store).set(st.stored)
        duplicates.labels(store).set(st.duplicates)
        missing.labels(store).set(st.missing)
        extra.labels(store).set(st.extra)
        for reason in REASONS:
            explained.labels(store, reason).set(st.explained.get(reason, 0))
    gauge("footprint_audit_in_flight", "Events accepted past the consumer group's committed offsets").set(t.in_flight)
    gauge("footprint_audit_ok", "1 when every accepted event is accounted for in both stores, else 0").set(
        1 if t.ok else 0)
    committed = gauge("footprint_kafka_group_committed_offset", "The consumer group's committed offset",
                      ("group", "topic", "partition"))
    lag = gauge("footprint_kafka_group_lag", "Messages past the consumer group's committed offset",
                ("group", "topic", "partition"))
    end = gauge("footprint_kafka_topic_end_offset", "The next offset to be written", ("topic", "partition"))
    for p in audit.partitions:
        end.labels(p.topic, str(p.partition)).set(p.end)
        if p.committed is not None:
            committed.labels(audit.group, p.topic, str(p.partition)).set(p.committed)
        if p.topic == audit.topic or p.committed is not None:
            lag.labels(audit.group, p.topic, str(p.partition)).set(p.lag)
    write_to_textfile(path, registry)
