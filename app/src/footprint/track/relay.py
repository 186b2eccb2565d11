"""The relay process of ``KafkaRelaySender``: page events from the app's process to Kafka.

``python -m footprint.track.relay``, started by the sender with pipes for stdin and stdout. It reads one JSON line
of settings (``bootstrap``, ``topic``, ``queue_max``, ``config``: the producer's options, which may hold a
password, hence not in its arguments; ``idle``: run at the lowest CPU priority, ``lowest_priority``), then the
events, one JSON line each (``footprint.track.lines``): a page (``Page``: the request's fields, which this
process builds the event from) or an event, with the time the app received it (seconds since 1970). It validates,
enriches, encodes and produces each as the collector would take it (``PageProducer``), says ``ready`` on stdout
once its producer exists, then writes there how many lines it has read and how many events it dropped so far
(``READ DROPPED``), a line at most every 0.1 s while they change. It ignores SIGINT and SIGTERM, which reach it
with the app's (Ctrl-C in a terminal, systemd's stop): it ends with its stdin, when the app closes the sender or
exits, after waiting up to ``close_seconds`` for Kafka to take what is queued.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import time
from typing import TextIO

from footprint.track.lines import read_line
from footprint.track.produce import PageProducer


def main() -> int:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    stdin, stdout = sys.stdin.buffer.fileno(), sys.stdout
    header = b""
    while not header.endswith(b"\n"):
        chunk = os.read(stdin, 1)
        if not chunk:
            return 2
        header += chunk
    settings = json.loads(header)
    if settings.get("idle", True):
        lowest_priority()  # before the producer: librdkafka's threads inherit it
    producer = PageProducer(settings["bootstrap"], settings["topic"], int(settings["queue_max"]),
                            settings.get("config"))
    reporting = report(stdout, "ready")  # the sender waits for this line
    reported, rest, read, due = (0, 0), b"", 0, 0.0
    while True:
        if select.select([stdin], [], [], 0.1)[0]:
            chunk = os.read(stdin, 1 << 16)
            if not chunk:
                break
            *lines, rest = (rest + chunk).split(b"\n")
            read += len(lines)
            for line in lines:
                try:
                    event, moment = read_line(line)
                except (ValueError, TypeError, AttributeError, OverflowError, OSError):  # not what the sender writes
                    producer.dropped += 1
                    continue
                producer.produce(event, moment)
        producer.poll()
        if reporting and (read, producer.dropped) != reported and time.monotonic() >= due:
            reported, due = (read, producer.dropped), time.monotonic() + 0.1
            reporting = report(stdout, f"{read} {producer.dropped}")
    producer.flush(float(settings.get("close_seconds", 10.0)))
    unfinished = 1 if rest.strip() else 0  # a last line without its end: not what the sender writes
    if reporting:
        report(stdout, f"{read + unfinished} {producer.dropped + unfinished}")
    return 0


def lowest_priority() -> None:
    """Run on what the app leaves of the cores: Linux's SCHED_IDLE (a woken request preempts the relay at once),
    elsewhere nice 19."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):  # not Linux
        with contextlib.suppress(OSError):  # (at worst, the app's priority)
            os.nice(19)


def report(stdout: TextIO, line: str) -> bool:
    """One line to the sender; False once it no longer reads them (the app exited without closing the sender:
    the relay still flushes what it has to Kafka)."""
    try:
        stdout.write(line + "\n")
        stdout.flush()
        return True
    except OSError:
        return False


if __name__ == "__main__":
    raise SystemExit(main())
