"""Share links: a read-only dashboard for a set of panels and a filter, opened without a login until it expires.

A link is ``/share/TOKEN``: the token holds the filter (the address's query), the panels and the end
(Unix seconds), signed with HMAC-SHA-256 by ``auth.Signer`` under its own purpose (``dashboard-share``), with
the key the deployment already has: derived from the private keys and the dashboard password (as the
session cookie's). Nothing of a link is stored; its owner can revoke it before its end (``revoke``: its id,
the SHA-256 of the token, is kept in PostgreSQL until the end, ``revocations.py``), and changing those secrets
ends every link (and every session). A token changed in any way (filter, panels, end) or made elsewhere is
refused (403), one past its end or revoked too (410), each with a page saying why.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from footprint.auth import Signer
from footprint.dashboard.revocations import Revocations
from footprint.dashboard.view import PANELS, BadFilter, GoalLookup, View
from footprint.settings import Settings

MAX_SECONDS = 90 * 86400  # the longest a link may live
CHOICES = {"3600": "1 hour", "86400": "1 day", "604800": "7 days", "2592000": "30 days", "7776000": "90 days"}


class ShareRefused(ValueError):
    """A share link that opens nothing: ``status`` (403 not valid, 410 expired or revoked, 503 cannot tell whether
    it was revoked), ``kind`` (what the API's answer says) and the reason, for the page."""

    def __init__(self, status: int, reason: str, kind: str = "") -> None:
        super().__init__(reason)
        self.status = status
        self.kind = kind or {403: "invalid_link", 410: "expired"}.get(status, "unavailable")


@dataclass(frozen=True)
class ShareLink:
    token: str
    expires_at: datetime

    def as_json(self) -> dict[str, str]:
        return {"url": f"/share/{self.token}", "expires_at": self.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")}


class ShareLinks:
    """Makes, opens and revokes links; ``revocations``: where revoked links are kept (None: nowhere, none is)."""

    def __init__(self, settings: Settings, revocations: Revocations | None = None, goals: GoalLookup | None = None
                 ) -> None:
        self._signer = Signer.from_settings(settings, "dashboard-share")
        self._revocations = revocations
        self._goals = goals

    def make(self, body: Any, now: float | None = None) -> ShareLink:
        """A link for ``{"query": "range=7&...", "panels": [...], "expires_seconds": N}``; ``BadFilter`` names
        what is wrong."""
        if not isinstance(body, dict) or set(body) != {"query", "panels", "expires_seconds"}:
            raise BadFilter('body: {"query": "range=...", "panels": [...], "expires_seconds": N} and nothing else')
        query, panels, seconds = body["query"], body["panels"], body["expires_seconds"]
        if not isinstance(seconds, int) or isinstance(seconds, bool) or not 1 <= seconds <= MAX_SECONDS:
            raise BadFilter(f"expires_seconds: a whole number of seconds from 1 to {MAX_SECONDS} (90 days)")
        view = _view(query, panels, datetime.now(UTC), self._goals)
        expires = int((time.time() if now is None else now) + seconds)
        payload = json.dumps({"q": view.query, "p": list(view.panels), "e": expires}, separators=(",", ":"))
        return ShareLink(self._signer.sign(payload.encode()), datetime.fromtimestamp(expires, UTC))

    def open(self, token: str, now: float | None = None) -> View:
        """The view a link shows; ``ShareRefused`` when its signature does not match, it has expired or been
        revoked, or its filter's goal is no longer defined."""
        raw = self._signer.verify(token)
        if raw is None:
            raise ShareRefused(403, "This share link is not valid: its signature does not match what it says (it was"
                                    " changed or cut short, made by another Footprint, or the dashboard's private keys"
                                    " or password changed since). Ask whoever shared it for a new link.")
        data = json.loads(raw)
        expires = datetime.fromtimestamp(data["e"], UTC)
        if data["e"] < (time.time() if now is None else now):
            raise ShareRefused(410, f"This share link expired at {expires:%Y-%m-%d %H:%M:%S} UTC. Ask whoever shared"
                                    " it for a new link.")
        self._check_revoked(token)
        try:
            return _view(data["q"], data["p"], expires, self._goals)
        except BadFilter as exc:  # its goal deleted since it was made
            raise ShareRefused(410, f"This share link's filter no longer holds ({exc}). Ask whoever shared it for a"
                                    " new link.", "invalid_filter") from None
        except Exception as exc:  # its goal unreadable (PostgreSQL unreachable)
            raise ShareRefused(503, f"Cannot read this share link's goal now ({str(exc)[:200]}); try again later."
                               ) from None

    def _check_revoked(self, token: str) -> None:
        if self._revocations is None:
            return
        try:
            revoked = self._revocations.revoked_at(token)
        except Exception as exc:  # PostgreSQL unreachable: never open a link unchecked
            raise ShareRefused(503, f"Cannot check this share link now ({str(exc)[:200]}); try again later.") from None
        if revoked is not None:
            raise ShareRefused(410, f"This share link was revoked by its owner at {revoked:%Y-%m-%d %H:%M:%S} UTC. Ask"
                                    " whoever shared it for a new link.", "revoked")

    def revoke(self, body: Any) -> dict[str, str]:
        """Revoke the link ``{"url": "https://.../share/TOKEN"}`` (or ``/share/TOKEN``, or the token) made here
        and not yet ended; ``ShareRefused`` when it is not valid, has ended or was revoked; ``BadFilter`` for a
        body that names no link."""
        if not isinstance(body, dict) or set(body) != {"url"} or not isinstance(body["url"], str):
            raise BadFilter('body: {"url": "the share link to revoke"} and nothing else')
        token = urlsplit(body["url"].strip()).path.rstrip("/").rsplit("/", 1)[-1]
        self.open(token)  # refused if forged, ended or revoked already
        assert self._revocations is not None
        ends = datetime.fromtimestamp(json.loads(self._signer.verify(token) or b"{}")["e"], UTC)
        when = self._revocations.revoke(token, ends)
        return {"revoked_at": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "expires_at": ends.strftime("%Y-%m-%dT%H:%M:%SZ")}


def _view(query: Any, panels: Any, expires: datetime, goals: GoalLookup | None) -> View:
    if not isinstance(query, str) or len(query) > 8192:
        raise BadFilter("query: the dashboard's address query (range=...&type=...), at most 8192 characters")
    if not isinstance(panels, list) or not panels or not all(isinstance(p, str) and p in PANELS for p in panels):
        raise BadFilter(f"panels: a list of one or more of {', '.join(PANELS)}")
    pairs = parse_qsl(query, keep_blank_values=True)
    if len(pairs) != len({name for name, _ in pairs}):
        raise BadFilter("query: a parameter is given more than once")
    return View.of(dict(pairs), tuple(p for p in PANELS if p in panels), expires, goals)
