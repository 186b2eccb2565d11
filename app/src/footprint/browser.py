"""The browser snippet (``GET /f.js``) and its ingest endpoint (``POST /v1/b``).

The snippet sends ``{"key": PUBLIC_KEY, "batch": [...]}`` as ``text/plain`` (a CORS-safelisted
type: no preflight, and ``navigator.sendBeacon`` can send it). The endpoint answers CORS for the
configured site origins only (``FOOTPRINT_SITE_ORIGINS``); a request from any other origin is
refused with 403 and produces nothing. The visitor is always the collector's own daily-salted id
(``visitors.py``): the page cannot choose it, nor the country (the browser's address decides it:
``context.ip`` and ``context.location`` are dropped). Events then follow exactly the ``/v1/events`` rules.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from footprint.contract import ContractError, encode_event, loads, validate_batch
from footprint.settings import CollectorSettings

SNIPPET = "f.js"
MAX_BROWSER_BODY = 64 * 1024


def allowed_origins(settings: CollectorSettings) -> frozenset[str]:
    return frozenset(o.strip().rstrip("/") for o in settings.site_origins.split(",") if o.strip())


def add_browser_routes(
    app: FastAPI,
    settings: CollectorSettings,
    deliver: Callable[[list[tuple[str, bytes, str]], datetime], Awaitable[str | None]],  # events, received_at
    visitor: Callable[[Any], str],
    enrich: Callable[[Any], Callable[[Any], dict[str, Any]]],  # scope -> the request's enrichment (its country)
    authorized: Callable[[str], bool],
    error: Callable[..., JSONResponse],
) -> None:
    script = (resources.files("footprint") / "static" / SNIPPET).read_bytes()
    origins = allowed_origins(settings)

    @app.get("/f.js", response_class=Response,
             responses={200: {"content": {"application/javascript": {}}, "description": "the browser snippet"}})
    async def snippet() -> Response:
        """The browser snippet: page views (SPA navigation included) and ``footprint.track()``."""
        return Response(script, media_type="application/javascript",
                        headers={"Cache-Control": "public, max-age=3600"})

    def cors(request: Request) -> dict[str, str] | None:
        origin = request.headers.get("origin", "").rstrip("/")
        if origin not in origins:
            return None
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin",
                "Access-Control-Allow-Methods": "POST", "Access-Control-Allow-Headers": "Content-Type",
                "Access-Control-Max-Age": "86400"}

    @app.options("/v1/b", status_code=204, responses={403: {"description": "origin not allowed"}})
    async def preflight(request: Request) -> Response:
        headers = cors(request)
        return Response(status_code=204 if headers else 403, headers=headers)

    @app.post("/v1/b", status_code=202, responses={
        400: {"description": "the body breaks the event contract"}, 401: {"description": "wrong key"},
        403: {"description": "the page's origin is not one of FOOTPRINT_SITE_ORIGINS"},
        413: {"description": "body too large"}, 503: {"description": "Kafka did not acknowledge"},
    }, openapi_extra={"requestBody": {"required": True, "content": {"text/plain": {"schema": {
        "type": "string", "description": 'JSON: {"key": PUBLIC_KEY, "batch": [events as in /v1/events]}'}}}}})
    async def ingest(request: Request) -> Response:
        """What the snippet sends. CORS for the configured site origins only."""
        headers = cors(request)
        if headers is None:
            return error(403, "forbidden_origin", "this page's origin may not send events here")

        def fail(status: int, kind: str, detail: str, problems: Any = None) -> JSONResponse:
            return error(status, kind, detail, problems, headers=headers)

        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BROWSER_BODY:
                return fail(413, "too_large", f"body exceeds {MAX_BROWSER_BODY} bytes")
        try:
            raw = loads(body)
        except ValueError as exc:
            return fail(400, "invalid_json", f"body: {exc}")
        if not isinstance(raw, dict) or not isinstance(raw.get("key"), str) or not authorized(raw["key"]):
            return fail(401, "unauthorized", "missing or invalid key")
        batch = raw.get("batch")
        if isinstance(batch, list):
            anonymous = visitor(request.scope)
            user_agent = request.headers.get("user-agent", "")
            for item in batch:
                if isinstance(item, dict):
                    item["anonymousId"] = anonymous  # the collector's daily id, never the page's
                    context = item.setdefault("context", {})
                    if isinstance(context, dict):
                        context["userAgent"] = user_agent  # the browser's own, for browser/OS/device/bot
                        for named in ("ip", "location"):  # the country: the browser's address, never the page's
                            context.pop(named, None)
        try:
            received = datetime.now(UTC)  # every event's received_at, and its message's Kafka timestamp
            wire = validate_batch({"batch": batch}, received, settings.max_batch_events, enrich(request.scope))
        except ContractError as exc:
            return fail(400, "invalid", str(exc), exc.problems)
        outcome = await deliver([(e["event_id"], encode_event(e), e["type"]) for e in wire], received)
        if outcome is not None:
            return fail(503, "unavailable", outcome)
        return Response(status_code=202, headers=headers)
