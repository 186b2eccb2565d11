"""Exactly-once checks that can see a duplicate (issue 27), shared by the scenarios and tested on
purpose-made duplicates in app/tests/integration/test_exactly_once_checks.py.

`FINAL` folds the rows of one id into one, and PostgreSQL's key is the id: counted that way, a
second insert of an event can never show. So ClickHouse is counted as stored, without `FINAL` and
through the `Distributed` table on a cluster (every shard), and every rollup that counts rows as
they are inserted (`count()` in its materialized view: ROLLUPS) is compared with the distinct
events it was fed from: a duplicate that a merge already folded in `events` still shows there.
Works with any clickhouse_connect client that may read the tables (the reader does).
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


# the rollups whose materialized views count each stored event once: the table, the events that
# feed it, and the column each of whose values counts every event once ("" : the whole table)
ROLLUPS = (
    ("stats_hourly", "NOT synthetic AND NOT bot", ""),  # app migration 0003
    ("breakdowns_daily", "NOT synthetic", "dimension"),  # 0008: one row per event and dimension
    ("links_daily", "NOT synthetic AND NOT bot", ""),  # 0009
)


def rollup_counts(client: Any, rollup: str, events: str = "events") -> tuple[dict[str, int], int]:
    """({part: events the rollup counts}, distinct events in ``events`` that feed it), in one query;
    the parts are the values of the rollup's ROLLUPS column ("" for the whole table)."""
    fed, column = next((f, c) for t, f, c in ROLLUPS if t == rollup)
    part = column or "''"
    row = client.query(f"SELECT (SELECT groupArray((p, n)) FROM (SELECT {part} AS p, sum(events) AS n FROM {rollup} "
                       f"GROUP BY p)), (SELECT uniqExact(event_id) FROM {events} WHERE {fed})").result_rows[0]
    return {str(p): int(n) for p, n in row[0]}, int(row[1] or 0)


def rollup_vs_events(client: Any, events: str = "events", rollup: str = "stats_hourly") -> tuple[int, int]:
    """(events a whole-table rollup counts, distinct events in ``events`` that feed it: what its view counts)."""
    counted, distinct = rollup_counts(client, rollup, events)
    return sum(counted.values()), distinct


def rollup_problems(client: Any, events: str = "events") -> list[str]:
    """Every rollup of ROLLUPS that exists whose count differs from the events that feed it."""
    found = []
    for rollup, fed, column in ROLLUPS:
        if not int(client.command(f"EXISTS TABLE {rollup}")):
            continue  # a schema before the migration that made it
        counted, distinct = rollup_counts(client, rollup, events)
        wrong = {p: n for p, n in counted.items() if n != distinct}
        if wrong or (distinct and not counted):
            where = f" for {column} {', '.join(sorted(wrong))}" if column else ""
            found.append(f"ClickHouse {rollup} counts {sorted(set(wrong.values())) or [0]} events{where}, {events} holds "
                         f"{distinct} distinct events WHERE {fed}: the rollup counted an insert twice (or missed one)")
    return found


def problems(client: Any, events: str = "events", tries: int = 3, pause: float = 2.0) -> list[str]:
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
        found += rollup_problems(client, events)
        if not found:
            return []
        if attempt + 1 < tries:
            time.sleep(pause)
    return found
