"""Share links revoked by the dashboard's owner before their end, kept in PostgreSQL (``share_revocations``,
migration 0010) by the link's id: the SHA-256 of its token (the token, which opens the link, is never stored).
Every request of a share link asks here; PostgreSQL unreachable: the link is refused for now (503), never
opened unchecked."""

from __future__ import annotations

import hashlib
from datetime import datetime

from footprint.settings import Settings
from footprint.stores import pg_connect


def link_id(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class Revocations:
    def __init__(self, settings: Settings) -> None:
        self._dsn = settings.pg_reader_dsn.get_secret_value()

    def revoked_at(self, token: str) -> datetime | None:
        """When the link of ``token`` was revoked, or None; ``StoreUnavailable`` when PostgreSQL cannot say."""
        with pg_connect(self._dsn, "reader") as conn:
            row = conn.execute("SELECT revoked_at FROM share_revocations WHERE link_id = %s",
                               (link_id(token),)).fetchone()
        return row[0] if row else None

    def revoke(self, token: str, expires_at: datetime) -> datetime:
        """Revoke the link of ``token`` (which ends at ``expires_at``); when it was revoked (the first time)."""
        with pg_connect(self._dsn, "reader") as conn:
            conn.execute("DELETE FROM share_revocations WHERE expires_at < now()")  # links that ended anyway
            conn.execute("INSERT INTO share_revocations (link_id, expires_at) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                         (link_id(token), expires_at))
            row = conn.execute("SELECT revoked_at FROM share_revocations WHERE link_id = %s",
                               (link_id(token),)).fetchone()
        assert row is not None
        when: datetime = row[0]
        return when
