"""The middleware for WSGI apps (Flask, Django, ...)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from footprint.track.record import PageRecorder
from footprint.track.senders import Sender

log = logging.getLogger("footprint.track")
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class FootprintWSGI:
    """``app.wsgi_app = FootprintWSGI(app.wsgi_app, sender)``: one page event per request, never failing it."""

    def __init__(self, app: WSGIApp, sender: Sender, recorder: PageRecorder | None = None) -> None:
        self.app = app
        self.sender = sender
        self.recorder = recorder or PageRecorder()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            path = environ.get("PATH_INFO", "")
            if isinstance(path, str) and self.recorder.wanted(path, environ.get("HTTP_DNT"),
                                                               environ.get("HTTP_SEC_GPC")):
                self.sender.send(self.recorder.page(
                    environ.get("REQUEST_METHOD", ""), _utf8(path), environ.get("REMOTE_ADDR", ""),
                    environ.get("HTTP_X_FORWARDED_FOR"), environ.get("HTTP_USER_AGENT", ""),
                    environ.get("HTTP_REFERER"), query=environ.get("QUERY_STRING", ""),
                    host=environ.get("HTTP_HOST")))
        except Exception:  # tracking must never fail the request
            self.sender.dropped += 1
            log.exception("page event not recorded")
        return self.app(environ, start_response)


def _utf8(path: str) -> str:
    """PEP 3333 servers hand PATH_INFO over as bytes decoded as latin-1; the path's text is UTF-8."""
    try:
        return path.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return path  # a server that already decoded it
