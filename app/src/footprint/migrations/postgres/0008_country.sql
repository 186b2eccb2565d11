-- the visitor's country (ISO 3166-1 alpha-2), resolved at the collector from the client address before the
-- address is dropped (footprint.countries), or named by the event (context.location.country). Added with a
-- default, so events stored before (and writes by the previous release while an upgrade runs) read as
-- "not known" (''). Adding a column with a constant default rewrites no partition.
ALTER TABLE events ADD COLUMN IF NOT EXISTS country text NOT NULL DEFAULT '';
