"""The read side of the API, on the collector (private keys only):

- ``GET /v1/events``: stored events, filtered, newest first, in pages (``query.py``);
- ``POST /v1/queries``: read-only SQL on the app database in ClickHouse (``sqlapi.py``);
- ``DELETE /v1/users/{userId}``: erase a user's events (``erasure.py``), ``GET /v1/erasures/{jobId}``.

Reads use ClickHouse's reader user; erasure the stores' owners. A public key (ingest only) gets
403, a missing or unknown key 401, bad input a 4xx naming the parameter; a store that cannot be
reached is a 503.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel

from footprint import csvexport, sqlapi
from footprint import query as events_query
from footprint.auth import Signer, authorized, key_bytes
from footprint.contract import SHORT_MAX_CHARS, loads, outbound
from footprint.erasure import Eraser
from footprint.settings import ClickHouseSettings, QuerySettings, Settings
from footprint.stores import StoreUnavailable, ch_client

log = logging.getLogger("footprint.readapi")

Error = Callable[..., JSONResponse]


class EventsPage(BaseModel):
    data: list[dict[str, Any]]
    next: str | None


class QueryBody(BaseModel):
    sql: str


class QueryAnswer(BaseModel):
    columns: list[str]
    types: list[str]
    rows: list[list[Any]]
    rows_count: int
    elapsed_ms: float


class ErasureJob(BaseModel):
    jobId: str
    status: str


class Reader:
    """One ClickHouse client of the reader user, made on first use and again after a failure."""

    def __init__(self, settings: ClickHouseSettings) -> None:
        self.settings = settings
        self._client: Any = None
        self._lock = threading.Lock()

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = ch_client(self.settings, "reader")
            return self._client

    def reset(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
            self._client = None


def add_read_routes(app: FastAPI, settings: Settings, eraser: Eraser, error: Error) -> None:
    """The read side's routes on ``app``: the CSV export, the events' pages, the SQL endpoint, erasure."""
    reader = Reader(settings)
    gate = _Gate(key_bytes(settings.private_keys), key_bytes(settings.api_keys), reader, error,
                 settings.retry_after_seconds)
    signer = Signer.from_settings(settings, "events-cursor")
    _add_export_route(app, settings, reader, signer, gate)
    _add_events_route(app, settings, reader, signer, gate)
    _add_query_route(app, settings, reader, gate)
    _add_erasure_routes(app, eraser, gate)


_CODES = {400: "a filter, the limit or the cursor is invalid (named)", 401: "missing or unknown key",
          403: "a public key", 503: "ClickHouse cannot be reached"}
_RESPONSES: dict[int | str, dict[str, Any]] = {c: {"description": d} for c, d in _CODES.items()}


@dataclass(frozen=True)
class _Gate:
    """What every read route answers before and instead of its work: who may ask (a private key
    only), the error answer, and a 503 when a store cannot be reached."""

    private: list[bytes]
    public: list[bytes]
    reader: Reader
    error: Error
    retry_after_seconds: int

    def denied(self, request: Request) -> JSONResponse | None:
        header = request.headers.get("authorization")
        if authorized(header, self.private):
            return None
        if authorized(header, self.public):
            return self.error(403, "forbidden", "a public key may only send events; this endpoint needs a private key")
        return self.error(401, "unauthorized", "missing or invalid bearer key (a private key)")

    def unavailable(self, exc: Exception) -> JSONResponse:
        self.reader.reset()
        log.warning("store unavailable for a read", extra={"error": str(exc)[:300]})
        return self.error(503, "unavailable", "the store cannot be reached now; retry later",
                          headers={"Retry-After": str(self.retry_after_seconds)})


def _add_events_route(app: FastAPI, settings: QuerySettings, reader: Reader, signer: Signer, gate: _Gate) -> None:
    error = gate.error

    @app.get("/v1/events", response_model=EventsPage, responses=_RESPONSES)
    def list_events(request: Request) -> JSONResponse:
        """Stored events, newest first. Filters: ``event``, ``type``, ``userId``, ``anonymousId``, ``groupId``,
        ``link`` (a path prefix), ``since``/``until`` (RFC 3339), ``properties.KEY=VALUE`` (equality, up to 5),
        ``synthetic`` (false by default); ``limit`` 1..1000 (100); ``cursor``: the ``next`` of the previous page."""
        refused = gate.denied(request)
        if refused is not None:
            return refused
        params = request.query_params
        try:
            q = events_query.parse(dict(params), [k for k, _ in params.multi_items()], signer)
        except events_query.BadFilter as exc:
            return error(400, "invalid", str(exc))
        try:
            rows = events_query.page_rows(q, datetime.now(UTC), lambda sql, values: reader.client().query(
                sql, parameters=values, settings=sqlapi.limits(settings)).result_rows)
        except StoreUnavailable as exc:
            return gate.unavailable(exc)
        except Exception as exc:
            if "Code: " in str(exc):  # ClickHouse refused the query: a limit (too slow, too big)
                refused_q = sqlapi.refusal(exc)
                return error(refused_q.status, refused_q.error, refused_q.detail)
            return gate.unavailable(exc)
        events = [events_query.row_to_event(r) for r in rows[:q.limit]]
        more = len(rows) > q.limit
        cursor = events_query.next_cursor(events[-1], q, signer) if more else None
        return JSONResponse(EventsPage(data=[outbound(e) for e in events], next=cursor).model_dump())


def _add_query_route(app: FastAPI, settings: Settings, reader: Reader, gate: _Gate) -> None:
    error = gate.error

    @app.post("/v1/queries", response_model=QueryAnswer,
              responses={413: {"description": "SQL too long"}, 422: {"description": "a limit was reached (named)"},
                         **_RESPONSES})
    async def run_query(request: Request) -> JSONResponse:
        """Read-only SQL (one SELECT) on the app database in ClickHouse, as the reader user, with
        ``readonly=1``, a time limit and result row/byte limits. A refusal names its reason."""
        refused = gate.denied(request)
        if refused is not None:
            return refused
        body = await request.body()
        if len(body) > settings.query_max_sql_bytes * 2 + 1024:
            return error(413, "too_large", f"sql: longer than {settings.query_max_sql_bytes} bytes")
        try:
            raw = loads(body)
        except ValueError as exc:
            return error(400, "invalid_json", f"body: {exc}")
        if not isinstance(raw, dict) or set(raw) != {"sql"} or not isinstance(raw["sql"], str):
            return error(400, "invalid", 'body: {"sql": "SELECT ..."} and nothing else')
        try:
            result = await asyncio.to_thread(_run_sql, reader, raw["sql"], settings)
        except sqlapi.QueryRefused as exc:
            return error(exc.status, exc.error, exc.detail)
        except Exception as exc:
            return gate.unavailable(exc)
        answer = QueryAnswer(columns=result.columns, types=result.types, rows=result.rows, rows_count=len(result.rows),
                             elapsed_ms=round(result.elapsed_ms, 2))
        return JSONResponse(answer.model_dump(mode="json"))


def _add_erasure_routes(app: FastAPI, eraser: Eraser, gate: _Gate) -> None:
    error = gate.error

    @app.delete("/v1/users/{userId}", status_code=202, response_model=ErasureJob, responses=_RESPONSES)
    def erase_user(request: Request, userId: str) -> JSONResponse:
        """Erase every event of ``userId`` from PostgreSQL and ClickHouse (a job: read its status with
        ``GET /v1/erasures/{jobId}``); events of that user still in Kafka are dropped when they arrive."""
        refused = gate.denied(request)
        if refused is not None:
            return refused
        if not userId or len(userId) > SHORT_MAX_CHARS or "\x00" in userId:
            return error(400, "invalid", f"userId: 1..{SHORT_MAX_CHARS} characters, no NUL")
        try:
            job = eraser.request(userId)
        except StoreUnavailable as exc:
            return gate.unavailable(exc)
        return JSONResponse(ErasureJob(jobId=job, status="pending").model_dump(), status_code=202)

    @app.get("/v1/erasures/{jobId}", responses={404: {"description": "no such job"}, **_RESPONSES})
    def erasure_status(request: Request, jobId: str) -> JSONResponse:
        """An erasure job: ``status`` pending, running, done or failed, and the rows deleted per store."""
        refused = gate.denied(request)
        if refused is not None:
            return refused
        try:
            jobId = str(uuid.UUID(jobId))
        except ValueError:
            return error(400, "invalid", "jobId: a UUID (as DELETE /v1/users/{userId} returned)")
        try:
            status = eraser.status(jobId)
        except StoreUnavailable as exc:
            return gate.unavailable(exc)
        if status is None:
            return error(404, "not_found", "no erasure job with this id")
        return JSONResponse(status)


def _add_export_route(app: FastAPI, settings: QuerySettings, reader: Reader, signer: Signer, gate: _Gate) -> None:
    error = gate.error

    @app.get("/v1/events.csv", response_class=StreamingResponse,
             responses={200: {"content": {"text/csv": {}}, "description": "every matching event, newest first"},
                        400: {"description": "a filter is invalid (named), or limit / cursor given"},
                        401: {"description": "missing or unknown key"}, 403: {"description": "a public key"},
                        503: {"description": "ClickHouse cannot be reached"}})
    def export_events(request: Request) -> Response:
        """Every stored event of the filters of ``GET /v1/events`` (the same ones; no ``limit``, no ``cursor``) as
        CSV (``csvexport.EVENT_COLUMNS``), newest first, streamed: read from ClickHouse a page at a time (up to
        1000 events, within the reader's row cap) as it is sent, so an export of any size holds one page in
        memory. A store failing halfway ends the answer without its last chunk (the client sees a cut
        transfer, never a short file that looks whole)."""
        refused = gate.denied(request)
        if refused is not None:
            return refused
        params = request.query_params
        paged = [name for name in ("limit", "cursor") if name in params]
        if paged:
            return error(400, "invalid", f"{paged[0]}: an export is every matching event; {paged[0]} is for the pages"
                                         " of GET /v1/events")
        try:
            q = events_query.parse(dict(params), [k for k, _ in params.multi_items()], signer)
        except events_query.BadFilter as exc:
            return error(400, "invalid", str(exc))

        def run(sql: str, values: dict[str, Any]) -> Any:
            return reader.client().query(sql, parameters=values, settings=sqlapi.limits(settings)).result_rows

        size = csvexport.page_size(settings.query_max_result_rows)
        rows = csvexport.events(q, datetime.now(UTC), run, size)
        try:  # the first page before the answer starts: a store down is still a 503
            first = next(rows, None)
        except Exception as exc:
            return gate.unavailable(exc)
        body = csvexport.stream(csvexport.EVENT_COLUMNS, itertools.chain([] if first is None else [first], rows))
        return StreamingResponse(body, media_type="text/csv; charset=utf-8",
                                 headers={"Content-Disposition": 'attachment; filename="events.csv"',
                                          "Cache-Control": "no-store"})


def _run_sql(reader: Reader, sql: str, settings: Settings) -> sqlapi.QueryResult:
    return sqlapi.run(reader.client(), sql, settings)
