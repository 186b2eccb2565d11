"""What a request becomes: one inbound (Segment-style) page event, under the event contract.

The middlewares split the work in two: while the request comes in they keep only its few fields
(``PageRequest``: a tuple of the strings as they came, and the time); once the response is sent,
``PageRecorder.hand_over`` gives it to the sender: as its event (``page_of`` adds the visitor's id and the
client's address, ``Page.event`` builds the rest), or as it is to a sender that does all that later, elsewhere
(``KafkaRelaySender``: its thread makes the ``Page``, its relay process the event), the app's request path then
doing the least work.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from footprint.contract import SHORT_MAX_BYTES, TEXT_MAX_BYTES, clean_text, format_time
from footprint.visitors import VisitorIds, client_address, parse_networks

if TYPE_CHECKING:
    from footprint.track.senders import Sender

DEFAULT_SKIP = ("/static/", "/favicon.ico", "/robots.txt", "/healthz", "/metrics")
log = logging.getLogger("footprint.track")


class PageRequest(NamedTuple):
    """What the request path keeps of a request: its fields as the server gave them, and when it came."""

    method: str
    path: str
    peer: str
    forwarded_for: str | None
    user_agent: str
    referrer: str | None
    query: str
    host: str | None
    now: datetime


class PageRecorder:
    """Turns request facts into page events; decides which paths are skipped.

    ``skip``: path prefixes never recorded (static files, health checks). ``trusted_proxies``: peers
    whose ``X-Forwarded-For`` names the client. ``site``: part of the visitor id, a hash keyed with a
    daily salt that lives only in this process (``footprint.visitors``). ``honour_privacy_signals``:
    a request whose browser asks not to be tracked (``DNT: 1`` or ``Sec-GPC: 1``) is not recorded,
    as the browser snippet does; ``declined`` counts them.
    """

    def __init__(self, site: str = "default", skip: Iterable[str] = DEFAULT_SKIP,
                 trusted_proxies: str = "127.0.0.1,::1", honour_privacy_signals: bool = True) -> None:
        self.skip = tuple(skip)
        self.visitors = VisitorIds(site)
        self.trusted = parse_networks(trusted_proxies)
        self.honour_privacy_signals = honour_privacy_signals
        self.declined = 0

    def wanted(self, path: str, dnt: str | None = None, gpc: str | None = None) -> bool:
        """Record this request? Not for a skipped path, nor (by default) when the browser opted out."""
        if self.skip and path.startswith(self.skip):
            return False
        if self.honour_privacy_signals and "1" in ((dnt or "").strip(), (gpc or "").strip()):
            self.declined += 1
            return False
        return True

    def page(self, method: str, path: str, peer: str, forwarded_for: str | None, user_agent: str,
             referrer: str | None, now: datetime | None = None, query: str = "",
             host: str | None = None) -> dict[str, Any]:
        """One page event (``Page.event``)."""
        return self.page_of(PageRequest(method, path, peer, forwarded_for, user_agent, referrer, query, host,
                                        now or datetime.now(UTC))).event()

    def page_of(self, request: PageRequest) -> Page:
        """The request with the two facts only this process can give: the client's address (by its trusted
        proxies) and the visitor's id (by its salt of the day)."""
        client = client_address(request.peer, request.forwarded_for, self.trusted)
        return Page(self.visitors.visitor_id(client, request.user_agent, request.now), client, request.method,
                    request.path, request.user_agent, request.referrer, request.query, request.host, request.now)

    def hand_over(self, request: PageRequest, sender: Sender) -> None:
        """The request to ``sender``: as it is to a sender that makes its page and event later, elsewhere (one with
        ``send_request``: ``KafkaRelaySender``), else as its event; anything that goes wrong is counted, never
        raised."""
        try:
            send_request = getattr(sender, "send_request", None)
            if send_request is not None:
                send_request(request, self)
            else:
                sender.send(self.page_of(request).event())
        except Exception:  # tracking must never fail the request
            sender.dropped += 1
            log.exception("page event not recorded")


class Page(NamedTuple):
    """What a page event is built from: the visitor's id and the client's address (``PageRecorder.page_of``), then
    the request's fields as they came. Made in the app's process (by ``KafkaRelaySender``'s thread, for its relay:
    ``footprint.track.lines``); its event built there, or in the relay from the line."""

    visitor: str
    client: str
    method: str
    path: str
    user_agent: str
    referrer: str | None
    query: str
    host: str | None
    now: datetime

    def event(self) -> dict[str, Any]:
        """The inbound page event. The collector (or ``PageProducer``) derives the referrer's host, UTM, browser,
        OS, device and bot flag from ``context`` and stores only those (``footprint.enrich``), and the country of
        ``context.ip``, the client's address (``footprint.countries``)."""
        page: dict[str, Any] = {}
        source = _referrer_host(self.referrer, self.host) if self.referrer else ""
        if source:
            page["referrer"] = clean_text(source, SHORT_MAX_BYTES)  # the host only, never the full URL
        if self.query:
            page["search"] = clean_text(self.query, TEXT_MAX_BYTES)  # for the UTM parameters only
        return {
            "type": "page",
            "anonymousId": self.visitor,
            "properties": {
                "path": clean_text(self.path, TEXT_MAX_BYTES),
                "method": clean_text(self.method, SHORT_MAX_BYTES)[:200],
            },
            # ip: the collector looks its country up, then drops it (footprint.countries); never stored
            "context": {"userAgent": clean_text(self.user_agent, TEXT_MAX_BYTES), "page": page, "ip": self.client},
            "timestamp": format_time(self.now),
            "messageId": str(uuid.uuid4()),
        }


def _referrer_host(referrer: str, host: str | None) -> str:
    """The referrer's host when the link came from elsewhere; "" for the site's own pages or no URL."""
    try:
        ref = urlsplit(referrer)
        return "" if ref.netloc == (host or "") else ref.hostname or ""
    except ValueError:  # not a URL (e.g. a broken IPv6 literal): no referrer
        return ""
