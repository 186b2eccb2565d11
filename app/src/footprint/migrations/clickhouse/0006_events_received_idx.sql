-- footprint audit (audit.py) counts the events of every hour of received_at (when the collector
-- received them: their Kafka messages' timestamp). events is partitioned and sorted by footprint_time,
-- which for almost every event is its received_at or shortly before: a minmax index on received_at
-- lets a range of it skip the granules (and so the parts) outside it.
ALTER TABLE {db}.events ADD INDEX IF NOT EXISTS events_received_idx received_at TYPE minmax GRANULARITY 1;

ALTER TABLE {db}.events MATERIALIZE INDEX events_received_idx SETTINGS mutations_sync = 2;
