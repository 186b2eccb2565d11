"""The benchmarks' generated traffic in chunks, as the stores' sinks take it: events [frm, to) of one
deterministic stream (``helpers.gen_events``, seeded per chunk, spread over ``days`` days from ``start``), so
that a larger size continues the smaller one's events."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from _services import REPO  # noqa: F401  (puts app/tests, where helpers lives, on sys.path)
from helpers import gen_events

CHUNK = 200_000


def chunks(start: datetime, days: int, frm: int, to: int) -> Iterator[tuple[list[dict[str, Any]], dict[str, bytes]]]:
    """Each chunk of events [frm, to): the events, and their encoded documents by id (what the sinks write)."""
    from footprint.contract import encode_event

    for offset in range(frm, to, CHUNK):
        events = gen_events(min(CHUNK, to - offset), seed=offset + 7, start=start, days=days)
        yield events, {e["event_id"]: encode_event(e) for e in events}
