-- raw events, deduplicated by event_id (the sort key ends in event_id and every other
-- sort-key column is a function of the event itself, so replays collapse on merge; queries use FINAL)
CREATE TABLE IF NOT EXISTS {db}.events
(
    event_id        UUID,
    type            LowCardinality(String),
    event           String,
    method          LowCardinality(String),
    link            String,
    user_id         String,
    anonymous_id    String,
    group_id        String,
    visitor_id      String,
    properties      String,
    traits          String,
    footprint_time  DateTime64(6, 'UTC'),
    received_at     DateTime64(6, 'UTC'),
    schema_version  UInt16,
    synthetic       Bool,
    ingested_at     DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(footprint_time)
ORDER BY (type, synthetic, toStartOfHour(footprint_time), link, event_id);

-- page views and unique visitors per link per hour; views = uniqExact(event_id) so that a
-- replayed insert (at-least-once delivery) never inflates the rollup
CREATE TABLE IF NOT EXISTS {db}.link_hourly
(
    hour      DateTime('UTC'),
    link      String,
    views     AggregateFunction(uniqExact, UUID),
    visitors  AggregateFunction(uniqExact, String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, link);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.link_hourly_mv TO {db}.link_hourly AS
SELECT
    toStartOfHour(footprint_time) AS hour,
    link,
    uniqExactState(event_id) AS views,
    uniqExactState(visitor_id) AS visitors
FROM {db}.events
WHERE type = 'page' AND NOT synthetic
GROUP BY hour, link;
