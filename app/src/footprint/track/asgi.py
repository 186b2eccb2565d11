"""The middleware for ASGI apps (FastAPI, Starlette, ...)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any

from footprint.track.record import PageRecorder, PageRequest
from footprint.track.senders import Sender

log = logging.getLogger("footprint.track")
Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]
_WANTED = frozenset((b"dnt", b"sec-gpc", b"x-forwarded-for", b"user-agent", b"referer", b"host"))


def _headers(scope: Scope) -> dict[bytes, str]:
    """The headers the page event reads, in one pass (the first of each name)."""
    found: dict[bytes, str] = {}
    for key, value in scope.get("headers", ()):
        if key in _WANTED and key not in found:
            found[key] = value.decode("latin-1")
    return found


class FootprintASGI:
    """``app = FootprintASGI(app, sender)``: one page event per HTTP request, never waiting, never failing.

    While the request comes in it keeps only the request's few fields; the event is built and handed
    to the sender once the app has returned, i.e. after the response was sent (or the app raised)."""

    def __init__(self, app: ASGIApp, sender: Sender, recorder: PageRecorder | None = None) -> None:
        self.app = app
        self.sender = sender
        self.recorder = recorder or PageRecorder()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        request = self._request(scope) if scope["type"] == "http" else None
        try:
            await self.app(scope, receive, send)
        finally:
            if request is not None:
                self.recorder.hand_over(request, self.sender)

    def _request(self, scope: Scope) -> PageRequest | None:
        try:
            path = scope.get("path", "")
            headers = _headers(scope)
            if not self.recorder.wanted(path, headers.get(b"dnt"), headers.get(b"sec-gpc")):
                return None
            return PageRequest(scope.get("method", ""), path, (scope.get("client") or ("", 0))[0] or "",
                               headers.get(b"x-forwarded-for"), headers.get(b"user-agent") or "",
                               headers.get(b"referer"), scope.get("query_string", b"").decode("latin-1"),
                               headers.get(b"host"), datetime.now(UTC))
        except Exception:  # tracking must never fail the request
            self.sender.dropped += 1
            log.exception("page event not recorded")
            return None
