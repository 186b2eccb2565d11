"""The middleware for WSGI apps (Flask, Django, ...)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from footprint.track.record import PageRecorder, PageRequest
from footprint.track.senders import Sender

log = logging.getLogger("footprint.track")
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class FootprintWSGI:
    """``app.wsgi_app = FootprintWSGI(app.wsgi_app, sender)``: one page event per request, never failing it.

    While the request comes in it keeps only the request's few fields; the event is built and handed
    to the sender when the server closes the response (PEP 3333: after it sent the body); at once when
    the app raises, or returns the server's ``wsgi.file_wrapper`` (kept as it is, so the server can
    still send the file itself)."""

    def __init__(self, app: WSGIApp, sender: Sender, recorder: PageRecorder | None = None) -> None:
        self.app = app
        self.sender = sender
        self.recorder = recorder or PageRecorder()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = self._request(environ)
        if request is None:
            return self.app(environ, start_response)
        try:
            body = self.app(environ, start_response)
        except BaseException:
            self.recorder.hand_over(request, self.sender)
            raise
        file_wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(file_wrapper, type) and isinstance(body, file_wrapper):  # the server sends the file itself
            self.recorder.hand_over(request, self.sender)
            return body
        return _ThenRecord(body, lambda: self.recorder.hand_over(request, self.sender))

    def _request(self, environ: dict[str, Any]) -> PageRequest | None:
        try:
            path = environ.get("PATH_INFO", "")
            if not (isinstance(path, str) and self.recorder.wanted(path, environ.get("HTTP_DNT"),
                                                                    environ.get("HTTP_SEC_GPC"))):
                return None
            return PageRequest(environ.get("REQUEST_METHOD", ""), _utf8(path), environ.get("REMOTE_ADDR", ""),
                               environ.get("HTTP_X_FORWARDED_FOR"), environ.get("HTTP_USER_AGENT", ""),
                               environ.get("HTTP_REFERER"), environ.get("QUERY_STRING", ""),
                               environ.get("HTTP_HOST"), datetime.now(UTC))
        except Exception:  # tracking must never fail the request
            self.sender.dropped += 1
            log.exception("page event not recorded")
            return None


class _ThenRecord:
    """The app's response body, unchanged; its ``close`` (which the server calls once the body is sent)
    closes the app's body, then records the page."""

    def __init__(self, body: Iterable[bytes], record: Callable[[], None]) -> None:
        self._body = body
        self._record = record

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def __len__(self) -> int:
        """The body's length where it has one (wsgiref sets Content-Length from a one-block body's); a
        body without one raises TypeError here too, which servers take as "unknown"."""
        return len(self._body)  # type: ignore[arg-type]

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._record()


def _utf8(path: str) -> str:
    """PEP 3333 servers hand PATH_INFO over as bytes decoded as latin-1; the path's text is UTF-8."""
    try:
        return path.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return path  # a server that already decoded it
