"""The migrations of both stores and the contract's field table agree: every column of the table, in its
order and of its store type, and no other (the store-only columns aside). Read from the SQL here;
``tests/integration/test_contract_stores.py`` reads the same from the real stores after migrating them.

The comparison (``contract.column_disagreements``) is shown to fail on deliberately altered copies of the
table and of the migrations."""

from __future__ import annotations

import dataclasses
import re

import pytest

from footprint.contract import COLUMNS, STORE_ONLY_COLUMNS, Column, Store, column_disagreements, store_columns
from footprint.migrate import load

STORES: tuple[Store, ...] = ("postgres", "clickhouse")
# where a column's type ends in a definition: the constraints and defaults that follow it
_TYPE_END = re.compile(
    r"\s+(?:NOT\s+NULL|NULL|DEFAULT|PRIMARY|CHECK|REFERENCES|CODEC|MATERIALIZED|ALIAS|TTL|COMMENT)\b", re.I)
_ON_EVENTS = re.compile(r"\s*(?:--[^\n]*\n\s*)*ALTER TABLE (?:IF EXISTS )?(?:\{db\}\.)?events\b(.*)", re.S)


def _type(definition: str) -> str:
    return _TYPE_END.split(definition.strip(), maxsplit=1)[0].strip()


def migrated_columns(sql: str) -> list[tuple[str, str]]:
    """``(name, type)`` of the events table after every statement of ``sql`` (all migrations of a store,
    in order): its ``CREATE TABLE``, then each ``ADD COLUMN``. A statement that would change the table's
    columns otherwise fails the test: this reader would have to learn it first."""
    body = re.search(r"CREATE TABLE IF NOT EXISTS (?:\{db\}\.)?events\s*\((.*?)\n\)", sql, re.S)
    assert body, "no CREATE TABLE events"
    out = []
    for line in body.group(1).splitlines():
        line = line.split("--")[0].strip().rstrip(",")
        if line and not line.upper().startswith(("PRIMARY", "CHECK", "INDEX", "CONSTRAINT")):
            name, definition = line.split(None, 1)
            out.append((name, _type(definition)))
    for statement in sql.split(";"):
        on_events = _ON_EVENTS.match(statement)
        if not on_events:
            continue
        changes = on_events.group(1)
        assert not re.search(r"\b(?:DROP|RENAME|MODIFY|ALTER)\s+COLUMN\b", changes, re.I), (
            f"a migration changes a column of events in a way this test cannot read yet: {statement.strip()[:200]}")
        for name, definition in re.findall(r"ADD COLUMN IF NOT EXISTS (\w+)\s+([^,;\n]+)", changes):
            out.append((name, _type(definition)))
    return out


def migrations_sql(store: Store) -> str:
    return "\n".join(m.text for m in load(store))


@pytest.mark.parametrize("store", STORES)
def test_each_stores_migrations_hold_exactly_the_field_tables_columns(store: Store) -> None:
    found = migrated_columns(migrations_sql(store))
    assert column_disagreements(found, store) == []
    assert [n for n, _ in found if n not in STORE_ONLY_COLUMNS] == [c.name for c in COLUMNS]


def test_the_reader_sees_every_column_with_its_type() -> None:
    """The reader itself: what it finds is what the migrations say (a reader finding nothing would agree
    with nothing)."""
    pg = dict(migrated_columns(migrations_sql("postgres")))
    ch = dict(migrated_columns(migrations_sql("clickhouse")))
    assert pg["event_id"] == "uuid" and pg["footprint_time"] == "timestamptz" and pg["country"] == "text"
    assert ch["footprint_time"] == "DateTime64(6, 'UTC')" and ch["browser"] == "LowCardinality(String)"
    assert pg["ingested_at"] == "timestamptz" and ch["ingested_at"] == "DateTime64(6, 'UTC')"
    assert len(pg) == len(ch) == len(COLUMNS) + len(STORE_ONLY_COLUMNS)


def _replace(name: str, **changes: str) -> tuple[Column, ...]:
    return tuple(dataclasses.replace(c, **changes) if c.name == name else c for c in COLUMNS)


def _swap(a: str, b: str) -> tuple[Column, ...]:
    i, j = COLUMN_INDEX[a], COLUMN_INDEX[b]
    out = list(COLUMNS)
    out[i], out[j] = out[j], out[i]
    return tuple(out)


COLUMN_INDEX = {c.name: i for i, c in enumerate(COLUMNS)}
ALTERED_TABLES = {
    "a field the migrations lack": (
        (*COLUMNS, Column("plan", "short", "text", "String")), ["column plan is in the field table"]),
    "a field dropped from the table": (
        tuple(c for c in COLUMNS if c.name != "device"), ["column device is in the store but not"]),
    "a PostgreSQL type changed": (_replace("link", pg_type="varchar"), ["postgres: column link is text"]),
    "a ClickHouse type changed": (_replace("browser", ch_type="String"), ["clickhouse: column browser is"]),
    "two fields swapped": (_swap("user_id", "anonymous_id"), ["columns in another order"]),
}


@pytest.mark.parametrize("case", ALTERED_TABLES)
def test_an_altered_field_table_disagrees_with_the_migrations(case: str) -> None:
    table, expected = ALTERED_TABLES[case]
    problems = [p for store in STORES
                for p in column_disagreements(migrated_columns(migrations_sql(store)), store, table)]
    assert problems, case
    for text in expected:
        assert any(text in p for p in problems), (case, problems)


@pytest.mark.parametrize(("store", "extra", "expected"), [
    ("postgres", "ALTER TABLE events ADD COLUMN IF NOT EXISTS plan text NOT NULL DEFAULT '';",
     "column plan is in the store but not in the field table"),
    ("clickhouse", "ALTER TABLE {db}.events ADD COLUMN IF NOT EXISTS plan String;",
     "column plan is in the store but not in the field table"),
])
def test_a_migration_the_table_does_not_know_disagrees(store: Store, extra: str, expected: str) -> None:
    found = migrated_columns(migrations_sql(store) + "\n" + extra)
    assert any(expected in p for p in column_disagreements(found, store))


def test_a_migration_this_reader_cannot_follow_fails_loudly() -> None:
    with pytest.raises(AssertionError, match="cannot read yet"):
        migrated_columns(migrations_sql("postgres") + "\nALTER TABLE events DROP COLUMN os;")


def test_the_store_column_lists_are_the_table_in_each_stores_types() -> None:
    assert store_columns("postgres")[:2] == [("event_id", "uuid"), ("type", "text")]
    assert store_columns("clickhouse")[:2] == [("event_id", "UUID"), ("type", "LowCardinality(String)")]
    assert column_disagreements(store_columns("postgres"), "postgres") == [
        "postgres: the store-only column ingested_at is missing"]
