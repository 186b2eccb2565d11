#!/usr/bin/env python3
"""Benchmark (3): where the page-event middleware's (``footprint.track``) time goes, and what it adds
to a request called in-process.

1. Per part, for the request the HTTP benchmark sends (``GET /hello`` with a browser's User-Agent and
   a referrer): what runs on the request path (keep the request's fields), what runs once the response
   is sent (``KafkaSender``: build the event, queue it; ``KafkaRelaySender``: the page's fields as a line, the
   relay process builds the event from it) and what the sender's thread or the relay does (validate
   and enrich as the collector does, encode, produce to a real local Kafka broker, in bursts), each
   timed over REQUESTS events: microseconds of wall time per event.
2. The ASGI app called in-process (no sockets, no load generator), REQUESTS sequential requests with
   and without the middleware: the p50/p99 it adds.
The added latency under load (saturated and paced) is collector_wrk.py's, beside the old middleware.

  python benchmarks/collector_overhead.py [--requests 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _figures import record
from _services import REPO, machine

APP = '''
import os
from fastapi import FastAPI
import footprint.track as track
from footprint.track import FootprintASGI, PageRecorder

def without_middleware():
    app = FastAPI()
    @app.get("/hello")
    async def hello():
        return {"ok": True}
    return app

def with_middleware():
    # FOOTPRINT_BENCH_SENDER=relay: the KafkaRelaySender (a relay process does the producing)
    # (the reference tree's middleware has no relay: it is asked for the KafkaSender only)
    kind = track.KafkaRelaySender if os.environ.get("FOOTPRINT_BENCH_SENDER") == "relay" else track.KafkaSender
    sender = kind(os.environ["FOOTPRINT_KAFKA_BOOTSTRAP"], os.environ["FOOTPRINT_KAFKA_TOPIC"])
    return FootprintASGI(without_middleware(), sender, PageRecorder(site="bench"))
'''
KS, KRS = "KafkaSender, after", "KafkaRelaySender, after"  # after the response, in the app's process
KRT = "KafkaRelaySender, thread"  # the app's process too, in batches
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
SCOPE = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
         "path": "/hello", "raw_path": b"/hello", "query_string": b"", "root_path": "",
         "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", USER_AGENT.encode()),
                     (b"referer", b"https://news.example.com/story")],
         "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000)}


def per_event(n: int, step: Callable[[], object]) -> float:
    """Microseconds per call of ``step``, over ``n`` calls after ``n // 10`` warm-up calls."""
    for _ in range(n // 10):
        step()
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - t0) / n * 1e6


def parts(bootstrap: str, topic: str, n: int) -> list[tuple[str, str, float]]:
    """(where it runs, part, us per event) for the benchmark's request, each part timed alone."""
    from footprint.contract import encode_event, kafka_timestamp, validate_batch
    from footprint.enrich import enrich
    from footprint.track import FootprintASGI, KafkaRelaySender, KafkaSender, PageRecorder
    from footprint.track.lines import page_line, read_line

    recorder = PageRecorder(site="bench")
    sender = KafkaSender(bootstrap, topic)
    middleware = FootprintASGI(None, sender, recorder)  # type: ignore[arg-type]  # only its request side runs
    request = middleware._request(dict(SCOPE))
    assert request is not None
    event = recorder.page(request.method, request.path, request.peer, request.forwarded_for, request.user_agent,
                          request.referrer, request.now, request.query, request.host)
    received = datetime.now(UTC)
    [wire] = validate_batch({"batch": [event]}, received, 1, enrich)
    value = encode_event(wire)
    producer = sender._producer._producer  # the confluent-kafka Producer inside the PageProducer
    relay = KafkaRelaySender(bootstrap, topic)
    line = page_line(recorder.page_of(request), time.time())
    queued: list[object] = []
    out = [("request path", "keep the request's fields (headers, DNT/GPC, time)",
            per_event(n, lambda: middleware._request(SCOPE))),
           (KS, "build the page event (client address, visitor id, id)",
            per_event(n, lambda: recorder.page(request.method, request.path, request.peer, request.forwarded_for,
                                               request.user_agent, request.referrer, request.now, request.query,
                                               request.host))),
           (KS, "KafkaSender.send: queue it", per_event(n, lambda: queued.append((event, received)))),
           ("the relay only", "build the page event from its line", per_event(
               n, lambda: read_line(line))),
           (KRS, "queue the request (send_request)", per_event(n, lambda: recorder.hand_over(request, relay))),
           (KRT, "the page (client address, visitor id) and its line", per_event(
               n, lambda: page_line(recorder.page_of(request), 0.0))),
           ("thread or relay", "validate as the collector does", per_event(
               n, lambda: validate_batch({"batch": [event]}, received, 1))),
           ("thread or relay", "enrich (user agent, referrer, UTM; cached parsers)", per_event(
               n, lambda: enrich(event["context"]))),
           ("thread or relay", "encode the canonical form", per_event(n, lambda: encode_event(wire))),
           ("thread or relay", "produce (librdkafka, in bursts)", per_event(n, lambda: producer.produce(
               topic, value=value, key=wire["event_id"], timestamp=kafka_timestamp(received))))]
    producer.flush(30)
    sender.close()
    relay.close()
    return out


async def asgi_latencies(app: Any, n: int) -> list[float]:
    """Call the ASGI app directly (no sockets, no load generator): per-request wall time."""
    lat: list[float] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        return None

    for _ in range(n):
        t = time.perf_counter()
        await app(dict(SCOPE), receive, send)
        lat.append(time.perf_counter() - t)
    return lat


def in_process(appfile: Path, n: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for name in ("without_middleware", "with_middleware"):
        spec = importlib.util.spec_from_file_location("benchapp_" + name, appfile)
        assert spec and spec.loader
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        app = getattr(mod, name)()

        async def run(app: Any = app) -> list[float]:
            inner: Any = getattr(app, "app", app)  # FootprintASGI wraps the FastAPI app
            async with inner.router.lifespan_context(inner):
                await asgi_latencies(app, 2000)  # warm-up
                return await asgi_latencies(app, n)

        out[name] = asyncio.run(run())
        if hasattr(app, "sender"):
            app.sender.close()
    return out


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(p / 100 * len(s)))] * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=20000, help="events per part, and in-process requests")
    args = ap.parse_args()
    print(machine())
    sys.path.insert(0, str(REPO / "app" / "tests"))
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic
    from services import private_kafka

    work = Path(tempfile.mkdtemp(prefix="fp-middleware-bench-"))
    (work / "benchapp.py").write_text(APP)
    with private_kafka(work / "kafka") as kafka:  # type: ignore[attr-defined]
        topic = f"bench-{uuid.uuid4().hex[:8]}"
        admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
        for f in admin.create_topics([NewTopic(topic, 3, 1)]).values():
            f.result(30)
        os.environ.update(FOOTPRINT_KAFKA_BOOTSTRAP=kafka.bootstrap, FOOTPRINT_KAFKA_TOPIC=topic)
        split = parts(kafka.bootstrap, topic, args.requests)
        direct = in_process(work / "benchapp.py", args.requests)
        c = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": "count"})
        produced = sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(3))
        c.close()
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    print(f"\nwhere a page event's time goes (us per event, each part timed alone over {args.requests:,}):")
    for where in ("request path", KS, KRS, KRT, "the relay only", "thread or relay"):
        rows = [(part, us) for w, part, us in split if w == where]
        for part, us in rows:
            print(f"  {where:<25}{part:<58}{us:8.1f}")
        print(f"  {where:<25}{'= ' + where:<58}{sum(us for _, us in rows):8.1f}")
    on_path = sum(us for w, _, us in split if w == "request path")
    record("page middleware: request path, per request (in-process)", on_path / 1000, "ms", better="lower",
           note="keep the request's fields; the event is built after the response")
    print(f"page events that reached Kafka: {produced:,}")
    print(f"\nin-process ASGI calls (no sockets, no load generator), {args.requests:,} sequential requests:")
    print(f"{'':<20}{'p50 us':>10}{'p99 us':>10}{'p99.9 us':>10}")
    for name in ("without_middleware", "with_middleware"):
        lat = direct[name]
        print(f"{name.replace('_', ' '):<20}{pct(lat, 50) * 1000:>10.1f}{pct(lat, 99) * 1000:>10.1f}"
              f"{pct(lat, 99.9) * 1000:>10.1f}")
    added = pct(direct["with_middleware"], 99) - pct(direct["without_middleware"], 99)
    print(f"p99 added by the middleware (in-process, the event built in the call): {added * 1000:+.1f} us")
    record("page middleware: p99 added (in-process ASGI call)", added, "ms", better="lower")
    return 0


if __name__ == "__main__":
    sys.exit(main())
