-- Retention (footprint.retention): the raw events and the hourly rollups are partitioned by month
-- already (0001, 0003); the retention job drops their expired months and sets their TTL. The
-- consumer's id lookup (event_ids, 0002) must forget an id when its event leaves, as PostgreSQL
-- does when it drops the event's partition: it now holds each id's footprint_time.
-- Ids stored before this migration read as year 2199 (never expired) until the backfill below
-- gives them their time: ReplacingMergeTree keeps the last inserted row of an id, and the
-- OPTIMIZE merges it now.
ALTER TABLE {db}.event_ids
    ADD COLUMN IF NOT EXISTS footprint_time DateTime64(6, 'UTC') DEFAULT toDateTime64('2199-12-31 00:00:00', 6, 'UTC');

ALTER TABLE {db}.event_ids_mv MODIFY QUERY
SELECT event_id, footprint_time FROM {db}.events;

INSERT INTO {db}.event_ids (event_id, footprint_time) SELECT event_id, footprint_time FROM {db}.events;

OPTIMIZE TABLE {db}.event_ids FINAL;
