"""Versioned, idempotent migrations for both stores (SQL files shipped in the package)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

from psycopg import sql

from footprint.settings import Settings
from footprint.stores import ch_client, pg_connect

log = logging.getLogger("footprint.migrate")
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
PG_LOCK_KEY = 0x466F6F74  # advisory lock: one migrator at a time


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    text: str


def load(store: str) -> list[Migration]:
    """The migrations of ``store`` ("postgres" or "clickhouse") in version order."""
    folder = resources.files("footprint") / "migrations" / store
    out = []
    for entry in folder.iterdir():
        m = _NAME.match(entry.name)
        if m:
            out.append(Migration(int(m.group(1)), entry.name, entry.read_text()))
    out.sort(key=lambda x: x.version)
    if len({x.version for x in out}) != len(out):
        raise RuntimeError(f"duplicate migration version in {store}")
    return out


def split_statements(text: str) -> list[str]:
    """Split a migration on ``;`` at line ends; drops comment-only chunks."""
    parts = re.split(r";\s*(?:\n|$)", text)
    out = []
    for part in parts:
        body = "\n".join(line for line in part.splitlines() if not line.strip().startswith("--")).strip()
        if body:
            out.append(body)
    return out


def migrate_postgres(settings: Settings) -> list[str]:
    """Apply pending PostgreSQL migrations as the owner; returns names applied."""
    applied: list[str] = []
    with pg_connect(settings.pg_owner_dsn.get_secret_value(), "owner") as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (PG_LOCK_KEY,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            conn.commit()
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            for mig in load("postgres"):
                if mig.version in done:
                    continue
                with conn.transaction():
                    conn.execute(mig.text.encode())  # psycopg: multiple statements, one transaction
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (mig.version, mig.name)
                    )
                applied.append(mig.name)
                log.info("applied migration", extra={"store": "postgres", "migration": mig.name})
            _pg_grants(conn, settings)
            conn.commit()
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (PG_LOCK_KEY,))
            conn.commit()
    return applied


def _pg_grants(conn: object, settings: Settings) -> None:
    """Writer: SELECT/INSERT/UPDATE; reader: SELECT (only for roles that exist)."""
    from psycopg import Connection

    assert isinstance(conn, Connection)
    existing = {
        r[0]
        for r in conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)",
            ([settings.pg_writer_role, settings.pg_reader_role],),
        )
    }
    grants = [
        (settings.pg_writer_role, "SELECT, INSERT, UPDATE"),
        (settings.pg_reader_role, "SELECT"),
    ]
    for role, privs in grants:
        if role not in existing:
            log.warning("role missing, grant skipped", extra={"role": role})
            continue
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(sql.Identifier(role)))
        conn.execute(
            sql.SQL("GRANT " + privs + " ON events TO {}").format(sql.Identifier(role))
        )
        conn.execute(sql.SQL("GRANT SELECT ON schema_migrations TO {}").format(sql.Identifier(role)))
        # erasure requests: written by the owner (who erases); the consumer drops erased users' events
        conn.execute(sql.SQL("GRANT SELECT ON erasure_requests TO {}").format(sql.Identifier(role)))


def migrate_clickhouse(settings: Settings) -> list[str]:
    """Apply pending ClickHouse migrations as the owner; returns names applied."""
    db = settings.ch_database
    client = ch_client(settings, "owner", database="")
    try:
        if not client.command(f"EXISTS DATABASE {db}"):
            client.command(f"CREATE DATABASE IF NOT EXISTS {db}")
        client.command(
            f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations"
            " (version UInt32, name String, applied_at DateTime DEFAULT now())"
            " ENGINE = ReplacingMergeTree ORDER BY version"
        )
        done = {r[0] for r in client.query(f"SELECT version FROM {db}.schema_migrations FINAL").result_rows}
        applied = []
        for mig in load("clickhouse"):
            if mig.version in done:
                continue
            # every statement is IF NOT EXISTS, so a half-applied migration simply re-runs
            for stmt in split_statements(mig.text.replace("{db}", db)):
                client.command(stmt)
            client.insert(f"{db}.schema_migrations", [[mig.version, mig.name]], column_names=["version", "name"])
            applied.append(mig.name)
            log.info("applied migration", extra={"store": "clickhouse", "migration": mig.name})
        return applied
    finally:
        client.close()
