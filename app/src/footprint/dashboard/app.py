"""The dashboard service: login, the page, and the JSON behind its charts.

It holds reader credentials only (PostgreSQL reader, ClickHouse reader) and the secrets to check a
login against: a private key (``FOOTPRINT_PRIVATE_KEYS``) or the dashboard password
(``FOOTPRINT_DASHBOARD_PASSWORD``). A login sets a signed session cookie (HttpOnly,
SameSite=Strict, expiring after ``dashboard_session_hours``) naming a session that logout ends on
the server; every ``/api/`` answer needs it, ``/api/health`` (the Health panel, asked of Prometheus
here: ``health.py``) too. Login attempts are throttled per client address and
overall (``guard.py``).
"""

from __future__ import annotations

import asyncio
import secrets as random_tokens
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from footprint import __version__
from footprint.auth import Signer, key_bytes, matches
from footprint.dashboard.guard import LoginThrottle, Revoked
from footprint.dashboard.health import Cached, collect
from footprint.schema import EVENT_TYPES, TEXT_MAX_BYTES
from footprint.settings import Settings
from footprint.stats import AUDIENCE, LIVE_MINUTES, Filter, run_clickhouse, run_stats
from footprint.stores import StoreUnavailable, ch_client
from footprint.visitors import client_address, parse_networks

COOKIE = "footprint_session"
RANGES = {"1": 1, "7": 7, "30": 30, "90": 90, "365": 365, "all": 0}
TOP = 10
_TYPES = {"png": "image/png", "svg": "image/svg+xml", "js": "application/javascript", "css": "text/css",
          "html": "text/html; charset=utf-8", "md": "text/markdown; charset=utf-8"}
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
                               " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class BadFilter(ValueError):
    pass


FILTER_PARAMETERS = ("range", "type", "link", *AUDIENCE)
NONE = "(none)"  # an audience value in the URL standing for "nothing known" (no referrer, no user agent)


def parse_filter(params: dict[str, str], today: datetime | None = None) -> Filter:
    """``range`` (days: 1, 7, 30, 90, 365 or all), ``type`` (an event type or all), ``link`` (a prefix),
    ``source`` (a referrer host), ``device``, ``browser``, ``os``: each an exact value, ``(none)`` for
    nothing known, empty or absent for every value."""
    unknown = set(params) - set(FILTER_PARAMETERS)
    if unknown:
        raise BadFilter(f"unknown parameter {sorted(unknown)[0]!r} ({', '.join(FILTER_PARAMETERS)})")
    days = RANGES.get(params.get("range", "30"))
    if days is None:
        raise BadFilter(f"range: one of {', '.join(RANGES)}")
    kind = params.get("type", "page")
    if kind != "all" and kind not in EVENT_TYPES:
        raise BadFilter(f"type: one of {', '.join(EVENT_TYPES)} or all")
    link = params.get("link", "")
    if len(link.encode("utf-8", "replace")) > TEXT_MAX_BYTES or "\x00" in link:
        raise BadFilter(f"link: a prefix of at most {TEXT_MAX_BYTES} bytes")
    audience = {name: "" if value == NONE else value for name in AUDIENCE if (value := params.get(name))}
    day = (today or datetime.now(UTC)).date()
    since = day - timedelta(days=days - 1) if days else Filter().since
    try:
        return Filter(since=since, until=day + timedelta(days=1), type="" if kind == "all" else kind, link=link,
                      top=TOP, **audience)
    except ValueError as exc:  # an audience value too long or holding a NUL
        raise BadFilter(str(exc)) from None


# the statistics the page draws from /api/stats (the live chart has /api/live; the stores panel compares all)
CHARTS = ("views_per_day", "unique_visitors_per_day", "top_links", "methods", "top_events", "referrers", "utm_sources",
          "utm_mediums", "utm_campaigns", "browsers", "operating_systems", "devices", "bots_per_day", "bot_agents")
# the Visits panel's statistics, also from /api/stats: figures and two lists, no chart
VISITS = ("visits", "entry_pages", "exit_pages")


def _static(name: str) -> bytes | None:
    for folder in (resources.files("footprint") / "dashboard" / "static", resources.files("footprint") / "static"
                   / "vendor"):
        path = folder / name
        if path.is_file():
            return path.read_bytes()
    return None


def create_dashboard(settings: Settings) -> FastAPI:
    app = FastAPI(title="footprint dashboard", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    secrets = key_bytes(settings.private_keys)
    if settings.dashboard_password.get_secret_value():
        secrets.append(settings.dashboard_password.get_secret_value().encode())
    sessions = Signer.from_settings(settings, "dashboard-session")
    max_age = int(settings.dashboard_session_hours * 3600)
    throttle = LoginThrottle()
    revoked = Revoked()
    trusted = parse_networks(settings.trusted_proxies)
    health = Cached(lambda: collect(settings), settings.dashboard_health_cache_seconds)

    def session_id(request: Request) -> str | None:
        """The id of the request's valid, unrevoked session, or None."""
        token = request.cookies.get(COOKIE, "")
        payload = sessions.verify_expiring(token) if token else None
        kind, _, sid = (payload or "").partition(":")
        return sid if kind == "dashboard" and sid and sid not in revoked else None

    def signed_in(request: Request) -> bool:
        return session_id(request) is not None

    def page(name: str, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        body = _static(name) or b""
        if status == 401:  # the login page, saying why
            body = body.replace(b'id="failed" class="failed" hidden', b'id="failed" class="failed"')
        elif status == 429:
            body = body.replace(b'id="throttled" class="failed" hidden', b'id="throttled" class="failed"')
        return Response(body, status_code=status, media_type=_TYPES["html"], headers={**_HEADERS, **(headers or {})})

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        """200 when ClickHouse answers the reader user, else 503 (the role's health gate)."""
        try:
            client = ch_client(settings, "reader")
            try:
                client.command("SELECT 1")
            finally:
                client.close()
        except StoreUnavailable as exc:
            return JSONResponse({"status": "unavailable", "clickhouse": str(exc), "version": __version__}, 503)
        return JSONResponse({"status": "ok", "version": __version__})

    @app.get("/")
    def index(request: Request) -> Response:
        if not signed_in(request):
            return RedirectResponse("/login", status_code=303, headers=_HEADERS)
        return page("index.html")

    @app.get("/login")
    def login_page() -> Response:
        return page("login.html")

    @app.post("/login")
    async def login(request: Request) -> Response:
        client = client_address(request.client.host if request.client else "", request.headers.get("x-forwarded-for"),
                                trusted)
        wait = throttle.admit(client)  # counted before the comparison: parallel guesses are refused too
        if wait:
            return page("login.html", status=429, headers={"Retry-After": str(int(wait) + 1)})
        body = await request.body()
        fields = parse_qs(body[:4096].decode("utf-8", "replace")) if len(body) <= 4096 else {}
        secret = (fields.get("secret") or [""])[0]
        if not matches(secret, secrets):
            await asyncio.sleep(0.5)  # slows guessing; the comparison itself is constant-time
            return page("login.html", status=401)
        throttle.succeeded(client)
        response = RedirectResponse("/", status_code=303, headers=_HEADERS)
        token = sessions.sign_expiring(f"dashboard:{random_tokens.token_urlsafe(18)}", max_age)
        response.set_cookie(COOKIE, token, max_age=max_age, httponly=True,
                            samesite="strict", secure=request.url.scheme == "https", path="/")
        return response

    @app.post("/logout")
    def logout(request: Request) -> Response:
        sid = session_id(request)
        if sid is not None:  # ended here: the cookie opens nothing any more, even if kept
            revoked.add(sid, max_age)
        response = RedirectResponse("/login", status_code=303, headers=_HEADERS)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(_static("favicon.svg") or b"", media_type=_TYPES["svg"],
                        headers={**_HEADERS, "Cache-Control": "public, max-age=86400"})

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        body = _static(name) if "/" not in name and not name.startswith(".") else None
        if body is None:
            return JSONResponse({"error": "not_found"}, 404)
        kind = _TYPES.get(name.rsplit(".", 1)[-1], "application/octet-stream")
        return Response(body, media_type=kind, headers={**_HEADERS, "Cache-Control": "public, max-age=3600"})

    def unauthorized() -> JSONResponse:
        return JSONResponse({"error": "unauthorized", "detail": "log in first"}, 401, headers=_HEADERS)

    def api(request: Request) -> Filter | JSONResponse:
        if not signed_in(request):
            return unauthorized()
        try:
            return parse_filter(dict(request.query_params))
        except BadFilter as exc:
            return JSONResponse({"error": "invalid", "detail": str(exc)}, 400, headers=_HEADERS)

    def unavailable(exc: Exception) -> JSONResponse:
        return JSONResponse({"error": "unavailable", "detail": str(exc)[:300]}, 503, headers=_HEADERS)

    def described(f: Filter) -> dict[str, Any]:
        return {**asdict(f), "since": f.since.isoformat(), "until": f.until.isoformat()}

    @app.get("/api/stats")
    def stats(request: Request) -> JSONResponse:
        """The charts' and the Visits panel's statistics of the filter on ClickHouse (its rollup answers the
        charts in milliseconds), and the visits' timeout."""
        f = api(request)
        if isinstance(f, JSONResponse):
            return f
        try:
            charts = run_clickhouse(settings, f, CHARTS + VISITS)
        except Exception as exc:  # a store down or failing: the page says so and retries
            return unavailable(exc)
        return JSONResponse({"filter": described(f), "charts": charts,
                             "session_timeout_minutes": settings.session_timeout_minutes}, headers=_HEADERS)

    @app.get("/api/stores")
    def stores(request: Request) -> JSONResponse:
        """Every statistic of the filter on both stores, for the stores panel: both timings and whether the
        answers are the same. Asked after the charts are drawn (PostgreSQL takes seconds at millions of events)."""
        f = api(request)
        if isinstance(f, JSONResponse):
            return f
        try:
            results = run_stats(settings, f.since, f.until, f=f)
        except Exception as exc:
            return unavailable(exc)
        return JSONResponse({"filter": described(f), "stores": [
            {"query": r.name, "postgres_ms": round(r.pg_ms, 2), "clickhouse_ms": round(r.ch_ms, 2), "same": r.same,
             "postgres_rows": len(r.pg_rows), "clickhouse_rows": len(r.ch_rows)} for r in results]},
            headers=_HEADERS)

    @app.get("/api/live")
    def live(request: Request) -> JSONResponse:
        """Events per minute over the last hour (ClickHouse), for the chart refreshed every few seconds."""
        f = api(request)
        if isinstance(f, JSONResponse):
            return f
        try:
            rows = run_clickhouse(settings, f, ("live_per_minute",))["live_per_minute"]
        except Exception as exc:
            return unavailable(exc)
        return JSONResponse({"minutes": LIVE_MINUTES, "refresh_seconds": settings.dashboard_refresh_seconds,
                             "rows": rows, "now": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M")}, headers=_HEADERS)

    @app.get("/api/health")
    def health_panel(request: Request) -> JSONResponse:
        """The Health panel: the pipeline's state from Prometheus (asked here, never by the browser; the
        answers are kept ``dashboard_health_cache_seconds``). Always 200: Prometheus off or unreachable
        is part of the answer."""
        if not signed_in(request):
            return unauthorized()
        return JSONResponse({**health.get().as_json(), "refresh_seconds": settings.dashboard_refresh_seconds},
                            headers=_HEADERS)

    return app


def app_from_env() -> FastAPI:
    """uvicorn factory for ``footprint dashboard``: settings from the environment."""
    from footprint.logs import setup_logging

    settings = Settings()
    setup_logging(settings.log_level)
    return create_dashboard(settings)
