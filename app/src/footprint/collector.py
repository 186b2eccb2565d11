"""The collector: page-event middleware and the Segment-style ``POST /v1/events`` API."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from footprint.metrics import CollectorMetrics
from footprint.schema import (
    SHORT_MAX_BYTES,
    SHORT_MAX_CHARS,
    TEXT_MAX_BYTES,
    Batch,
    encode_event,
    format_validation_error,
    inbound_to_wire,
    json_depth,
    make_event,
    truncate_utf8,
)
from footprint.settings import Settings

log = logging.getLogger("footprint.collector")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UNTRACKED_PATHS = frozenset({"/healthz", "/metrics"})


class Sender(Protocol):
    """What the collector needs from a producer (``EventProducer`` implements it)."""

    metrics: CollectorMetrics
    last_error: str | None

    def send(self, key: str, value: bytes, type_: str) -> bool: ...
    def queue_length(self) -> int: ...


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def anonymous_id(scope: Scope) -> str:
    """Client-given ``X-Footprint-Anonymous-Id`` or a short hash of client address + user agent."""
    given = _header(scope, b"x-footprint-anonymous-id")
    if given:
        return truncate_utf8(given[:SHORT_MAX_CHARS], SHORT_MAX_BYTES)
    client = scope.get("client") or ("", 0)
    ua = _header(scope, b"user-agent") or ""
    return hashlib.blake2b(f"{client[0]}|{ua}".encode(), digest_size=8).hexdigest()


class PageEventMiddleware:
    """Records one ``page`` event per request. Never raises, never waits on Kafka."""

    def __init__(self, app: ASGIApp, sender: Sender) -> None:
        self.app = app
        self.sender = sender

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in UNTRACKED_PATHS:
            try:
                self.sender.metrics.requests.inc()
                now = datetime.now(UTC)
                fields = make_event(
                    type="page",
                    method=scope["method"],
                    link=truncate_utf8(scope["path"], TEXT_MAX_BYTES),
                    anonymous_id=anonymous_id(scope),
                    footprint_time=now,
                    received_at=now,
                    synthetic=_header(scope, b"x-footprint-probe") == "1",
                )
                self.sender.send(fields["event_id"], encode_event(fields), "page")
            except Exception:  # the request must never fail because of tracking
                self.sender.metrics.dropped.labels("middleware_error").inc()
                log.exception("page event not recorded")
        await self.app(scope, receive, send)


def _error(status: int, error: str, detail: str, metrics: CollectorMetrics, **extra: Any) -> JSONResponse:
    metrics.rejected.labels(str(status)).inc()
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": error, "detail": detail, **extra}, status_code=status, headers=headers)


def _authorized(header: str | None, keys: list[bytes]) -> bool:
    if not header or not keys:
        return False
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    given = token.strip().encode()
    ok = False
    for key in keys:  # compare against every key: no early exit timing signal
        ok |= hmac.compare_digest(given, key)
    return ok


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None when it exceeds ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(settings: Settings, sender: Sender | None = None) -> FastAPI:
    """Build the collector. Without ``sender``, a Kafka ``EventProducer`` is created at startup."""
    holder: dict[str, Sender] = {}
    if sender is not None:
        holder["s"] = sender

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        owned = None
        if "s" not in holder:
            from footprint.producer import EventProducer

            owned = EventProducer(
                settings.kafka_bootstrap, settings.kafka_topic, CollectorMetrics(), settings.producer_queue_max
            )
            owned.start()
            holder["s"] = owned
        try:
            yield
        finally:
            if owned is not None:
                owned.close()

    app = FastAPI(title="footprint collector", lifespan=lifespan, docs_url=None, redoc_url=None)
    keys = [k.get_secret_value().encode() for k in settings.api_keys]

    def current() -> Sender:
        return holder["s"]

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        s = current()
        return {
            "status": "ok",
            "kafka": "ok" if s.last_error is None else f"degraded: {s.last_error}",
            "queue": s.queue_length(),
        }

    @app.get("/metrics")
    async def metrics() -> Response:
        s = current()
        s.metrics.queue_len.set(s.queue_length())
        return Response(generate_latest(s.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/events", status_code=202)
    async def events(request: Request) -> JSONResponse:
        s = current()
        m = s.metrics
        if not _authorized(request.headers.get("authorization"), keys):
            return _error(401, "unauthorized", "missing or invalid bearer key", m)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            return _error(415, "unsupported_media_type", "Content-Type must be application/json", m)
        body = await _read_body(request, settings.max_body_bytes)
        if body is None:
            return _error(413, "too_large", f"body exceeds {settings.max_body_bytes} bytes", m)
        try:
            raw = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return _error(400, "invalid_json", f"body: {exc}", m)
        batch_raw = raw.get("batch") if isinstance(raw, dict) else None
        if isinstance(batch_raw, list) and len(batch_raw) > settings.max_batch_events:
            return _error(413, "too_large", f"batch: more than {settings.max_batch_events} events", m)
        try:
            batch = Batch.model_validate(raw)
        except ValidationError as exc:
            return _error(400, "invalid", format_validation_error(exc), m)
        for i, item in enumerate(batch.batch):
            for name in ("properties", "traits"):
                value = getattr(item, name, None)
                if value is not None and json_depth(value) > settings.max_property_depth:
                    return _error(
                        400, "invalid",
                        f"batch[{i}].{name}: nesting deeper than {settings.max_property_depth}", m,
                    )
        received = datetime.now(UTC)
        ids: list[str] = []
        for item in batch.batch:
            fields = inbound_to_wire(item, received)
            if not s.send(fields["event_id"], encode_event(fields), item.type):
                return _error(
                    503, "unavailable", "event queue full, retry later", m, accepted=len(ids), event_ids=ids
                )
            ids.append(fields["event_id"])
        return JSONResponse({"accepted": len(ids), "event_ids": ids}, status_code=202)

    wrapped: Any = PageEventMiddleware
    app.add_middleware(wrapped, sender=_LazySender(holder))
    return app


class _LazySender:
    """Lets the middleware be installed before the lifespan creates the producer."""

    def __init__(self, holder: dict[str, Sender]) -> None:
        self._holder = holder

    @property
    def metrics(self) -> CollectorMetrics:
        return self._holder["s"].metrics

    @property
    def last_error(self) -> str | None:
        return self._holder["s"].last_error

    def send(self, key: str, value: bytes, type_: str) -> bool:
        return self._holder["s"].send(key, value, type_)

    def queue_length(self) -> int:
        return self._holder["s"].queue_length()


def app_from_env() -> FastAPI:
    """uvicorn factory for ``footprint serve``: settings from the environment."""
    from footprint.logs import setup_logging

    settings = Settings()
    setup_logging(settings.log_level)
    return create_app(settings)
