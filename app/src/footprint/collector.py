"""The collector: the Segment-style ``POST /v1/events`` API and the browser snippet's endpoint.

``POST /v1/events`` validates the whole batch against the event contract (``contract``) and enriches
it (``enrich``) before anything is produced, then answers 202 only after Kafka acknowledged every
event of it (acks=all), 503 with Retry-After otherwise. The collector records only what clients
send it: requests to the collector itself are never page views (a site records its own pages with
``footprint.track`` or the snippet).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import AsyncIterator, Callable, MutableMapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from footprint import __version__
from footprint.auth import authorized, key_bytes, matches
from footprint.browser import add_browser_routes
from footprint.contract import ContractError, encode_event, inbound_json_schema, loads, plain_batch, validate_batch
from footprint.countries import Countries, Enrich, located
from footprint.erasure import Eraser
from footprint.metrics import CollectorMetrics
from footprint.readapi import add_read_routes
from footprint.salts import SharedSalts
from footprint.settings import CollectorSettings, Settings
from footprint.stores import StoreUnavailable
from footprint.visitors import VisitorIds, client_address, in_networks, parse_networks

log = logging.getLogger("footprint.collector")

Scope = MutableMapping[str, Any]
_ACCEPTED = msgspec.json.Encoder()


class Sender(Protocol):
    """What the collector needs from Kafka (``producer.EventProducer`` implements it)."""

    metrics: CollectorMetrics

    async def deliver(self, events: list[tuple[str, bytes, str]], timeout: float,
                      received_at: datetime | None = None) -> str | None: ...
    def ready(self) -> str | None: ...
    def queue_length(self) -> int: ...


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def client_function(settings: CollectorSettings) -> Callable[[Scope], str]:
    """``scope -> client address``: the peer's, or behind a trusted proxy its ``X-Forwarded-For`` client
    (``visitors.client_address``)."""
    trusted = parse_networks(settings.trusted_proxies)

    def client(scope: Scope) -> str:
        peer = (scope.get("client") or ("", 0))[0] or ""
        return client_address(peer, _header(scope, b"x-forwarded-for"), trusted)

    return client


def visitor_function(settings: CollectorSettings, salts: SharedSalts | None = None) -> Callable[[Scope], str]:
    """``scope -> visitor id``: the daily-salted hash of site + client address (through trusted
    proxies only) + user agent (``visitors.py``), with the salt every collector shares (``salts.py``)."""
    ids = VisitorIds(settings.site, salts.salt_for if salts is not None else None)
    client = client_function(settings)

    def visitor(scope: Scope) -> str:
        return ids.visitor_id(client(scope), _header(scope, b"user-agent") or "")

    return visitor


# ------------------------------------------------------------------ response bodies (OpenAPI)


class Accepted(BaseModel):
    accepted: int
    event_ids: list[str]


class Problem(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    error: str
    detail: str
    problems: list[Problem] = []


class Health(BaseModel):
    status: str
    version: str
    kafka: str
    queue: int
    countries: str  # "ok", or why some addresses get no country (never makes the collector unhealthy)


class Database(BaseModel):
    path: str
    loaded: bool
    info: str = ""  # the database's own info text (edition, build date)
    built: str = ""  # the build date in the info text (YYYY-MM-DD), not necessarily the data's date
    error: str = ""


class Whoami(BaseModel):
    address: str  # the client address as the collector sees it (after the trusted proxies)
    peer: str  # the connection's own address
    forwarded_for: str | None  # the X-Forwarded-For header received, believed only from a trusted proxy
    country: str  # ISO 3166-1 alpha-2, "" when not known
    databases: dict[str, Database]


def _error(status: int, error: str, detail: str, metrics: CollectorMetrics,
           problems: list[tuple[str, str]] | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    metrics.rejected.labels(str(status)).inc()
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
    body = ErrorBody(error=error, detail=detail,
                     problems=[Problem(field=f, message=m) for f, m in problems or []])
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _media_type_problem(header: str) -> str | None:
    """Why a Content-Type is not acceptable (JSON in UTF-8 only), or None."""
    mtype, *params = (part.strip() for part in header.split(";"))
    if mtype.lower() != "application/json":
        return "Content-Type must be application/json"
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return "the body must be UTF-8 (charset=utf-8); other charsets are refused"
    return None


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


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {400: "the body breaks the event contract (every bad field is listed)", 401: "missing or wrong key",
            413: "body or batch too large", 415: "not JSON in UTF-8",
            503: "Kafka did not acknowledge the batch in time: retry after Retry-After seconds "
                 "(with the same messageIds, a retry is stored once)"}
    return {code: {"model": ErrorBody, "description": text[code]} for code in codes}


def create_app(settings: Settings, sender: Sender | None = None) -> FastAPI:
    """Build the collector. Without ``sender``, the Kafka producers are created at startup."""
    slot = _SenderSlot(sender)
    salts = SharedSalts(settings.pg_dsn.get_secret_value())
    countries = Countries(settings.geoip_database, settings.geoip_database_v6)  # read once, mapped
    if countries.problem():
        log.warning("countries not resolved for every address", extra={"problem": countries.problem()})
    client = client_function(settings)

    def enrich(scope: Scope) -> Enrich:
        return located(countries, client(scope))  # the country: the event's, else the client's

    eraser = Eraser(settings)
    app = FastAPI(title="footprint collector", version=__version__, lifespan=_lifespan(settings, slot, salts, eraser),
                  docs_url=None, redoc_url=None)
    keys = key_bytes(settings.api_keys)
    _add_status_routes(app, slot, countries, client)
    _add_metrics_route(app, slot, client, parse_networks(settings.metrics_from), key_bytes(settings.private_keys))
    _add_events_route(app, settings, slot, keys, enrich)
    add_read_routes(app, settings, eraser, error=slot.error)
    add_browser_routes(
        app, settings,
        deliver=lambda events, received: slot.current().deliver(events, settings.api_ack_timeout_seconds, received),
        visitor=visitor_function(settings, salts),
        enrich=enrich,
        authorized=lambda key: matches(key, keys),
        error=slot.error,
    )
    return app


class _SenderSlot:
    """The collector's sender: the one given to ``create_app`` (tests), else its own Kafka producer,
    made at startup and closed at shutdown (``_lifespan``)."""

    def __init__(self, given: Sender | None) -> None:
        self.sender = given

    def current(self) -> Sender:
        if self.sender is None:
            raise RuntimeError("the collector has not started (no Kafka producer yet)")
        return self.sender

    def error(self, status: int, error: str, detail: str, problems: list[tuple[str, str]] | None = None,
              headers: dict[str, str] | None = None) -> JSONResponse:
        """An error answer, counted in the current sender's metrics."""
        return _error(status, error, detail, self.current().metrics, problems, headers)


def _lifespan(settings: Settings, slot: _SenderSlot, salts: SharedSalts,
              eraser: Eraser) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """From startup to shutdown: the day's visitor salt kept fresh, the Kafka producer (unless one
    was given), and the erasure jobs an earlier process left unfinished resumed."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        stop_salts = threading.Event()
        salts.keep_fresh(stop_salts)  # the day's visitor salt, shared through PostgreSQL
        owned = None
        if slot.sender is None:
            from footprint.producer import EventProducer

            owned = EventProducer(settings.kafka_bootstrap, settings.kafka_topic, CollectorMetrics(),
                                  settings.producer_queue_max, int(settings.api_ack_timeout_seconds * 1000),
                                  "footprint-collector", settings.kafka_client_config("collector"))
            owned.start()
            slot.sender = owned
        if settings.private_keys:  # erasure jobs an earlier process left unfinished (idempotent)
            threading.Thread(target=_resume_erasures, args=(eraser,), daemon=True).start()
        try:
            yield
        finally:
            stop_salts.set()
            if owned is not None:
                owned.close()

    return lifespan


def _add_status_routes(app: FastAPI, slot: _SenderSlot, countries: Countries, client: Callable[[Scope], str]) -> None:
    """``GET /healthz`` (readiness) and ``GET /v1/whoami`` (the self-check of the client address)."""

    @app.get("/healthz", response_model=Health, responses={503: {"model": Health, "description": "Kafka unreachable"}})
    async def healthz() -> JSONResponse:
        """Readiness: 200 when a Kafka broker answered the last check (every few seconds), else 503."""
        s = slot.current()
        problem = s.ready()
        body = Health(status="ok" if problem is None else "unavailable", version=__version__,
                      kafka="ok" if problem is None else problem, queue=s.queue_length(),
                      countries=countries.problem() or "ok")
        return JSONResponse(body.model_dump(), status_code=200 if problem is None else 503)

    @app.get("/v1/whoami", response_model=Whoami)
    async def whoami(request: Request) -> JSONResponse:
        """The self-check of the client address and its country: the address as the collector sees the caller
        (the peer's, or behind a trusted proxy its ``X-Forwarded-For`` client), the country it resolves to and
        the country databases (path, info, or why one is missing). Nothing is stored or produced."""
        address = client(request.scope)
        body = Whoami(address=address, peer=request.client.host if request.client else "",
                      forwarded_for=request.headers.get("x-forwarded-for"), country=countries.country(address),
                      databases={k: Database(**v) for k, v in countries.describe().items()})
        return JSONResponse(body.model_dump(), headers={"Cache-Control": "no-store"})


def _add_metrics_route(app: FastAPI, slot: _SenderSlot, client: Callable[[Scope], str],
                       metrics_from: list[ipaddress.IPv4Network | ipaddress.IPv6Network], private: list[bytes]) -> None:
    """``GET /metrics``: Prometheus text, for ``metrics_from`` or a private key only."""

    @app.get("/metrics", response_class=Response,
             responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"},
                        404: {"description": "not from FOOTPRINT_METRICS_FROM and no private key"}})
    async def metrics(request: Request) -> Response:
        """Prometheus metrics, only for clients in ``FOOTPRINT_METRICS_FROM`` (loopback by default; behind
        a trusted proxy, its ``X-Forwarded-For`` client) or with a private key; to anyone else it does not exist."""
        allowed = in_networks(client(request.scope), metrics_from)
        if not (allowed or authorized(request.headers.get("authorization"), private)):
            return JSONResponse({"error": "not_found", "detail": "Not Found"}, status_code=404)
        s = slot.current()
        s.metrics.queue_len.set(s.queue_length())
        return Response(generate_latest(s.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _add_events_route(app: FastAPI, settings: CollectorSettings, slot: _SenderSlot, keys: list[bytes],
                      enrich: Callable[[Scope], Enrich]) -> None:
    """``POST /v1/events``: the whole batch checked, then produced; 202 once Kafka acknowledged it."""
    retry_after = {"Retry-After": str(settings.retry_after_seconds)}

    @app.post(
        "/v1/events", status_code=202, response_model=Accepted, responses=_responses(400, 401, 413, 415, 503),
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/json": {"schema": inbound_json_schema(settings.max_batch_events)}}}},
    )
    async def events(request: Request) -> Response:
        """Accept a batch of events: 202 once Kafka acknowledged all of them, nothing produced otherwise."""
        s = slot.current()
        m = s.metrics
        if not authorized(request.headers.get("authorization"), keys):
            return _error(401, "unauthorized", "missing or invalid bearer key", m)
        problem = _media_type_problem(request.headers.get("content-type", ""))
        if problem:
            return _error(415, "unsupported_media_type", problem, m)
        body = await _read_body(request, settings.max_body_bytes)
        if body is None:
            return _error(413, "too_large", f"body exceeds {settings.max_body_bytes} bytes", m)
        # a plainly valid batch in one pass (the contract's fast path); anything else is decided by the contract
        received = datetime.now(UTC)  # every event's received_at, and its message's Kafka timestamp
        located_by = enrich(request.scope)  # the country: the event's, else the client's
        wire = plain_batch(body, received, settings.max_batch_events, located_by)
        if wire is None:
            try:
                raw = loads(body)
            except ValueError as exc:
                return _error(400, "invalid_json", f"body: {exc}", m)
            batch_raw = raw.get("batch") if isinstance(raw, dict) else None
            if isinstance(batch_raw, list) and len(batch_raw) > settings.max_batch_events:
                return _error(413, "too_large", f"batch: more than {settings.max_batch_events} events", m)
            try:
                events = validate_batch(raw, received, settings.max_batch_events, located_by)
            except ContractError as exc:
                return _error(400, "invalid", str(exc), m, exc.problems)
            wire = [(e["event_id"], encode_event(e), e["type"]) for e in events]
        outcome = await s.deliver(wire, settings.api_ack_timeout_seconds, received)
        if outcome is not None:
            detail = f"{outcome}; retry the whole batch (with messageIds a retry is stored once)"
            return _error(503, "unavailable", detail, m, headers=retry_after)
        # the Accepted model's JSON, encoded directly
        ids = [event_id for event_id, _, _ in wire]
        return Response(_ACCEPTED.encode({"accepted": len(ids), "event_ids": ids}), status_code=202,
                        media_type="application/json")


def _resume_erasures(eraser: Eraser) -> None:
    try:
        eraser.resume()
    except StoreUnavailable as exc:
        log.warning("unfinished erasure jobs not resumed", extra={"error": str(exc)})


def app_from_env() -> FastAPI:
    """uvicorn factory for ``footprint serve``: settings from the environment."""
    from footprint.logs import setup_logging

    settings = Settings()
    setup_logging(settings.log_level)
    return create_app(settings)
