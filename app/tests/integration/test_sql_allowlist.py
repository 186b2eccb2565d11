"""The SQL API allows what it knows to be safe (issue 28, item 2): functions from ClickHouse's own
parse checked against the allowlist, a property-based search over ClickHouse's whole function list,
and a byte limit that holds for one large block."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pydantic import SecretStr

from footprint.collector import create_app
from footprint.settings import Settings
from footprint.sqlapi import function_allowed
from helpers import ch_client
from services import REPO

PRIVATE = {"Authorization": "Bearer private-key"}


@pytest.fixture(scope="module")
def api(base_settings: Settings) -> Iterator[TestClient]:
    settings = base_settings.model_copy(update={"private_keys": [SecretStr("private-key")],
                                                "query_max_execution_seconds": 2.0})
    with TestClient(create_app(settings, _NoKafka())) as client:
        yield client


class _NoKafka:
    def __init__(self) -> None:
        from footprint.metrics import CollectorMetrics

        self.metrics = CollectorMetrics()

    async def deliver(self, events: Any, timeout: float, received_at: Any = None) -> str | None:
        return "no Kafka in this test"

    def ready(self) -> str | None:
        return None

    def queue_length(self) -> int:
        return 0


def _sql(api: TestClient, sql: str) -> Any:
    return api.post("/v1/queries", json={"sql": sql}, headers=PRIVATE)


@pytest.mark.parametrize("sql", [
    "SELECT file('/etc/passwd')",
    "SELECT FILE('/etc/passwd')",
    "SELECT hostName()",
    "SELECT getSetting('max_threads')",
    "SELECT version()",
    "SELECT currentUser()",
    "SELECT dictGet('d', 'x', 1)",
    "SELECT link FROM events WHERE link = toString(sleepEachRow(1))",
    "SELECT count() FROM events WHERE link IN (SELECT file('/proc/self/environ'))",
    # calls the query does not name: APPLY, and SQL's words the server runs as functions
    "SELECT * APPLY(x -> hostName()) FROM events LIMIT 1",
    "SELECT COLUMNS('link') APPLY(toString) FROM events LIMIT 1",
    "SELECT CURRENT_USER",
    "SELECT currentUser",
])
def test_a_function_that_reaches_outside_the_query_is_refused_naming_it(api: TestClient, sql: str) -> None:
    r = _sql(api, sql)
    assert r.status_code == 403, r.text
    assert "not allowed" in r.json()["detail"]


def test_ordinary_analytics_sql_is_allowed(api: TestClient) -> None:
    r = _sql(api, "SELECT lower(link) AS l, countIf(type = 'page') AS pages, uniqExactIf(visitor_id, NOT bot) AS v,"
                  " LOWER('A'), lcase('B'), arrayMap(x -> x * 2, [1, 2]), count(DISTINCT event),"
                  " toStartOfHour(footprint_time) AS h, quantile(0.5)(length(link)), sumIf(1, type = 'track')"
                  " FROM events GROUP BY l, h ORDER BY pages DESC LIMIT 5")
    assert r.status_code == 200, r.text


def test_one_large_block_is_cut_at_the_byte_limit(api: TestClient) -> None:
    r = _sql(api, "SELECT repeat(repeat('x', 1000), 17000) AS big")  # one row, one block: more than 16 MiB
    assert r.status_code == 422, r.text[:300]
    assert "byte limit" in r.json()["detail"]
    assert _sql(api, "SELECT repeat('x', 1000) AS small").status_code == 200


def _functions(base_settings: Settings) -> tuple[list[str], list[str]]:
    client = ch_client(base_settings)
    try:
        scalar = [r[0] for r in client.query("SELECT name FROM system.functions ORDER BY name").result_rows]
        tables = [r[0] for r in client.query("SELECT name FROM system.table_functions ORDER BY name").result_rows]
    finally:
        client.close()
    return scalar, tables


ARGUMENTS = ["", "'x'", "1", "link", "'/etc/passwd'", "1, 2", "link, 'x'"]


@pytest.mark.parametrize("kind", ["function", "table function"])
def test_nothing_outside_the_allowlist_ever_answers_200(api: TestClient, base_settings: Settings, kind: str) -> None:
    """Property: any function of ClickHouse's own list, called with argument shapes drawn at random,
    as a scalar or as a table source, answers 200 only if the allowlist allows it."""
    scalar, tables = _functions(base_settings)
    names = scalar if kind == "function" else tables
    outside = [n for n in names if not function_allowed(n)]
    assert len(outside) > 50  # the search has something to find

    @hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(name=st.sampled_from(names), args=st.sampled_from(ARGUMENTS))
    def search(name: str, args: str) -> None:
        sql = (f"SELECT {name}({args}) FROM events LIMIT 1" if kind == "function"
               else f"SELECT * FROM {name}({args}) LIMIT 1")
        r = _sql(api, sql)
        assert r.status_code < 500, (sql, r.text[:300])
        if r.status_code == 200:
            assert function_allowed(name), f"{sql} answered 200, but {name} is not on the allowlist"

    search()


def test_the_allowlist_file_is_what_the_engine_gives() -> None:
    import subprocess

    res = subprocess.run([sys.executable, str(REPO / "app/tools/sql_allowlist.py"), "--check"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr



def test_exists_grouping_and_subqueries_still_answer(api: TestClient) -> None:
    r = _sql(api, "SELECT number % 2 AS k, grouping(k), count() FROM numbers(10) WHERE EXISTS (SELECT 1) AND "
                  "number NOT IN (SELECT toUInt64(length(link)) FROM events FINAL LIMIT 3) GROUP BY k WITH ROLLUP")
    assert r.status_code == 200, r.text
    assert r.json()["columns"] == ["k", "grouping(k)", "count()"] and len(r.json()["rows"]) == 3
