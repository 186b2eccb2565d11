-- share links the dashboard's owner revoked before their end (dashboard/revocations.py): a link's id (the SHA-256
-- of its token, hex: the token itself, which opens the link, is never stored), when it was revoked, and when the
-- link would have expired anyway (rows past that are deleted at the next revocation). The dashboard holds the
-- reader's credentials: migrate grants the reader role SELECT, INSERT and DELETE on this table.
CREATE TABLE IF NOT EXISTS share_revocations (
    link_id     text        PRIMARY KEY CHECK (length(link_id) = 64),
    revoked_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
REVOKE ALL ON share_revocations FROM PUBLIC;
