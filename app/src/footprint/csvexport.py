"""CSV out: the dashboard's statistics and the read API's raw events, as RFC 4180 text streamed in chunks.

One encoding for both (``encode``): UTF-8, comma-separated, CRLF line ends, a cell quoted where it holds a
comma, a quote (doubled), a line end or a leading or trailing space, so that a CSV reader gives back exactly
the texts written (a property test round-trips any text). Cells are written as they are stored: nothing is
prefixed to a cell a spreadsheet could read as a formula (``=``, ``+``, ``-``, ``@``), so the numbers and
texts stay exact; open an export with a spreadsheet's import (text columns), not by double-clicking, when
the site's links or events may hold such texts. ``None`` is an empty cell, a boolean ``true``/``false``,
an object (``properties``, ``traits``) its compact JSON.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from footprint import query as events_query
from footprint.compare import KEYED
from footprint.contract import COLUMN_NAMES, EVENT_TYPES, dumps, outbound, outbound_names

# each statistic's columns, in the order of its rows (stats.QUERIES, goalstats)
STAT_COLUMNS: dict[str, tuple[str, ...]] = {
    "views_per_day": ("day", "views"),
    "unique_visitors_per_day": ("day", "visitors"),
    "top_links": ("link", "views", "visitors"),
    "methods": ("method", "events"),
    "top_events": ("event", "events"),
    "hourly_traffic": ("hour", "events"),
    "live_per_minute": ("minute", "events"),
    "referrers": ("referrer_host", "events"),
    "utm_sources": ("utm_source", "events"),
    "utm_mediums": ("utm_medium", "events"),
    "utm_campaigns": ("utm_campaign", "events"),
    "browsers": ("browser", "events"),
    "operating_systems": ("os", "events"),
    "devices": ("device", "events"),
    "countries": ("country", "events", "visitors"),
    "bots_per_day": ("day", "bot_events"),
    "bot_agents": ("browser", "bot_events"),
    "visits": ("visits", "bounces", "bounce_rate_percent", "average_duration_seconds", "pages_per_visit"),
    "entry_pages": ("entry_page", "visits"),
    "exit_pages": ("exit_page", "visits"),
    "goals": ("goal", "visitors", "conversions", "visitors_in_filter", "conversion_rate_percent"),
    "funnels": ("funnel", "step", "goal", "visitors", "of_first_step_percent", "drop_off_percent"),
}
CHUNK_ROWS = 500  # rows per chunk of a streamed answer


def cell(value: Any) -> str:
    """One value as the text of its cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return dumps(value).decode()
    return str(value)


def encode(rows: Iterable[Sequence[Any]]) -> str:
    """Rows (the header one of them) as CSV text."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for row in rows:
        writer.writerow([cell(v) for v in row])
    return out.getvalue()


def stream(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[bytes]:
    """The header, then the rows, ``CHUNK_ROWS`` at a time, as UTF-8 chunks (a generator: rows are read as
    they are sent, never all held)."""
    yield encode([header]).encode()
    chunk: list[Sequence[Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= CHUNK_ROWS:
            yield encode(chunk).encode()
            chunk = []
    if chunk:
        yield encode(chunk).encode()


def stat_header(name: str, compare: bool) -> tuple[str, ...]:
    """A statistic's columns; ``compare``: its comparison's (``compare.compared``): the key, the value, the
    previous period's value and the change in per cent; a goal's or funnel step's: its names, then each figure, its
    previous value and its change (per cent, percentage points for a rate)."""
    columns = STAT_COLUMNS[name]
    if not compare:
        return columns
    if name in KEYED:
        keys, rates = KEYED[name]
        return (*columns[:keys], *(cell for i, column in enumerate(columns[keys:], start=keys) for cell in (
            column, f"previous_{column}", f"{column}_change_{'points' if i in rates else 'percent'}")))
    if name == "visits":
        return ("figure", "value", "previous", "change_percent")
    return (columns[0], columns[1], f"previous_{columns[1]}", "change_percent")



# the raw events' columns: the read API's (Segment) names of every type, in the stored columns' order (a page's
# ``name`` and a track's ``event`` are both the ``event`` column); a cell a type does not have is empty
EVENT_COLUMNS = tuple(dict.fromkeys(names[c] for c in COLUMN_NAMES for t in EVENT_TYPES
                                    if c in (names := outbound_names(t))))
Run = Callable[[str, dict[str, Any]], Sequence[Any]]


def page_size(max_result_rows: int) -> int:
    """Events per query of an export: the read API's largest page, within the reader's cap on a query's rows
    (``FOOTPRINT_QUERY_MAX_RESULT_ROWS``; a page query asks one row more)."""
    return max(1, min(events_query.MAX_LIMIT, max_result_rows - 1))


def events(q: events_query.EventQuery, now: datetime, run: Run, size: int) -> Iterator[list[Any]]:
    """Every event of ``q``'s filters, newest first, as rows of ``EVENT_COLUMNS``: read ``size`` at a time (the
    read API's page query, keyset on time and id), each page asked only when the one before is sent."""
    page = replace(q, limit=size, after=None)
    while True:
        rows = events_query.page_rows(page, now, run)
        for row in rows[:page.limit]:
            event = outbound(events_query.row_to_event(row))
            yield [event.get(name) for name in EVENT_COLUMNS]
        if len(rows) <= page.limit:
            return
        last = events_query.row_to_event(rows[page.limit - 1])
        page = replace(page, after=(last["footprint_time"], last["event_id"]))
