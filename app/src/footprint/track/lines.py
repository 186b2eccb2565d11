"""The lines ``KafkaRelaySender`` writes to its relay's pipe, and how the relay reads them: one definition of both
sides (the relay, ``python -m footprint.track.relay``, runs as ``__main__``: the sender cannot import it)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from footprint.track.record import Page

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode  # one encoder: json.dumps with options makes one per call


def page_line(page: Page, received: float) -> bytes:
    """A page's line: ``[received, visitor, client, method, path, user_agent, referrer, query, host, now]``, ``now``
    in whole microseconds since 1970 (exact, where a float's would round). A flat list of strings, cheap to encode
    (by ``KafkaRelaySender``'s thread, many at a time); the relay builds the event from it (``read_line``)."""
    return (_ENCODE([received, *page[:-1], (page.now - _EPOCH) // _MICROSECOND]) + "\n").encode()


def event_line(event: dict[str, Any], received: float) -> bytes:
    """An event's line, as given (``KafkaRelaySender.send``): ``[event, received]``."""
    return (_ENCODE([event, received]) + "\n").encode()


def read_line(line: bytes) -> tuple[dict[str, Any], datetime]:
    """A line's inbound event and the time it was received (ValueError, TypeError or AttributeError: not a line the
    sender writes)."""
    items = json.loads(line)
    if len(items) == 2:
        event, received = items
    else:
        received, *fields, micros = items
        event = Page._make([*fields, _EPOCH + micros * _MICROSECOND]).event()
    return event, datetime.fromtimestamp(received, UTC)
