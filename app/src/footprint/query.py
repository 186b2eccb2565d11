"""``GET /v1/events``: filters -> one parameterised ClickHouse query, newest first, keyset pages.

Every filter value travels as a query parameter (never spliced into SQL). The cursor is the sort
key of the last row (time, event id) plus a digest of the filters, signed (``auth.Signer``): a
cursor that was changed, made elsewhere or belongs to other filters is refused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from footprint.auth import Signer
from footprint.contract import (
    COLUMN_NAMES,
    EQUALITY,
    EVENT_TYPES,
    SHORT_MAX_CHARS,
    TEXT_MAX_BYTES,
    dumps,
    format_time,
    parse_time,
)

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
MAX_PROPERTY_FILTERS = 5
PROPERTY_PREFIX = "properties."
OTHER_PARAMS = ("link", "since", "until", "limit", "cursor", "synthetic")


class BadFilter(ValueError):
    """A filter the API refuses; the message names the parameter and why."""


@dataclass
class EventQuery:
    equal: dict[str, str] = field(default_factory=dict)  # column -> value
    link_prefix: str = ""
    since: str = ""  # canonical times
    until: str = ""
    properties: list[tuple[tuple[str, ...], str]] = field(default_factory=list)  # (key path, value text)
    synthetic: bool = False
    limit: int = DEFAULT_LIMIT
    after: tuple[str, str] | None = None  # (time, event id) of the last row of the previous page

    def digest(self) -> str:
        """What the filters select (not the page): a cursor is valid only for the same filters."""
        raw = json.dumps([sorted(self.equal.items()), self.link_prefix, self.since, self.until,
                          self.properties, self.synthetic])
        return hashlib.sha256(raw.encode()).hexdigest()[:16]


def parse(params: Mapping[str, str], keys: list[str], signer: Signer) -> EventQuery:
    """Query parameters -> ``EventQuery``; ``BadFilter`` names what is wrong. ``keys``: every name
    given (a repeated parameter is refused rather than silently using one of its values)."""
    q = EventQuery()
    if len(keys) != len(set(keys)):
        raise BadFilter("a parameter is given more than once")
    for name in keys:
        value = params[name]
        if name in EQUALITY:
            q.equal[EQUALITY[name]] = _short(name, value)
        elif name.startswith(PROPERTY_PREFIX):
            path = tuple(name[len(PROPERTY_PREFIX):].split("."))
            if not all(path) or len(path) > 8:
                raise BadFilter(f"{name}: a property path is properties.KEY or properties.KEY.SUBKEY (up to 8)")
            q.properties.append((path, _short(name, value, allow_empty=True)))
        elif name not in OTHER_PARAMS:
            raise BadFilter(f"{name}: unknown parameter (filters: {', '.join([*EQUALITY, *OTHER_PARAMS])}, "
                            "properties.KEY)")
    if "type" in q.equal and q.equal["type"] not in EVENT_TYPES:
        raise BadFilter(f"type: one of {', '.join(EVENT_TYPES)}")
    if len(q.properties) > MAX_PROPERTY_FILTERS:
        raise BadFilter(f"at most {MAX_PROPERTY_FILTERS} properties.KEY filters")
    if "link" in params:
        q.link_prefix = params["link"]
        if len(q.link_prefix.encode("utf-8", "replace")) > TEXT_MAX_BYTES or not q.link_prefix:
            raise BadFilter(f"link: a path prefix of 1..{TEXT_MAX_BYTES} bytes")
    for name in ("since", "until"):
        if name in params:
            try:
                setattr(q, name, format_time(parse_time(params[name])))
            except ValueError as exc:
                raise BadFilter(f"{name}: {exc}") from None
    if q.since and q.until and q.since >= q.until:
        raise BadFilter("since must be before until")
    q.synthetic = _flag("synthetic", params.get("synthetic", "false"))
    q.limit = _limit(params.get("limit"))
    if "cursor" in params:
        q.after = _cursor(params["cursor"], q.digest(), signer)
    return q


def _short(name: str, value: str, allow_empty: bool = False) -> str:
    if (not value and not allow_empty) or len(value) > SHORT_MAX_CHARS or "\x00" in value:
        raise BadFilter(f"{name}: a value of {0 if allow_empty else 1}..{SHORT_MAX_CHARS} characters")
    return value


def _flag(name: str, value: str) -> bool:
    if value not in ("true", "false"):
        raise BadFilter(f"{name}: true or false")
    return value == "true"


def _limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    if not value.isascii() or not value.isdigit() or len(value) > 7 or not 1 <= int(value) <= MAX_LIMIT:
        raise BadFilter(f"limit: a whole number from 1 to {MAX_LIMIT}")
    return int(value)


def _cursor(token: str, digest: str, signer: Signer) -> tuple[str, str]:
    raw = signer.verify(token)
    try:
        data = json.loads(raw) if raw is not None else None
    except ValueError:
        data = None
    if not isinstance(data, list) or len(data) != 3 or data[2] != digest:
        raise BadFilter("cursor: not a cursor of this query (use the `next` value of its previous page)")
    return str(data[0]), str(data[1])


def next_cursor(last: dict[str, Any], q: EventQuery, signer: Signer) -> str:
    return signer.sign(json.dumps([last["footprint_time"], last["event_id"], q.digest()]).encode())


# ------------------------------------------------------------------ SQL

_SELECT = ", ".join(f"toString({c})" if c in ("event_id", "footprint_time", "received_at") else c
                    for c in COLUMN_NAMES)


# How far back each try of a page reaches, from its newest possible row (the cursor's time, ``until`` or
# now): a page of the newest events is found in the last hour of a busy site without reading its history.
WINDOWS = (timedelta(hours=1), timedelta(days=1), timedelta(days=7), timedelta(days=31))


def floors(q: EventQuery, now: datetime) -> list[str]:
    """The lower time bounds to try in turn (canonical times; "" = no bound beyond the filters). A try
    that finds more rows than the limit holds the page: every row it did not read is older than its rows.
    Rows timestamped after ``now`` (the contract takes times up to 2199) are in every try."""
    newest = (parse_time(q.after[0]) if q.after else parse_time(q.until) if q.until
              else now.astimezone(UTC).replace(tzinfo=None))
    oldest = parse_time(q.since) if q.since else None
    out = []
    for span in WINDOWS:
        floor = newest - span
        if oldest is not None and floor <= oldest:
            break
        out.append(format_time(floor))
    return [*out, ""]


def to_sql(q: EventQuery, floor: str = "") -> tuple[str, dict[str, Any]]:
    """The ClickHouse query (one more row than the limit: is there a next page?) and its parameters;
    ``floor``: one of ``floors``."""
    where = ["synthetic = {synthetic:Bool}"]
    params: dict[str, Any] = {"synthetic": q.synthetic, "limit": q.limit + 1}
    if floor:
        where.append("footprint_time >= toDateTime64({floor:String}, 6, 'UTC')")
        params["floor"] = floor[:-1]
    for i, (column, value) in enumerate(sorted(q.equal.items())):
        where.append(f"{column} = {{e{i}:String}}")
        params[f"e{i}"] = value
    if q.link_prefix:
        where.append("startsWith(link, {link:String})")
        params["link"] = q.link_prefix
    if q.since:
        where.append("footprint_time >= toDateTime64({since:String}, 6, 'UTC')")
        params["since"] = q.since[:-1]
    if q.until:
        where.append("footprint_time < toDateTime64({until:String}, 6, 'UTC')")
        params["until"] = q.until[:-1]
    for i, (path, value) in enumerate(q.properties):
        keys = ", ".join(f"{{p{i}k{j}:String}}" for j in range(len(path)))
        # equal to the value as a JSON string ("pro") or as a JSON literal (3, true, null)
        where.append(f"JSONExtractRaw(properties, {keys}) IN ({{p{i}s:String}}, {{p{i}r:String}})")
        params.update({f"p{i}k{j}": key for j, key in enumerate(path)})
        params[f"p{i}s"] = dumps(value).decode()
        params[f"p{i}r"] = value
    if q.after is not None:
        where.append("(footprint_time, event_id) < (toDateTime64({at:String}, 6, 'UTC'), toUUID({aid:String}))")
        params["at"], params["aid"] = q.after[0][:-1], q.after[1]
    sql = (f"SELECT {_SELECT} FROM events FINAL WHERE {' AND '.join(where)}"
           " ORDER BY footprint_time DESC, event_id DESC LIMIT {limit:UInt32}")
    return sql, params


def page_rows(q: EventQuery, now: datetime, run: Callable[[str, dict[str, Any]], Sequence[Any]]) -> Sequence[Any]:
    """The rows of one page (up to ``q.limit`` + 1): ``run(sql, parameters)`` for each floor in turn,
    until one finds more rows than the limit or there is no floor left."""
    rows: Sequence[Any] = []
    for floor in floors(q, now):
        rows = run(*to_sql(q, floor))
        if len(rows) > q.limit:
            break
    return rows


def row_to_event(row: Sequence[Any]) -> dict[str, Any]:
    """A selected row -> the canonical column values (times as the canonical spelling, JSON objects)."""
    out = dict(zip(COLUMN_NAMES, row, strict=True))
    for c in ("footprint_time", "received_at"):
        out[c] = format_time(parse_time(out[c].replace(" ", "T") + "Z"))
    for c in ("properties", "traits"):
        out[c] = json.loads(out[c]) if out[c] else {}
    out["synthetic"] = bool(out["synthetic"])
    out["schema_version"] = int(out["schema_version"])
    return out
