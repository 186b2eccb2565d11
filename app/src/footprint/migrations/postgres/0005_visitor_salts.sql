-- the daily salt of the visitor ids, shared by every collector process and host (footprint.salts);
-- a day's row is deleted once the day is over. Granted to the writer only (migrate._pg_grants).
CREATE TABLE IF NOT EXISTS visitor_salts (
    day   date  PRIMARY KEY,
    salt  bytea NOT NULL CHECK (length(salt) = 32)
);
REVOKE ALL ON visitor_salts FROM PUBLIC;
