"""Exactly-once checks that can see a duplicate (issue 27), shared by the scenarios and tested on
purpose-made duplicates in app/tests/integration/test_exactly_once_checks.py.

`FINAL` folds the rows of one id into one, and PostgreSQL's key is the id: counted that way, a
second insert of an event can never show. So ClickHouse is counted as stored, without `FINAL` and
through the `Distributed` table on a cluster (every shard), and the rollup `stats_hourly`, which
counts rows as they are inserted (`count()` in its materialized view), is compared with the
distinct events it was fed from: a duplicate that a merge already folded in `events` still shows
there. Works with any clickhouse_connect client that may read the tables (the reader does).
"""

from __future__ import annotations

import time
from typing import Any


def ch_duplicates(client: Any, where: str = "1", parameters: dict[str, Any] | None = None,
                  table: str = "events") -> dict[str, int]:
    """Ids with more than one row in ``table`` as stored (no FINAL), and their row counts."""
    rows = client.query(f"SELECT toString(event_id), count() AS n FROM {table} WHERE {where} "
                        "GROUP BY event_id HAVING n > 1 ORDER BY n DESC LIMIT 100",
                        parameters=parameters or {}).result_rows
    return {str(r[0]): int(r[1]) for r in rows}


def rollup_vs_events(client: Any, events: str = "events", rollup: str = "stats_hourly") -> tuple[int, int]:
    """(events the rollup counts, distinct human events in ``events``: what its view counts), in one query."""
    row = client.query(f"SELECT (SELECT sum(events) FROM {rollup}), "
                       f"(SELECT uniqExact(event_id) FROM {events} WHERE NOT synthetic AND NOT bot)").result_rows[0]
    return int(row[0] or 0), int(row[1] or 0)


def problems(client: Any, events: str = "events", rollup: str = "stats_hourly", tries: int = 3,
             pause: float = 2.0) -> list[str]:
    """What breaks "each stored event exactly once" in ClickHouse; [] when nothing does.

    Read up to ``tries`` times ``pause`` apart: an insert landing between two reads of a live
    system differs once, a duplicate differs every time.
    """
    found: list[str] = []
    for attempt in range(tries):
        found = []
        dupes = ch_duplicates(client, table=events)
        if dupes:
            found.append(f"ClickHouse {events} holds {len(dupes)} event ids more than once "
                         f"(rows as stored, no FINAL), e.g. {next(iter(dupes.items()))}")
        counted, distinct = rollup_vs_events(client, events, rollup)
        if counted != distinct:
            found.append(f"ClickHouse {rollup} counts {counted} events, {events} holds {distinct} distinct "
                         "human (non-synthetic, non-bot) events: the rollup counted an insert twice (or missed one)")
        if not found:
            return []
        if attempt + 1 < tries:
            time.sleep(pause)
    return found
