-- every event_id ClickHouse holds, ordered by event_id: the consumer looks a batch's ids up here
-- before inserting, so a retry that differs from the first write (another type or hour, which
-- are in the sort key of events) is never a second row and never counted twice by the rollup
CREATE TABLE IF NOT EXISTS {db}.event_ids
(
    event_id UUID
)
ENGINE = ReplacingMergeTree
ORDER BY event_id
SETTINGS index_granularity = 1024;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.event_ids_mv TO {db}.event_ids AS
SELECT event_id FROM {db}.events;

-- the ids stored before this migration (a rerun only adds duplicates that merge away)
INSERT INTO {db}.event_ids SELECT event_id FROM {db}.events;
