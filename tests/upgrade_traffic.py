"""Traffic for the upgrade scenario (molecule/upgrade): a client of the collector's API that
records every answer, so the checks afterwards know exactly which events were accepted.

    python tests/upgrade_traffic.py load    --collector URL --key-file F --out LOG --count 10000
    python tests/upgrade_traffic.py trickle --collector URL --key-file F --out LOG [--interval 0.5]

Both write one JSON line per request to LOG: {"t": unix time, "status": HTTP status or 0 for no
answer, "error": text, "ids": [messageIds]}. Every event carries a messageId, so a retry of a
refused batch (the same messageIds) is stored once: a batch is retried until it gets a 2xx, as
clients are expected to. `load` sends COUNT events in batches of 100 and exits; `trickle` sends a
small batch every INTERVAL seconds until SIGTERM/SIGINT, then finishes the batch in flight.
Both are bounded: a batch refused MAX_REFUSALS times in a row ends the run with an error naming
the collector and its last answer (exit 3), and `trickle` stops by itself after MAX_SECONDS.
The header X-Footprint-Probe marks as synthetic the page view that release 0.1.0 records for each API
call (0.2.0 on records none), so the smoke checks' stats stay untouched.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import IO, Any

import httpx

# uuid5 namespace the collector derives event ids from messageIds with (app schema, since 0.1.0)
MESSAGE_ID_NAMESPACE = uuid.UUID("0f6b8f4e-0d1c-4d43-9f0a-4f6f6f747072")


def event_id(message_id: str) -> str:
    """The event_id the collector stores for a messageId."""
    return str(uuid.uuid5(MESSAGE_ID_NAMESPACE, message_id))


def read_log(path: Path) -> list[dict[str, Any]]:
    """The requests a run recorded (oldest first)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def accepted_ids(path: Path) -> list[str]:
    """messageIds of every batch the collector accepted (2xx)."""
    return [i for r in read_log(path) if 200 <= r["status"] < 300 for i in r["ids"]]


def refused_windows(records: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """(start, end) of every run of consecutive non-2xx answers: from the first refused request
    to the next accepted one (or the last request)."""
    windows: list[tuple[float, float]] = []
    start: float | None = None
    for r in records:
        ok = 200 <= r["status"] < 300
        if not ok and start is None:
            start = r["t"]
        elif ok and start is not None:
            windows.append((start, r["t"]))
            start = None
    if start is not None:
        windows.append((start, records[-1]["t"]))
    return windows


class Stop:
    """Set by SIGTERM/SIGINT: no new batch; a batch in flight may still retry until `deadline`."""

    def __init__(self) -> None:
        self.requested = False
        self.deadline = float("inf")

    def __call__(self, *_: Any) -> None:
        self.requested = True
        self.deadline = time.time() + 60


class Refused(Exception):
    """The collector refused one batch too many times in a row: the traffic stops instead of retrying forever."""


class Sender:
    def __init__(self, collector: str, key: str, out: IO[str], run: str, verify: str | bool = True,
                 max_refusals: int = 1200) -> None:
        self.collector = collector
        self.max_refusals = max_refusals
        self.client = httpx.Client(base_url=collector, timeout=10, verify=verify,
                                   headers={"Authorization": f"Bearer {key}", "X-Footprint-Probe": "1"})
        self.out = out
        self.run = run
        self.n = 0

    def batch(self, size: int, label: str) -> list[dict[str, Any]]:
        items = []
        for _ in range(size):
            self.n += 1
            items.append({"type": "track", "event": f"Upgrade {label}", "userId": f"upgrade-{self.run}",
                          "properties": {"n": self.n}, "messageId": f"upgrade-{self.run}-{self.n}"})
        return items

    def send_until_accepted(self, items: list[dict[str, Any]], pause: float, stop: Stop) -> None:
        """POST the batch until a 2xx; every attempt is logged. Gives up only when stopping and
        the batch was never accepted (its ids then count as not accepted)."""
        ids = [i["messageId"] for i in items]
        refusals = 0
        while True:
            try:
                res = self.client.post("/v1/events", json={"batch": items})
                status, error = res.status_code, "" if res.is_success else res.text[:200]
            except httpx.HTTPError as exc:
                status, error = 0, f"{type(exc).__name__}: {exc}"[:200]
            self.out.write(json.dumps({"t": time.time(), "status": status, "error": error, "ids": ids}) + "\n")
            self.out.flush()
            if 200 <= status < 300:
                return
            if time.time() > stop.deadline:
                return
            refusals += 1
            if refusals >= self.max_refusals:
                raise Refused(f"{self.collector} refused a batch {refusals} times in a row (last answer: "
                              f"{status or 'none'} {error}); the traffic stops here")
            time.sleep(pause)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["load", "trickle"])
    p.add_argument("--collector", required=True, help="http://HOST:PORT")
    p.add_argument("--key-file", required=True, type=Path, help="file holding the API key")
    p.add_argument("--out", required=True, type=Path, help="JSON-lines log of every request (appended)")
    p.add_argument("--count", type=int, default=10_000, help="load: events to send")
    p.add_argument("--interval", type=float, default=0.5, help="trickle: seconds between batches")
    p.add_argument("--size", type=int, default=2, help="trickle: events per batch")
    p.add_argument("--max-seconds", type=float, default=3600, help="trickle: stop by itself after this long")
    p.add_argument("--max-refusals", type=int, default=1200,
                   help="stop with an error once one batch was refused this many times in a row")
    args = p.parse_args(argv)

    key = args.key_file.read_text().strip()
    run = uuid.uuid4().hex[:12]
    stop = Stop()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with args.out.open("a") as out:
        sender = Sender(args.collector, key, out, run, max_refusals=args.max_refusals)
        try:
            return _send(args, sender, stop, run)
        except Refused as exc:
            print(f"{args.mode}: {exc}", file=sys.stderr, flush=True)
            return 3


def _send(args: argparse.Namespace, sender: Sender, stop: Stop, run: str) -> int:
    if args.mode == "load":
        started = time.monotonic()
        while sender.n < args.count and not stop.requested:
            sender.send_until_accepted(sender.batch(min(100, args.count - sender.n), "load"), 1.0, stop)
        print(f"load: {sender.n} events sent in {time.monotonic() - started:.1f} s (run {run})")
    else:
        print(f"trickle: {args.size} events every {args.interval} s until SIGTERM or {args.max_seconds:.0f} s "
              f"(run {run})", flush=True)
        end = time.monotonic() + args.max_seconds
        while not stop.requested and time.monotonic() < end:
            sender.send_until_accepted(sender.batch(args.size, "trickle"), args.interval, stop)
            time.sleep(args.interval)
        print(f"trickle: stopped after {sender.n} events", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
