#!/usr/bin/env python3
"""Benchmark (3): what the page-event middleware (``footprint.track``) adds to a site's request.

Two apps in uvicorn (one process each): a FastAPI route wrapped in ``FootprintASGI`` with a
``KafkaSender`` (validation, enrichment, produce to a real local Kafka broker), and the same route
without it. A closed-loop
load generator (CONNS concurrent keep-alive connections, httpx) drives each for DURATION seconds,
alternating, ROUNDS times. Prints requests/s and latency percentiles, and the p99 difference.

  python benchmarks/collector_overhead.py [--duration 10] [--conns 8] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _figures import record
from _services import REPO, machine

APP = '''
import os
from fastapi import FastAPI
from footprint.track import FootprintASGI, KafkaSender, PageRecorder

def without_middleware():
    app = FastAPI()
    @app.get("/hello")
    async def hello():
        return {"ok": True}
    return app

def with_middleware():
    sender = KafkaSender(os.environ["FOOTPRINT_KAFKA_BOOTSTRAP"], os.environ["FOOTPRINT_KAFKA_TOPIC"])
    return FootprintASGI(without_middleware(), sender, PageRecorder(site="bench"))
'''


BENCHAPP = Path()


def start(factory: str, port: int, env: dict[str, str], appdir: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "uvicorn", f"benchapp:{factory}", "--factory", "--port", str(port),
           "--host", "127.0.0.1", "--no-access-log", "--log-level", "warning", "--app-dir", appdir]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import httpx

    for _ in range(100):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/hello", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{factory} did not start")


async def drive(port: int, duration: float, conns: int) -> list[float]:
    import httpx

    lat: list[float] = []
    end = time.perf_counter() + duration

    async def worker() -> None:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
            while time.perf_counter() < end:
                t = time.perf_counter()
                r = await c.get("/hello")
                lat.append(time.perf_counter() - t)
                assert r.status_code == 200

    await asyncio.gather(*(worker() for _ in range(conns)))
    return lat


async def asgi_latencies(app: object, n: int) -> list[float]:
    """Call the ASGI app directly (no sockets, no load generator): per-request wall time."""
    lat: list[float] = []
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": "/hello", "raw_path": b"/hello", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"bench"), (b"user-agent", b"bench")], "client": ("127.0.0.1", 5000),
             "server": ("127.0.0.1", 8000)}

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        return None

    for _ in range(n):
        t = time.perf_counter()
        await app(dict(scope), receive, send)  # type: ignore[operator]
        lat.append(time.perf_counter() - t)
    return lat


def in_process(bootstrap: str, topic: str, n: int) -> dict[str, list[float]]:
    import importlib.util

    os.environ.update(FOOTPRINT_KAFKA_BOOTSTRAP=bootstrap, FOOTPRINT_KAFKA_TOPIC=topic)
    out: dict[str, list[float]] = {}
    for name in ("without_middleware", "with_middleware"):
        spec = importlib.util.spec_from_file_location("benchapp_" + name, BENCHAPP)
        assert spec and spec.loader
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        app = getattr(mod, name)()

        async def run(app: object = app) -> list[float]:
            inner: Any = getattr(app, "app", app)  # FootprintASGI wraps the FastAPI app
            async with inner.router.lifespan_context(inner):
                await asgi_latencies(app, 2000)  # warm-up
                return await asgi_latencies(app, n)

        out[name] = asyncio.run(run())
    return out


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(p / 100 * len(s)))] * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--conns", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--asgi-requests", type=int, default=20000)
    args = ap.parse_args()
    print(machine())
    sys.path.insert(0, str(REPO / "app" / "tests"))
    from confluent_kafka.admin import AdminClient, NewTopic
    from services import free_port, private_kafka

    global BENCHAPP
    appdir = tempfile.mkdtemp(prefix="fp-collector-bench-")
    BENCHAPP = Path(appdir, "benchapp.py")
    BENCHAPP.write_text(APP)
    with private_kafka(Path(appdir) / "kafka") as kafka:  # type: ignore[attr-defined]
        topic = f"bench-{uuid.uuid4().hex[:8]}"
        admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
        for f in admin.create_topics([NewTopic(topic, 3, 1)]).values():
            f.result(30)
        env = dict(os.environ, FOOTPRINT_KAFKA_BOOTSTRAP=kafka.bootstrap, FOOTPRINT_KAFKA_TOPIC=topic,
                   FOOTPRINT_LOG_LEVEL="WARNING")
        results: dict[str, list[list[float]]] = {"without": [], "with": []}
        for _ in range(args.rounds):
            for name, factory in (("without", "without_middleware"), ("with", "with_middleware")):
                port = free_port()
                proc = start(factory, port, env, appdir)
                try:
                    asyncio.run(drive(port, 2, args.conns))  # warm-up
                    results[name].append(asyncio.run(drive(port, args.duration, args.conns)))
                finally:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(30)
        direct = in_process(kafka.bootstrap, topic, args.asgi_requests)
        from confluent_kafka import Consumer, TopicPartition

        c = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": "count"})
        produced = sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(3))
        c.close()
    import shutil

    shutil.rmtree(appdir, ignore_errors=True)
    print(f"{args.conns} connections, {args.duration:.0f} s per run, {args.rounds} rounds (alternating)")
    print(f"{'':<20}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    p99 = {}
    for name in ("without", "with"):
        lat = [x for run in results[name] for x in run]
        rps = len(lat) / (args.duration * args.rounds)
        p99[name] = pct(lat, 99)
        print(f"{name + ' middleware':<20}{rps:>10,.0f}{pct(lat, 50):>10.2f}{p99[name]:>10.2f}")
    print(f"p99 added by the middleware: {p99['with'] - p99['without']:+.2f} ms")
    record(f"page middleware: p99 added ({args.conns} connections)", p99["with"] - p99["without"], "ms",
           target=1.0, better="lower")
    print(f"page events that reached Kafka: {produced:,}")
    print(f"\nin-process ASGI calls (no sockets, no load generator), {args.asgi_requests:,} sequential requests:")
    print(f"{'':<20}{'p50 us':>10}{'p99 us':>10}{'p99.9 us':>10}")
    for name in ("without_middleware", "with_middleware"):
        lat = direct[name]
        print(f"{name.replace('_', ' '):<20}{pct(lat, 50) * 1000:>10.1f}{pct(lat, 99) * 1000:>10.1f}"
              f"{pct(lat, 99.9) * 1000:>10.1f}")
    added = pct(direct["with_middleware"], 99) - pct(direct["without_middleware"], 99)
    print(f"p99 added by the middleware (in-process): {added * 1000:+.1f} us = {added:+.3f} ms")
    record("page middleware: p99 added (in-process ASGI call)", added, "ms", better="lower")
    return 0


if __name__ == "__main__":
    sys.exit(main())
