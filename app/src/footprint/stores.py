"""Connections to PostgreSQL and ClickHouse with clear startup errors."""

from __future__ import annotations

from typing import Any

import clickhouse_connect
import psycopg
from clickhouse_connect.driver.client import Client

from footprint.settings import Settings


class StoreUnavailable(Exception):
    """A store cannot be reached or refuses the credentials (message is user-facing)."""


def pg_connect(dsn: str, role: str = "writer", **kwargs: Any) -> psycopg.Connection[Any]:
    try:
        conn = psycopg.connect(dsn, connect_timeout=5, **kwargs)
    except psycopg.OperationalError as exc:
        text = " ".join(line.strip() for line in str(exc).strip().splitlines()) or repr(exc)
        raise StoreUnavailable(f"PostgreSQL ({role}): {text[:400]}") from None
    conn.execute("SET TIME ZONE 'UTC'")
    conn.commit()
    return conn


def ch_client(settings: Settings, role: str = "writer", database: str | None = None) -> Client:
    user, password = {
        "writer": (settings.ch_user, settings.ch_password),
        "owner": (settings.ch_owner_user, settings.ch_owner_password),
        "reader": (settings.ch_reader_user, settings.ch_reader_password),
    }[role]
    try:
        return clickhouse_connect.get_client(
            host=settings.ch_host,
            port=settings.ch_port,
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
        raise StoreUnavailable(
            f"ClickHouse ({role}, {user}@{settings.ch_host}:{settings.ch_port}): {msg[:300]}"
        ) from None
