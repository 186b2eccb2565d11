-- the daily salt of the visitor ids, shared by every collector process and host (footprint.salts).
-- UNLOGGED: never in the WAL, so never in a replica or an archived segment (a crash empties it: the
-- day then gets a new salt). A past day's row is removed by TRUNCATE (its file is gone, not left as
-- a dead row until a vacuum). Granted to the writer only (migrate._pg_grants).
CREATE UNLOGGED TABLE IF NOT EXISTS visitor_salts (
    day   date  PRIMARY KEY,
    salt  bytea NOT NULL CHECK (length(salt) = 32)
);
REVOKE ALL ON visitor_salts FROM PUBLIC;
