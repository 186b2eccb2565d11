-- The read side (GET /v1/events, the dashboard, erasure).

-- events by user: a bloom-filter skip index, so GET /v1/events?userId= and the erasure of a user
-- (DELETE /v1/users/{userId}) read only the granules that may hold that user
ALTER TABLE {db}.events ADD INDEX IF NOT EXISTS events_user_idx user_id TYPE bloom_filter(0.01) GRANULARITY 4;

ALTER TABLE {db}.events MATERIALIZE INDEX events_user_idx SETTINGS mutations_sync = 2;

-- every statistic of the dashboard per hour, type, link, method and event name (non-synthetic):
-- a count and the set of visitors. Counting (not a set of event ids, as link_hourly does) is exact
-- because the consumer inserts only the ids ClickHouse does not hold yet (event_ids, migration 0002),
-- and it keeps every dashboard query small however many events there are.
CREATE TABLE IF NOT EXISTS {db}.stats_hourly
(
    hour      DateTime('UTC'),
    type      LowCardinality(String),
    link      String,
    method    LowCardinality(String),
    event     String,
    events    SimpleAggregateFunction(sum, UInt64),
    visitors  AggregateFunction(uniqExact, String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, type, link, method, event);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.stats_hourly_mv TO {db}.stats_hourly AS
SELECT
    toStartOfHour(footprint_time) AS hour,
    type,
    link,
    method,
    event,
    count() AS events,
    uniqExactState(visitor_id) AS visitors
FROM {db}.events
WHERE NOT synthetic
GROUP BY hour, type, link, method, event;

-- the events stored before the view existed (ingested before the second it was created in: an event
-- a running consumer writes in that very second may be missed or counted twice; stop the consumer
-- while migrating for an exact backfill, or rebuild those hours as erasure.py does)
INSERT INTO {db}.stats_hourly
SELECT toStartOfHour(footprint_time) AS hour, type, link, method, event, count(), uniqExactState(visitor_id)
FROM {db}.events FINAL
WHERE NOT synthetic
  AND ingested_at < (SELECT max(metadata_modification_time) FROM system.tables
                     WHERE database = '{db}' AND name = 'stats_hourly_mv')
GROUP BY hour, type, link, method, event;
