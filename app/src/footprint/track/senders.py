"""Where the middleware's events go, without ever making a request wait.

``HttpSender``: batches to the collector's ``POST /v1/events`` from a background thread (stdlib
only). A batch the collector answers 503 or cannot be reached for is retried with backoff (each
event carries a ``messageId``, so a retry is stored once); a batch it refuses (4xx) is dropped.
Over HTTPS with a private CA (the kit's default deploy), give the CA's certificate (``ca_file``) or
an ``ssl_context``. Every failure is a warning that names the cause (once per outage, and for each
dropped batch), never a silent drop.
``KafkaSender``: queues each event; its thread validates and enriches them as the collector does and
produces the canonical form straight to the topic in bursts (``pip install footprint[kafka]``:
confluent-kafka and the user-agent parsers), fire-and-forget. ``KafkaRelaySender``: the same work in a
process of its own, which also builds the middleware's events: the request path only queues the request, the
sender's thread writes each page's fields as a line to the relay's pipe.
All count what they drop in ``dropped`` and never raise into the caller.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import select
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from footprint.track.lines import event_line, page_line
from footprint.track.produce import PageProducer

if TYPE_CHECKING:
    from typing import TypeAlias

    from footprint.track.record import PageRecorder, PageRequest

    Queued: TypeAlias = bytes | tuple[PageRequest, PageRecorder, float]  # a line; a request to make one of

log = logging.getLogger("footprint.track")


class Sender(Protocol):
    """Where the middleware's events go (``send``). A sender may also take the request itself,
    ``send_request(request, recorder)``, to make its page and event later, elsewhere (``KafkaRelaySender``: in its
    thread and its relay process); the middleware then calls that."""

    dropped: int

    def send(self, event: dict[str, Any]) -> None: ...
    def close(self, timeout: float = ...) -> None: ...


class HttpSender:
    _post_tries = 6  # ~30 s of retries, then the batch is dropped (counted, with a warning)

    def __init__(self, collector_url: str, key: str, batch_size: int = 100, flush_seconds: float = 1.0,
                 max_queue: int = 10_000, timeout: float = 10.0, ca_file: str | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.url = collector_url.rstrip("/") + "/v1/events"
        if ca_file and ssl_context:
            raise ValueError("HttpSender: give ca_file or ssl_context, not both (load the CA into the context)")
        self.context = ssl_context or (ssl.create_default_context(cafile=ca_file) if ca_file else None)
        self._failing = False
        self.key = key
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.timeout = timeout
        self.sent = 0
        self.dropped = 0
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(max_queue)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="footprint-http-sender", daemon=True)
        self._thread.start()

    def send(self, event: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        while not (self._stop.is_set() and self._queue.empty()):
            batch = self._take()
            if batch:
                self._post(batch)

    def _take(self) -> list[dict[str, Any]]:
        batch: list[dict[str, Any]] = []
        deadline = time.monotonic() + self.flush_seconds
        while len(batch) < self.batch_size:
            left = deadline - time.monotonic()
            if left <= 0 or (self._stop.is_set() and self._queue.empty()):
                break
            try:
                batch.append(self._queue.get(timeout=min(left, 0.1)))
            except queue.Empty:
                continue
        return batch

    def _post(self, batch: list[dict[str, Any]]) -> None:
        body = json.dumps({"batch": batch}).encode()
        delay = 0.5
        for _attempt in range(self._post_tries):
            request = urllib.request.Request(self.url, data=body, method="POST", headers={
                "Authorization": f"Bearer {self.key}", "Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout, context=self.context):
                    self.sent += len(batch)
                    if self._failing:
                        log.warning("collector reachable again", extra={"url": self.url})
                    self._failing = False
                    return
            except urllib.error.HTTPError as exc:
                if exc.code < 500:
                    hint = " (plain HTTP to an HTTPS port? use https://)" if exc.code == 400 else ""
                    log.warning(f"collector refused page events{hint}",
                                extra={"status": exc.code, "events": len(batch), "url": self.url})
                    break
                self._unreachable(f"HTTP {exc.code}")
            except (OSError, ValueError) as exc:
                self._unreachable(str(getattr(exc, "reason", exc)))
            if self._stop.wait(delay):
                break
            delay = min(delay * 2, 10.0)
        self.dropped += len(batch)
        log.warning("page events dropped: the collector did not take them", extra={"events": len(batch),
                                                                                   "url": self.url})

    def _unreachable(self, error: str) -> None:
        if self._failing:
            return
        self._failing = True
        hint = ""
        if "CERTIFICATE_VERIFY_FAILED" in error:
            hint = ": its certificate is not trusted here; pass ca_file= the deploy's CA certificate"
        log.warning(f"collector unreachable, retrying{hint}", extra={"error": error[:300], "url": self.url})

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued (up to ``timeout``), then stop."""
        self._stop.set()
        self._thread.join(timeout)


class KafkaSender:
    """``send`` only queues the event (bounded: ``queue_max``, beyond which it is dropped and counted);
    the sender's thread takes what is queued every ``flush_seconds`` and validates, enriches, encodes and
    produces it (``PageProducer``), ``chunk`` events at a time with a pause between chunks so the app's threads
    get the GIL back within one chunk's work. ``KafkaRelaySender`` does that work in a process of its own."""

    chunk = 16
    pause_seconds = 0.0002

    def __init__(self, bootstrap: str, topic: str = "web-logs-topic", queue_max: int = 100_000,
                 config: dict[str, Any] | None = None, flush_seconds: float = 0.05) -> None:
        self.queue_max = queue_max
        self.flush_seconds = flush_seconds
        self._dropped = 0
        self._queue: deque[tuple[dict[str, Any], datetime]] = deque()
        self._producer = PageProducer(bootstrap, topic, queue_max, config)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="footprint-kafka-sender", daemon=True)
        self._thread.start()

    @property
    def dropped(self) -> int:
        """Events dropped: a full queue, an invalid event, Kafka not taking it."""
        return self._dropped + self._producer.dropped

    @dropped.setter
    def dropped(self, value: int) -> None:  # the middleware counts what it failed to hand over
        self._dropped = value - self._producer.dropped

    def send(self, event: dict[str, Any]) -> None:
        if len(self._queue) >= self.queue_max:
            self._dropped += 1
            return
        self._queue.append((event, datetime.now(UTC)))  # when it was received: received_at, the message's time

    def _serve(self) -> None:
        while True:
            stopping = self._stop.wait(self.flush_seconds)
            while self._queue:
                for _ in range(min(self.chunk, len(self._queue))):
                    self._producer.produce(*self._queue.popleft())
                self._producer.poll()
                if self._queue and not stopping:
                    time.sleep(self.pause_seconds)
            self._producer.poll()
            if stopping:
                return

    def close(self, timeout: float = 10.0) -> None:
        """Produce what is queued, then wait up to ``timeout`` for Kafka to take it (what it did not is dropped)."""
        self._stop.set()
        self._thread.join()
        self._producer.flush(timeout)


class KafkaRelaySender:
    """As ``KafkaSender``, but the validating, enriching, encoding and producing run in a process of its own, the
    relay (``python -m footprint.track.relay``, started here and waited for: one that cannot start, for instance
    without confluent-kafka, fails the constructor), so neither that work nor the GIL it holds is in the app's
    process; nor the middleware's events: ``send_request`` queues the request as it is, the thread makes its page
    (the visitor's id, the client's address) and its line, the relay builds the event (``send`` queues an event's
    line). The queue is bounded: ``queue_max`` lines, those not yet in the relay's pipe included, beyond which it
    is dropped and counted. The thread writes what is queued to the relay's pipe every ``flush_seconds``, as far
    as the pipe has room. ``dropped`` adds the relay's drops (an invalid event, Kafka not taking it), which it
    reports on its stdout with the lines it has read. A relay that exits (killed, out of memory) is started again
    at the next write, at most once every ``restart_seconds``; the lines written to it that it had not read are
    lost, counted, with a warning (those it had read and Kafka had not yet taken cannot be told apart from the
    delivered: a relay killed outright loses them uncounted). ``idle`` (the default): the relay runs at the lowest
    CPU priority (Linux's SCHED_IDLE, elsewhere nice 19), on what the app leaves of the cores, so that its bursts
    give way to the app's requests; an app that keeps every core busy for long makes its queue fill and its events be
    dropped, counted, rather than its requests wait. ``idle=False``: at the app's priority.
    ``close`` ends the relay's stdin: it waits up to ``close_seconds`` for Kafka to take what is queued."""

    restart_seconds = 10.0
    chunk = 64  # requests made into lines between two moments the writer lets go of the GIL
    start_seconds = 30.0  # for the relay to start (Python, confluent-kafka and the parsers imported)

    def __init__(self, bootstrap: str, topic: str = "web-logs-topic", queue_max: int = 100_000,
                 config: dict[str, Any] | None = None, flush_seconds: float = 0.05, close_seconds: float = 10.0,
                 idle: bool = True) -> None:
        self.queue_max = queue_max
        self.flush_seconds = flush_seconds
        self.close_seconds = close_seconds
        self._settings = (json.dumps({"bootstrap": bootstrap, "topic": topic, "queue_max": queue_max,
                                      "config": config or {}, "close_seconds": close_seconds, "idle": idle})
                          + "\n").encode()
        self._dropped = 0  # here: a full queue, lines lost with a relay that exited
        self._relay_dropped = 0  # reported by the relays that ended
        self._queued: list[Queued] = []
        self._carry = b""  # what the writes left of the lines taken from the queue
        self._carry_lines = 0
        self._lock = threading.Lock()
        self._closed = False
        self._relay = self._start()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="footprint-kafka-relay-writer", daemon=True)
        self._thread.start()

    @property
    def dropped(self) -> int:
        """Events dropped: a full queue, an invalid event, Kafka not taking it, a relay that exited."""
        return self._dropped + self._relay_dropped + self._reported

    @dropped.setter
    def dropped(self, value: int) -> None:  # the middleware counts what it failed to hand over
        with self._lock:
            self._dropped = value - self._relay_dropped - self._reported

    def send(self, event: dict[str, Any]) -> None:
        self._queue(event_line(event, time.time()))

    def send_request(self, request: PageRequest, recorder: PageRecorder) -> None:
        """The middleware's request, queued as it is: this sender's thread makes its page (``recorder.page_of``)
        and its line, many at a time; the relay builds the event. The least work on the app's request path."""
        self._queue((request, recorder, time.time()))

    def _queue(self, item: Queued) -> None:
        with self._lock:
            if len(self._queued) + self._carry_lines >= self.queue_max:
                self._dropped += 1
                return
            self._queued.append(item)

    def _lines(self, items: list[Queued]) -> bytes:
        """The queued items as lines (a request's page made here: one that fails is dropped, counted), the GIL let
        go every ``chunk`` items so that the app's event loop waits for it at most that long."""
        lines, failed = [], 0
        for i, item in enumerate(items, 1):
            if isinstance(item, bytes):
                lines.append(item)
            else:
                request, recorder, received = item
                try:
                    lines.append(page_line(recorder.page_of(request), received))
                except Exception:  # tracking must never fail: counted
                    failed += 1
                    log.exception("page event not recorded")
            if i % self.chunk == 0:
                time.sleep(0)
        if failed:
            with self._lock:
                self._dropped += failed
        return b"".join(lines)

    def _start(self) -> subprocess.Popen[bytes]:
        """A relay, started and ready (it says so once its producer exists); RuntimeError if it is not."""
        self._started, self._report_rest = time.monotonic(), b""
        self._in_pipe = self._relay_read = self._reported = 0  # lines written to it, read by it, dropped by it
        relay = subprocess.Popen([sys.executable, "-m", "footprint.track.relay"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, close_fds=True)
        assert relay.stdin is not None and relay.stdout is not None
        try:
            relay.stdin.write(self._settings)
            relay.stdin.flush()
            ready = select.select([relay.stdout], [], [], self.start_seconds)[0] and relay.stdout.readline()
        except OSError:
            ready = b""
        if ready != b"ready\n":
            relay.kill()
            code = relay.wait()
            raise RuntimeError(f"the page events' relay ({sys.executable} -m footprint.track.relay) did not start"
                               f" (exit code {code}; its error is above, on this process's stderr)")
        os.set_blocking(relay.stdin.fileno(), False)
        os.set_blocking(relay.stdout.fileno(), False)
        return relay

    def _read_reports(self) -> None:
        """The relay's latest counts of the lines it read and the events it dropped (``footprint.track.relay``)."""
        assert self._relay.stdout is not None
        try:
            chunk = os.read(self._relay.stdout.fileno(), 1 << 12)
        except (BlockingIOError, ValueError):
            return
        *lines, self._report_rest = (self._report_rest + chunk).split(b"\n")
        self._parse_reports(lines)

    def _parse_reports(self, lines: list[bytes]) -> None:
        for line in reversed(lines):
            counts = line.split()
            if len(counts) == 2 and all(c.isdigit() for c in counts):
                self._relay_read, self._reported = int(counts[0]), int(counts[1])
                return

    def _write(self) -> None:
        """What is queued, to the relay's pipe as far as it has room (the rest waits for the next write; new lines
        are taken once the earlier ones are all written). A relay that exited: the lines written to it and not
        read are lost, counted; the others go to the next relay."""
        if not self._carry:  # (this thread's, and close's once it has ended)
            with self._lock:
                taken, self._queued = self._queued, []
                self._carry_lines = len(taken)  # still counted in the queue's bound while made into lines
            data = self._lines(taken)
            with self._lock:
                self._carry, self._carry_lines = data, data.count(b"\n")
        data = self._carry
        assert self._relay.stdin is not None
        sent = 0
        try:
            while sent < len(data):
                sent += os.write(self._relay.stdin.fileno(), memoryview(data)[sent:])
        except BlockingIOError:
            pass
        except (OSError, ValueError) as exc:  # (ValueError: a relay whose restart failed, its pipe closed)
            rest, cut = data[sent:], 0
            if sent and data[sent - 1:sent] != b"\n":  # a line cut in two: its start went to the relay that exited
                cut = rest.find(b"\n") + 1
            with self._lock:
                self._carry = rest[cut:]
                self._carry_lines = self._carry.count(b"\n")
            self._relay_gone(str(exc), lost=data.count(b"\n", 0, sent) + (1 if cut else 0))
            return
        written = data.count(b"\n", 0, sent)
        self._in_pipe += written
        with self._lock:
            self._carry, self._carry_lines = data[sent:], self._carry_lines - written

    def _relay_gone(self, error: str, lost: int) -> None:
        """The relay exited: ``lost`` lines written in vain, and those written earlier that it had not read; start
        another (not sooner than ``restart_seconds`` after the last start; one that fails is tried again later)."""
        self._read_reports()
        lost += max(self._in_pipe - self._relay_read, 0)
        with self._lock:
            self._dropped += lost
            self._relay_dropped += self._reported
            self._in_pipe = self._relay_read = self._reported = 0
        code = self._relay.poll()
        log.warning("the page events' relay process exited; starting another",
                    extra={"exit_code": code, "error": error, "events_lost": lost})
        wait = self.restart_seconds - (time.monotonic() - self._started)
        if wait > 0 and self._stop.wait(wait):
            return
        try:
            self._relay = self._start()
        except (RuntimeError, OSError) as exc:  # the next write finds its pipe closed and tries again
            self._started = time.monotonic()
            log.warning("the page events' relay process did not start again", extra={"error": str(exc)})

    def _serve(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self._write()
            self._read_reports()

    def close(self, timeout: float | None = None) -> None:
        """Write what is queued, end the relay's stdin, and wait for it (it waits up to ``close_seconds`` for Kafka
        to take what is queued; ``timeout``: wait for it that long instead, then kill it). What Kafka did not take,
        or the relay had not read when killed, is dropped, counted."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._thread.join()
        self._write()
        with self._lock:  # all that is left, for the relay's stdin before its end
            taken, self._queued = self._queued, []
        self._carry += self._lines(taken)
        relay = self._relay
        assert relay.stdin is not None
        sent = self._in_pipe + self._carry.count(b"\n")  # all it should read
        try:  # the rest of the lines, then the end of its stdin: the relay flushes Kafka's queue and exits
            os.set_blocking(relay.stdin.fileno(), True)
            report, _ = relay.communicate(input=self._carry or None,
                                          timeout=(self.close_seconds if timeout is None else timeout) + 5)
            self._parse_reports((self._report_rest + report).split(b"\n"))
        except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
            relay.kill()
            relay.wait()
            self._read_reports()
            log.warning("the page events' relay process did not finish; killed", extra={"error": str(exc)})
        self._dropped += max(sent - self._relay_read, 0)  # lines it never read (it had exited, or was killed)
        self._in_pipe = self._relay_read = 0
