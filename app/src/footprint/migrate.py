"""Versioned, idempotent migrations for both stores (SQL files shipped in the package)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

from clickhouse_connect.driver.client import Client
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


def migrate_postgres(settings: Settings, until: int | None = None) -> list[str]:
    """Apply pending PostgreSQL migrations (up to version ``until``) as the owner; returns names applied."""
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
                if mig.version in done or (until is not None and mig.version > until):
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
    """Writer: SELECT/INSERT/UPDATE; reader: SELECT, and INSERT/DELETE on the dashboard's goals, funnels and
    revoked share links (only for roles that exist)."""
    from psycopg import Connection

    assert isinstance(conn, Connection)
    existing = {
        r[0]
        for r in conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)",
            ([settings.pg_writer_role, settings.pg_reader_role],),
        )
    }
    dashboard_tables = [name for name in ("goals", "funnels", "share_revocations")
                        if conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone() == (True,)]
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
        # the goals and funnels, the revoked share links: the dashboard (reader credentials) makes and deletes
        # them, stats reads the goals (once their migrations ran: `migrate --until` may stop before them)
        if dashboard_tables:
            conn.execute(sql.SQL("GRANT SELECT" + (", INSERT, DELETE" if role == settings.pg_reader_role else "")
                                 + " ON {} TO {}").format(sql.SQL(", ").join(map(sql.Identifier, dashboard_tables)),
                                                          sql.Identifier(role)))
    # the visitor salts: the collectors (writer role) make, read and destroy them; the reader never sees one
    if settings.pg_writer_role in existing:
        conn.execute(sql.SQL("GRANT SELECT, INSERT, TRUNCATE ON visitor_salts TO {}").format(
            sql.Identifier(settings.pg_writer_role)))


# --- a ClickHouse cluster (settings.ch_cluster) ---------------------------------------------------
# The tables of the migrations become replicated tables named <table>_local on every host, and
# <table> itself a Distributed table over them, so the app reads and writes the names it always
# did. Raw events (and their ids) are sharded by event_id: a replayed event always meets its first
# write on the same shard, where the ReplacingMergeTree and the event_ids lookup deduplicate it.
# The rollups are filled by materialized views on each host's local events; their Distributed
# tables have no sharding key and so refuse writes (only the views write them, locally). The closed
# visits (footprint.visitcloser) are written through their Distributed tables, spread at random:
# their readers take every shard's rows (closedvisits reads a day's newest row with argMax).
CLUSTER_TABLES: dict[str, str] = {
    "events": "cityHash64(event_id)",
    "event_ids": "cityHash64(event_id)",
    "link_hourly": "",
    "stats_hourly": "",
    "breakdowns_daily": "",
    "links_daily": "",
    "visitors_daily": "",
    "visits_closed": "rand()",
    "visits_days": "rand()",
}
REPLICA_PATH = "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'"
_TABLE_REF = re.compile(r"\{db\}\.(" + "|".join(CLUSTER_TABLES) + r")\b")
_CREATE_TABLE = re.compile(r"^CREATE TABLE IF NOT EXISTS \{db\}\.(\w+)\s")
_ENGINE = re.compile(r"\bENGINE = (\w*MergeTree)\b(?:\(\))?")
_ALTER_TABLE = re.compile(r"^ALTER TABLE \{db\}\.(\w+)\s")
_COLUMN_CHANGE = re.compile(r"\b(ADD|DROP|MODIFY|RENAME|COMMENT) COLUMN\b")


def cluster_statements(statements: list[str], cluster: str, replicated: bool = True) -> list[str]:
    """A migration's statements (with ``{db}``) for a cluster named ``cluster``, run on every host.

    CREATE TABLE of a known table -> the ``<table>_local`` (replicated, or with ``replicated``
    false the migration's own engine: shards without replicas) and the Distributed ``<table>``;
    every other reference to a known table -> its local table (views, indexes, backfills work on
    each host's own data); a column change -> on both. An unknown table raises:
    a new table needs its place in CLUSTER_TABLES, never a silent single-host table in a cluster.
    """
    out: list[str] = []
    for stmt in statements:
        local = _TABLE_REF.sub(r"{db}.\1_local", stmt)
        create = _CREATE_TABLE.match(stmt)
        if create:
            table = create.group(1)
            if table not in CLUSTER_TABLES or not _ENGINE.search(stmt):
                raise ValueError(f"{table}: a table the cluster layout does not know (migrate.CLUSTER_TABLES)")
            out.append(_ENGINE.sub(lambda m: f"ENGINE = Replicated{m.group(1)}({REPLICA_PATH})", local, count=1)
                       if replicated else local)
            key = f", {CLUSTER_TABLES[table]}" if CLUSTER_TABLES[table] else ""
            out.append(f"CREATE TABLE IF NOT EXISTS {{db}}.{table} AS {{db}}.{table}_local\n"
                       f"ENGINE = Distributed('{cluster}', '{{db}}', '{table}_local'{key})")
            continue
        out.append(local)
        alter = _ALTER_TABLE.match(stmt)
        if alter and alter.group(1) in CLUSTER_TABLES and _COLUMN_CHANGE.search(stmt):
            out.append(stmt)  # the Distributed table's columns follow its local table's
    return out


def clickhouse_statements(mig: Migration, settings: Settings) -> list[str]:
    """The statements of ``mig`` as run on a ClickHouse host (a single server or each host of a cluster)."""
    db = settings.ch_database
    if not settings.ch_cluster:
        return split_statements(mig.text.replace("{db}", db))
    statements = cluster_statements(split_statements(mig.text), settings.ch_cluster, settings.ch_replicated)
    return [s.replace("{db}", db) for s in statements]


# A cluster's owner waits for every replica to apply an ALTER of a replicated table before the
# next statement (and the next host) runs: the other replicas then find it done (IF NOT EXISTS).
CLUSTER_DDL_SETTINGS = {"alter_sync": 2}


def migrate_clickhouse(settings: Settings, until: int | None = None) -> list[str]:
    """Apply pending ClickHouse migrations (up to version ``until``) as the owner; returns names applied.

    A cluster (``ch_cluster``): every host of ``ch_host`` is migrated with its own
    schema_migrations (no ON CLUSTER: see the clickhouse role's README, "Several hosts"),
    one migration at a time on all of them before the next, so that the replicas of a table
    are created with the same structure; every host must answer. Returns the names applied
    on any host.
    """
    db = settings.ch_database
    hosts: list[tuple[str, int] | None] = list(settings.ch_endpoints()) if settings.ch_cluster else [None]
    clients: list[tuple[Client, set[int], str]] = []
    try:
        for host in hosts:
            client = ch_client(settings, "owner", database="", host=host)
            clients.append((client, _ch_prepare(client, db), f"{host[0]}:{host[1]}" if host else ""))
        applied: list[str] = []
        for mig in load("clickhouse"):
            for client, done, where in clients:
                if mig.version in done or (until is not None and mig.version > until):
                    continue
                # every statement is IF NOT EXISTS, so a half-applied migration simply re-runs
                for stmt in clickhouse_statements(mig, settings):
                    if settings.ch_cluster:
                        client.command(stmt, settings=CLUSTER_DDL_SETTINGS)
                    else:
                        client.command(stmt)
                client.insert(f"{db}.schema_migrations", [[mig.version, mig.name]], column_names=["version", "name"])
                if mig.name not in applied:
                    applied.append(mig.name)
                log.info("applied migration", extra={"store": "clickhouse", "migration": mig.name,
                                                     **({"host": where} if where else {})})
        return applied
    finally:
        for client, _, _ in clients:
            client.close()


def _ch_prepare(client: Client, db: str) -> set[int]:
    """The app database and schema_migrations exist on this host; returns the versions it applied."""
    if not client.command(f"EXISTS DATABASE {db}"):
        client.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    client.command(
        f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations"
        " (version UInt32, name String, applied_at DateTime DEFAULT now())"
        " ENGINE = ReplacingMergeTree ORDER BY version"
    )
    return {r[0] for r in client.query(f"SELECT version FROM {db}.schema_migrations FINAL").result_rows}
