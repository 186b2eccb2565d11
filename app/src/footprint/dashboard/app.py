"""The dashboard service: login, the page, share links, and the JSON and CSV behind its panels.

It holds reader credentials only (PostgreSQL reader, ClickHouse reader) and the secrets to check a
login against: a private key (``FOOTPRINT_PRIVATE_KEYS``) or the dashboard password
(``FOOTPRINT_DASHBOARD_PASSWORD``). A login sets a signed session cookie (HttpOnly,
SameSite=Strict, expiring after ``dashboard_session_hours``) naming a session that logout ends on
the server; every ``/api/`` answer needs it, ``/api/health`` (the Health panel, asked of Prometheus
here: ``health.py``) too. Login attempts are throttled per client address and
overall (``guard.py``). The panels' data (``api.py``) answer a session's filter under ``/api/`` and a share
link's (``share.py``: signed, expiring, read-only, no login) under ``/share/TOKEN/api/``.
"""

from __future__ import annotations

import asyncio
import html
import secrets as random_tokens
from functools import partial
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from footprint import __version__, goalstore
from footprint.auth import Signer, key_bytes, matches
from footprint.contract import loads
from footprint.dashboard.api import add_data_routes
from footprint.dashboard.goalsapi import add_goal_routes
from footprint.dashboard.guard import LoginThrottle, Revoked
from footprint.dashboard.health import Cached, collect
from footprint.dashboard.revocations import Revocations
from footprint.dashboard.share import ShareLinks, ShareRefused
from footprint.dashboard.view import CHARTS, VISITS, BadFilter, View, parse_filter
from footprint.dashboard.web import HEADERS, TYPES, static
from footprint.settings import Settings
from footprint.stores import StoreUnavailable, ch_client
from footprint.visitors import client_address, parse_networks

COOKIE = "footprint_session"
# the names tests and other modules import from here
__all__ = ["CHARTS", "VISITS", "BadFilter", "create_dashboard", "parse_filter"]


def page(name: str, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = static(name) or b""
    if status == 401:  # the login page, saying why
        body = body.replace(b'id="failed" class="failed" hidden', b'id="failed" class="failed"')
    elif status == 429:
        body = body.replace(b'id="throttled" class="failed" hidden', b'id="throttled" class="failed"')
    return Response(body, status_code=status, media_type=TYPES["html"], headers={**HEADERS, **(headers or {})})


def error(status: int, kind: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": kind, "detail": detail}, status, headers=HEADERS)


class Sessions:
    """The login's signed session cookies and the sessions ended by a logout."""

    def __init__(self, settings: Settings) -> None:
        self.signer = Signer.from_settings(settings, "dashboard-session")
        self.max_age = int(settings.dashboard_session_hours * 3600)
        self.revoked = Revoked()
        self.goals = partial(goalstore.goal, settings)

    def session_id(self, request: Request) -> str | None:
        """The id of the request's valid, unrevoked session, or None."""
        token = request.cookies.get(COOKIE, "")
        payload = self.signer.verify_expiring(token) if token else None
        kind, _, sid = (payload or "").partition(":")
        return sid if kind == "dashboard" and sid and sid not in self.revoked else None

    def signed_in(self, request: Request) -> bool:
        return self.session_id(request) is not None

    def view(self, request: Request) -> View | Response:
        """A signed-in user's view: every panel, the filter of the request's query."""
        if not self.signed_in(request):
            return error(401, "unauthorized", "log in first")
        try:
            return View.of(dict(request.query_params), goals=self.goals)
        except BadFilter as exc:
            return error(400, "invalid", str(exc))
        except Exception as exc:  # the goals' definitions unreadable (PostgreSQL down)
            return error(503, "unavailable", str(exc)[:300])


def create_dashboard(settings: Settings) -> FastAPI:
    app = FastAPI(title="footprint dashboard", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    sessions = Sessions(settings)
    links = ShareLinks(settings, Revocations(settings), partial(goalstore.goal, settings))
    _add_pages(app, settings)
    _add_login(app, settings, sessions)
    add_data_routes(app, settings, "", sessions.view)
    add_data_routes(app, settings, "/share/{token}", lambda request: _shared_view(links, request))
    _add_share(app, sessions, links)
    add_goal_routes(app, settings, sessions.signed_in)
    health = Cached(lambda: collect(settings), settings.dashboard_health_cache_seconds)

    @app.get("/")
    def index(request: Request) -> Response:
        if not sessions.signed_in(request):
            return RedirectResponse("/login", status_code=303, headers=HEADERS)
        return page("index.html")

    @app.get("/api/health")
    def health_panel(request: Request) -> JSONResponse:
        """The Health panel: the pipeline's state from Prometheus (asked here, never by the browser; the
        answers are kept ``dashboard_health_cache_seconds``). Always 200: Prometheus off or unreachable
        is part of the answer. Never shared."""
        if not sessions.signed_in(request):
            return error(401, "unauthorized", "log in first")
        return JSONResponse({**health.get().as_json(), "refresh_seconds": settings.dashboard_refresh_seconds},
                            headers=HEADERS)

    return app


def _add_pages(app: FastAPI, settings: Settings) -> None:
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

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(static("favicon.svg") or b"", media_type=TYPES["svg"],
                        headers={**HEADERS, "Cache-Control": "public, max-age=86400"})

    @app.get("/static/{name}")
    def static_file(name: str) -> Response:
        body = static(name) if "/" not in name and not name.startswith(".") else None
        if body is None:
            return JSONResponse({"error": "not_found"}, 404)
        kind = TYPES.get(name.rsplit(".", 1)[-1], "application/octet-stream")
        return Response(body, media_type=kind, headers={**HEADERS, "Cache-Control": "public, max-age=3600"})


def _add_login(app: FastAPI, settings: Settings, sessions: Sessions) -> None:
    secrets = key_bytes(settings.private_keys)
    if settings.dashboard_password.get_secret_value():
        secrets.append(settings.dashboard_password.get_secret_value().encode())
    throttle = LoginThrottle()
    trusted = parse_networks(settings.trusted_proxies)

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
        response = RedirectResponse("/", status_code=303, headers=HEADERS)
        token = sessions.signer.sign_expiring(f"dashboard:{random_tokens.token_urlsafe(18)}", sessions.max_age)
        response.set_cookie(COOKIE, token, max_age=sessions.max_age, httponly=True,
                            samesite="strict", secure=request.url.scheme == "https", path="/")
        return response

    @app.post("/logout")
    def logout(request: Request) -> Response:
        sid = sessions.session_id(request)
        if sid is not None:  # ended here: the cookie opens nothing any more, even if kept
            sessions.revoked.add(sid, sessions.max_age)
        response = RedirectResponse("/login", status_code=303, headers=HEADERS)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response


def _shared_view(links: ShareLinks, request: Request) -> View | Response:
    """A share link's view (its filter and panels, whatever the request's query says), or its refusal."""
    try:
        return links.open(request.path_params["token"])
    except ShareRefused as exc:
        return error(exc.status, exc.kind, str(exc))


def _add_share(app: FastAPI, sessions: Sessions, links: ShareLinks) -> None:
    @app.post("/api/share")
    async def make_link(request: Request) -> JSONResponse:
        """A share link of a signed-in user's view: ``{"query", "panels", "expires_seconds"}`` ->
        ``{"url": "/share/TOKEN", "expires_at"}``."""
        if not sessions.signed_in(request):
            return error(401, "unauthorized", "log in first")
        body = await request.body()
        try:
            return JSONResponse(links.make(loads(body) if len(body) <= 16384 else None).as_json(), headers=HEADERS)
        except ValueError as exc:  # BadFilter, or not JSON
            return error(400, "invalid", str(exc))

    @app.post("/api/share/revoke")
    async def revoke_link(request: Request) -> JSONResponse:
        """Revoke a share link before its end: ``{"url": "/share/TOKEN"}`` -> ``{"revoked_at", "expires_at"}``;
        from then on it opens nothing (410). 400 no link named, 403 not a link of this dashboard, 410 ended or
        revoked already."""
        if not sessions.signed_in(request):
            return error(401, "unauthorized", "log in first")
        body = await request.body()
        try:
            return JSONResponse(links.revoke(loads(body) if len(body) <= 16384 else None), headers=HEADERS)
        except ShareRefused as exc:
            return error(exc.status, exc.kind, str(exc))
        except ValueError as exc:  # BadFilter, or not JSON
            return error(400, "invalid", str(exc))

    @app.get("/share/{token}")
    def shared_page(token: str) -> Response:
        """The dashboard, read-only, for a share link's viewer (no login); a refused link: a page saying why."""
        try:
            links.open(token)
        except ShareRefused as exc:
            body = (static("login.html") or b"").replace(  # the reason, above the login for the link's owner
                b'<p id="refused" class="failed" hidden></p>',
                b'<p id="refused" class="failed">' + html.escape(str(exc)).encode() + b"</p>")
            return Response(body, status_code=exc.status, media_type=TYPES["html"], headers=HEADERS)
        return page("index.html")


def app_from_env() -> FastAPI:
    """uvicorn factory for ``footprint dashboard``: settings from the environment."""
    from footprint.logs import setup_logging

    settings = Settings()
    setup_logging(settings.log_level)
    return create_dashboard(settings)
