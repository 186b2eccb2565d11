-- The dashboard's top links per UTC day (footprint.stats: top links, and the visitors per day under a link prefix),
-- so that their exact visitor counts merge a link's daily visitor sets instead of its hourly ones in stats_hourly
-- (0003), which are split further by method and event name: one row per day, type and link of the human events,
-- with the events counted and the exact set of visitors (uniqExact, as stats_hourly: the answers stay equal to
-- PostgreSQL's count(DISTINCT visitor_id)). Counting is exact as in stats_hourly: the consumer inserts only ids
-- ClickHouse does not hold yet. Bots and synthetic events are left out, as in stats_hourly (0004).
-- The day is a Date32, as in breakdowns_daily (0008).
CREATE TABLE IF NOT EXISTS {db}.links_daily
(
    day       Date32,
    type      LowCardinality(String),
    link      String,
    events    SimpleAggregateFunction(sum, UInt64),
    visitors  AggregateFunction(uniqExact, String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (type, day, link);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.links_daily_mv TO {db}.links_daily AS
SELECT
    toDate32(footprint_time) AS day,
    type,
    link,
    count() AS events,
    uniqExactState(visitor_id) AS visitors
FROM {db}.events
WHERE NOT synthetic AND NOT bot
GROUP BY day, type, link;

-- the events stored before the view existed (as 0003's backfill: an event a running consumer writes in the
-- second the view was created in may be missed or counted twice; stop the consumer while migrating for an
-- exact backfill, or rebuild those days as erasure.py does)
INSERT INTO {db}.links_daily
SELECT toDate32(footprint_time) AS day, type, link, count(), uniqExactState(visitor_id)
FROM {db}.events FINAL
WHERE NOT synthetic AND NOT bot
  AND ingested_at < (SELECT max(metadata_modification_time) FROM system.tables
                     WHERE database = '{db}' AND name = 'links_daily_mv')
GROUP BY day, type, link;
