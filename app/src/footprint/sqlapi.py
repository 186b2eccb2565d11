"""``POST /v1/queries``: read-only SQL on the app database in ClickHouse, within limits.

Layers, each enough on a real ClickHouse server, all applied:

1. the reader user (``SELECT ON <db>.*`` only) and its profile's limits (the clickhouse role);
2. server-side settings sent with the query: ``readonly=1``, ``max_execution_time``,
   ``max_result_rows``/``max_result_bytes`` with ``result_overflow_mode=throw``;
3. the app itself, before running anything, from ClickHouse's own parse of the query:
   - ``EXPLAIN AST`` (parsing only: nothing is evaluated) lists every function the query calls;
     each must be on the allowlist (``sql_functions.tsv``, made by ``app/tools/sql_allowlist.py``
     from the engine's own function categories: functions that compute on their arguments only),
     so a function that reaches files, the network, other servers or the server's state is
     refused with a 403 naming it, including one a newer ClickHouse adds;
   - ``EXPLAIN QUERY TREE`` (which accepts only a SELECT) lists every table the query reads; a
     table outside the app database, or a table function other than the number generators, is
     refused. The offline ClickHouse stand-in does not enforce every grant the role writes, so
     this layer is what refuses ``system.users`` there;
4. the answer is read from ClickHouse block by block and cut with a 422 as soon as it passes the
   byte limit (``max_result_bytes`` is checked per block by the server: one large block passed it).

Every refusal is a 4xx naming the reason (``QueryRefused``); a store that cannot be reached is a 503.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from clickhouse_connect.driver.client import Client

from footprint.settings import QuerySettings, Settings

_CODE = re.compile(r"Code: (\d+)\.")
# ClickHouse error code -> (HTTP status, reason)
_REASONS: dict[int, tuple[int, str]] = {
    164: (403, "read-only: the query would write or change settings"),
    497: (403, "not allowed for the reader user"),
    159: (422, "ran longer than the time limit"),
    160: (422, "too slow: would run longer than the time limit"),
    396: (422, "result larger than the row or byte limit"),
    158: (422, "read more rows than allowed"),
    307: (422, "read more bytes than allowed"),
    62: (400, "SQL syntax error"),
    60: (400, "unknown table"),
    81: (400, "unknown database"),
    47: (400, "unknown identifier"),
    46: (400, "unknown function"),
    43: (400, "illegal argument type"),
    241: (422, "memory limit exceeded"),
}
_TABLE = re.compile(r"\btable_name: (\S+)")
_TABLE_FUNCTION = re.compile(r"\btable_function_name: (\S+)")
# table functions that only generate numbers (every other one reads a file, a URL, another server...)
_GENERATORS = frozenset({"numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series", "generateSeries"})
_FUNCTION = re.compile(r"^\s*Function (\S+)", re.M)
_IDENTIFIER = re.compile(r"^\s*Identifier (\S+)", re.M)
_QUERY_TREE_FUNCTION = re.compile(r"\bfunction_name: (\S+)")
# what the parser writes for syntax, not a function of system.functions: x -> y, count(DISTINCT x),
# EXISTS (subquery), GROUPING(...)
_SYNTAX = frozenset({"lambda", "countDistinct", "exists", "grouping"})
# AST nodes that call a function the AST does not name (SELECT * APPLY(x -> f(x)))
_HIDDEN_CALLS = frozenset({"ColumnsApplyTransformer"})
# bare words the server runs as functions (SQL's CURRENT_USER...): never a column of the app's tables
_FUNCTION_WORDS = frozenset({"current_user", "session_user", "user", "currentuser", "current_database",
                             "currentdatabase", "database", "schema", "current_schemas", "current_role",
                             "current_roles"})
# aggregate function combinators (uniqExactIf, sumArray, countMerge, ...), longest first
_COMBINATORS = ("MergeState", "SimpleState", "OrDefault", "Resample", "Distinct", "ForEach", "ArgMin", "ArgMax",
                "OrNull", "Array", "State", "Merge", "Map", "If")


@cache
def _allowlist() -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """(names, lower-cased case-insensitive names, aggregate names, lower-cased too) of the allowed functions."""
    names: set[str] = set()
    folded: set[str] = set()
    aggregates: set[str] = set()
    text = (resources.files("footprint") / "sql_functions.tsv").read_text()
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, flags = line.split("\t")
        names.add(name)
        if "i" in flags:
            folded.add(name.lower())
        if "a" in flags:
            aggregates.add(name)
            if "i" in flags:
                aggregates.add(name.lower())
    return frozenset(names), frozenset(folded), frozenset(aggregates)


def function_allowed(name: str) -> bool:
    """``name`` (as the parser wrote it) is an allowed function, an allowed aggregate with
    combinators, or syntax; a table function is judged by ``check_tables``."""
    names, folded, aggregates = _allowlist()
    if name in names or name.lower() in folded or name in _SYNTAX or name in _GENERATORS:
        return True
    base = name
    while True:
        suffix = next((c for c in _COMBINATORS if base.endswith(c) and len(base) > len(c)), None)
        if suffix is None:
            return False
        base = base[: -len(suffix)]
        if base in aggregates or base.lower() in aggregates:
            return True


class QueryRefused(Exception):
    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail


@dataclass
class QueryResult:
    columns: list[str]
    types: list[str]
    rows: list[list[Any]]
    elapsed_ms: float


def limits(settings: QuerySettings) -> dict[str, Any]:
    return {
        "readonly": 1,
        "max_execution_time": settings.query_max_execution_seconds,
        "max_result_rows": settings.query_max_result_rows,
        "max_result_bytes": settings.query_max_result_bytes,
        "result_overflow_mode": "throw",
    }


def refusal(exc: Exception) -> QueryRefused:
    """A ClickHouse error -> the 4xx that names it (unknown codes: 400 with ClickHouse's first line)."""
    text = str(exc)
    m = _CODE.search(text)
    code = int(m.group(1)) if m else 0
    status, reason = _REASONS.get(code, (400, "ClickHouse refused the query"))
    first = text[m.start():] if m else text
    first = first.strip().splitlines()[0][:400] if first.strip() else reason
    return QueryRefused(status, "query_refused", f"{reason} ({first})")


def check_sql(sql: str, settings: QuerySettings) -> None:
    """Refuse before parsing: empty, too long, or more than one statement."""
    if not sql.strip():
        raise QueryRefused(400, "invalid", "sql: empty")
    if len(sql.encode("utf-8", "replace")) > settings.query_max_sql_bytes:
        raise QueryRefused(413, "too_large", f"sql: longer than {settings.query_max_sql_bytes} bytes")
    if "\x00" in sql:
        raise QueryRefused(400, "invalid", "sql: contains a NUL character")


def _explain(client: Client, kind: str, sql: str, settings: QuerySettings) -> str:
    """ClickHouse's ``EXPLAIN <kind>`` of ``sql`` as text; its refusal as a ``QueryRefused``."""
    try:
        out = client.command(f"EXPLAIN {kind} {sql}", settings={
            "readonly": 1, "max_execution_time": settings.query_max_execution_seconds})
    except Exception as exc:
        if _CODE.search(str(exc)) is None:
            raise
        refused = refusal(exc)
        if refused.status == 400 and "Syntax error" in str(exc):
            refused.detail = "only one SELECT query is allowed: " + refused.detail
        raise refused from None
    return out if isinstance(out, str) else "\n".join(str(x) for x in (out if isinstance(out, list) else [out]))


def check_functions(client: Client, sql: str, settings: QuerySettings) -> None:
    """ClickHouse's parser lists the functions (nothing is evaluated): each must be allowed."""
    text = _explain(client, "AST", sql, settings)
    if not text.lstrip().startswith("SelectWithUnionQuery"):
        raise QueryRefused(400, "query_refused", "only one SELECT query is allowed")
    hidden = sorted({node for node in _HIDDEN_CALLS if re.search(rf"^\s*{node}\b", text, re.M)})
    if hidden:
        raise QueryRefused(403, "query_refused", "APPLY(...) is not allowed: it calls functions the query does not "
                                                 "name (call them on the columns instead)")
    names = sorted({f for f in _FUNCTION.findall(text) if not function_allowed(f)}
                   | {i for i in _IDENTIFIER.findall(text) if i.strip("`\"").lower() in _FUNCTION_WORDS})
    if names:
        raise QueryRefused(403, "query_refused", f"function not allowed: {', '.join(names[:10])} (only functions "
                                                 "that compute on their arguments; see the app README)")


def check_tables(client: Client, sql: str, settings: Settings) -> None:
    """ClickHouse's parser lists the tables: only the app database's, no table functions."""
    text = _explain(client, "QUERY TREE", sql, settings)
    # a second net: what the analyzer resolved must be allowed too (but its own helpers, named __...: a
    # query that writes such a name was refused by check_functions already)
    called = sorted({f for f in (n.rstrip(",") for n in _QUERY_TREE_FUNCTION.findall(text))
                     if not f.startswith("__") and not function_allowed(f)})
    if called:
        raise QueryRefused(403, "query_refused", f"function not allowed: {', '.join(called[:10])}")
    functions = [f for f in _TABLE_FUNCTION.findall(text) if f not in _GENERATORS]
    if functions:
        names = ", ".join(sorted(set(functions)))
        raise QueryRefused(403, "query_refused", f"table functions are not allowed ({names})")
    for table in _TABLE.findall(text):
        if table == "system.one":  # what a SELECT without FROM reads
            continue
        database = table.split(".", 1)[0] if "." in table else settings.ch_database
        if database != settings.ch_database:
            raise QueryRefused(403, "query_refused",
                               f"reaches another database: {table} (only {settings.ch_database}.* is readable)")


def run(client: Client, sql: str, settings: Settings) -> QueryResult:
    import time

    check_sql(sql, settings)
    check_functions(client, sql, settings)
    check_tables(client, sql, settings)
    t0 = time.perf_counter()
    rows: list[list[Any]] = []
    size = 0
    try:
        with client.query_row_block_stream(sql, settings={**limits(settings), "max_block_size": 1000}) as blocks:
            for block in blocks:
                for row in block:
                    values = [_jsonable(v) for v in row]
                    size += len(json.dumps(values, ensure_ascii=False, default=str)) + 1
                    if size > settings.query_max_result_bytes:
                        raise QueryRefused(422, "query_refused", "result larger than the row or byte limit ("
                                           f"its JSON passed {settings.query_max_result_bytes} bytes; cut there)")
                    rows.append(values)
            result = blocks.source  # its columns are known once the first block (or the header) was read
            columns, types = list(result.column_names), [t.name for t in result.column_types]
    except QueryRefused:
        raise
    except Exception as exc:
        if _CODE.search(str(exc)) is None:
            raise
        raise refusal(exc) from None
    return QueryResult(columns, types, rows, (time.perf_counter() - t0) * 1000)


def _jsonable(value: Any) -> Any:
    """A result value as JSON can carry it: text for dates, UUIDs, decimals, non-finite floats."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
