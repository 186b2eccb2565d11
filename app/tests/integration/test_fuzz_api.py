"""Schemathesis against the served OpenAPI document of a real collector (uvicorn, real Kafka):
no generated request - valid, invalid, odd headers or paths - may get a 5xx.

The budget is fixed for CI (``FOOTPRINT_FUZZ_EXAMPLES``, examples per operation and phase);
``make fuzz`` runs the long campaign (10,000+ requests) and prints the count.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from footprint.settings import Settings
from helpers import settings_env
from services import free_port

EXAMPLES = int(os.environ.get("FOOTPRINT_FUZZ_EXAMPLES", "150"))
ORIGIN = "http://fuzz.example"  # an allowed site origin: the snippet endpoint parses bodies too


def _serve(settings: Settings, port: int, log: Path, **extra: str) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        **extra,
        FOOTPRINT_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
        FOOTPRINT_KAFKA_TOPIC=settings.kafka_topic,
        FOOTPRINT_API_KEYS="fuzz-key",
        FOOTPRINT_SITE_ORIGINS=ORIGIN,
        FOOTPRINT_COLLECTOR_PORT=str(port),
        FOOTPRINT_LOG_LEVEL="WARNING",
    )
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "footprint.cli", "serve"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)


def test_no_generated_request_gets_a_5xx(settings: Settings, tmp_path: Path) -> None:
    _fuzz(settings, tmp_path, "fuzz-key", EXAMPLES)


def test_no_generated_request_with_a_private_key_gets_a_5xx(settings: Settings, tmp_path: Path) -> None:
    """The read side (events query, SQL, erasure) against the real stores, with the private key."""
    stores = {k: v for k, v in settings_env(settings).items() if k.startswith(("FOOTPRINT_PG_", "FOOTPRINT_CH_"))}
    _fuzz(settings, tmp_path, "fuzz-private-key", max(EXAMPLES // 3, 20), FOOTPRINT_PRIVATE_KEYS="fuzz-private-key",
          FOOTPRINT_QUERY_MAX_EXECUTION_SECONDS="2", **stores)


def _fuzz(settings: Settings, tmp_path: Path, key: str, examples: int, **extra: str) -> None:
    port = free_port()
    server = _serve(settings, port, tmp_path / "collector.log", **extra)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        else:
            raise AssertionError("collector did not become ready: " + (tmp_path / "collector.log").read_text())
        report = tmp_path / "report.ndjson"
        st = Path(sys.executable).with_name("st")
        run = subprocess.run(
            [str(st), "run", f"{base}/openapi.json", "--checks", "not_a_server_error",
             "--max-examples", str(examples), "--seed", "20261201", "--header", f"Authorization: Bearer {key}",
             "--header", f"Origin: {ORIGIN}",
             "--generation-allow-x00", "true", "--request-timeout", "30", "--workers", "2", "--no-shrink",
             "--report", "ndjson", "--report-ndjson-path", str(report)],
            capture_output=True, text=True, timeout=max(1500, examples),  # at most 1 s per example
        )
        requests = _requests(report)
        print(f"schemathesis: {requests} requests; exit {run.returncode}")
        assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
        assert requests >= examples, f"only {requests} requests were made"
    finally:
        server.terminate()
        server.wait(30)
    log = (tmp_path / "collector.log").read_text()
    assert "Traceback" not in log, log[-4000:]


def _requests(report: Path) -> int:
    """Requests made, from schemathesis' ndjson event stream."""
    count = 0
    for line in report.read_text().splitlines():
        event = json.loads(line)
        if "ScenarioFinished" in event:
            recorder = event["ScenarioFinished"].get("recorder", {})
            count += len(recorder.get("interactions", {}))
    return count
