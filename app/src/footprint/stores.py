"""Connections to PostgreSQL and ClickHouse with clear startup errors."""

from __future__ import annotations

import re
from typing import Any

import clickhouse_connect
import psycopg
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import OperationalError

from footprint.settings import ClickHouseSettings


class StoreUnavailable(Exception):
    """A store cannot be reached or refuses the credentials (message is user-facing)."""


# Ran out of room, told by what the store says of itself, never by text a refused value could put in a
# message (a crafted event must not pass for an outage, or it would stall the consumer): PostgreSQL's
# SQLSTATE class 53 (insufficient resources: 53100 disk_full for ENOSPC, 53200 out_of_memory, ...) and
# ClickHouse's error code at the head of the message: NOT_ENOUGH_SPACE (243), or a failed write of a
# file (CANNOT_WRITE_TO_FILE_DESCRIPTOR, 75) with ENOSPC (errno 28).
_CH_CODE = re.compile(r"^Received ClickHouse exception, code: (\d+)")


def exhausted(exc: BaseException) -> bool:
    """Whether ``exc`` says the store ran out of room (disk, memory), whatever the data was."""
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate.startswith("53")
    m = _CH_CODE.match(str(exc))
    if m is None:
        return False
    code = int(m.group(1))
    return code == 243 or (code == 75 and "errno: 28," in str(exc))


def pg_connect(dsn: str, role: str = "writer", **kwargs: Any) -> psycopg.Connection[Any]:
    try:
        conn = psycopg.connect(dsn, connect_timeout=5, **kwargs)
    except psycopg.OperationalError as exc:
        text = " ".join(line.strip() for line in str(exc).strip().splitlines()) or repr(exc)
        raise StoreUnavailable(f"PostgreSQL ({role}): {text[:400]}") from None
    conn.execute("SET TIME ZONE 'UTC'")
    conn.commit()
    return conn


def ch_client(
    settings: ClickHouseSettings, role: str = "writer", database: str | None = None, host: tuple[str, int] | None = None
) -> Client:
    """A client of ``role`` to the first ClickHouse host of ``settings.ch_host`` that answers.

    Several hosts (a cluster's replicas): a host that cannot be reached is skipped (the next is
    tried, in order); one that answers with an error (a wrong password) is not, that is not a
    failover case. ``host`` pins one host (migrations run on every host of a cluster).
    """
    user, password = {
        "writer": (settings.ch_user, settings.ch_password),
        "owner": (settings.ch_owner_user, settings.ch_owner_password),
        "reader": (settings.ch_reader_user, settings.ch_reader_password),
    }[role]
    failures: list[str] = []
    for ch_host, ch_port in [host] if host else settings.ch_endpoints():
        try:
            return clickhouse_connect.get_client(
                host=ch_host,
                port=ch_port,
                username=user,
                password=password.get_secret_value(),
                database=settings.ch_database if database is None else database,
                connect_timeout=5,
                send_receive_timeout=60,
                autogenerate_session_id=False,
                secure=settings.ch_secure,
                verify=True,
                ca_cert=settings.ch_ca_cert or None,
            )
        except Exception as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            failures.append(f"ClickHouse ({role}, {user}@{ch_host}:{ch_port}): {msg[:300]}")
            if not isinstance(exc, OperationalError):  # answered: no other host would do better
                break
    raise StoreUnavailable("; ".join(failures))


def ch_shard_clients(settings: ClickHouseSettings, role: str = "owner") -> list[Client]:
    """One client per shard of the cluster ``settings.ch_cluster``, for work that must reach every
    shard's own (``*_local``) tables: of the hosts in ``ch_host``, in order, the first that answers
    for each shard (its ``shard`` macro). With replicas, one replica per shard is enough (the
    replicated tables carry a mutation to the others). A shard none of the hosts reached raises
    StoreUnavailable naming how many were reached: such work cannot skip a shard."""
    clients: dict[str, Client] = {}
    failures: list[str] = []
    shards = 0
    try:
        for endpoint in settings.ch_endpoints():
            try:
                client = ch_client(settings, role, host=endpoint)
            except StoreUnavailable as exc:
                failures.append(str(exc))
                continue
            try:
                shard = str(client.command("SELECT getMacro('shard')"))
                shards = shards or int(str(client.command(
                    "SELECT count(DISTINCT shard_num) FROM system.clusters WHERE cluster = {c:String}",
                    parameters={"c": settings.ch_cluster})))
            except BaseException:
                client.close()
                raise
            if shard in clients:
                client.close()
            else:
                clients[shard] = client
        if not shards or len(clients) < shards:
            reached = ", ".join(sorted(clients)) or "none"
            raise StoreUnavailable(
                f"ClickHouse cluster {settings.ch_cluster!r}: {len(clients)} of {shards or 'its'} shards reached"
                f" (shard macros: {reached}); every shard needs a reachable host in FOOTPRINT_CH_HOST"
                + ("; " + "; ".join(failures) if failures else ""))
    except BaseException:
        for client in clients.values():
            client.close()
        raise
    return list(clients.values())
