"""The middleware for ASGI apps (FastAPI, Starlette, ...)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from footprint.track.record import PageRecorder
from footprint.track.senders import Sender

log = logging.getLogger("footprint.track")
Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class FootprintASGI:
    """``app = FootprintASGI(app, sender)``: one page event per HTTP request, never waiting, never failing."""

    def __init__(self, app: ASGIApp, sender: Sender, recorder: PageRecorder | None = None) -> None:
        self.app = app
        self.sender = sender
        self.recorder = recorder or PageRecorder()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            try:
                path = scope.get("path", "")
                if self.recorder.wanted(path, _header(scope, b"dnt"), _header(scope, b"sec-gpc")):
                    self.sender.send(self.recorder.page(
                        scope.get("method", ""), path, (scope.get("client") or ("", 0))[0] or "",
                        _header(scope, b"x-forwarded-for"), _header(scope, b"user-agent") or "",
                        _header(scope, b"referer"), query=scope.get("query_string", b"").decode("latin-1"),
                        host=_header(scope, b"host")))
            except Exception:  # tracking must never fail the request
                self.sender.dropped += 1
                log.exception("page event not recorded")
        await self.app(scope, receive, send)
