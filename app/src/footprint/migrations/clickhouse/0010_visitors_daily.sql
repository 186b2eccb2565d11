-- The dashboard's chart of unique visitors per day as an estimate (footprint.stats.APPROXIMATE): one row per UTC
-- day and type of the human events with a HyperLogLog sketch of their visitors (uniqCombined64 with 2^12 cells:
-- exact up to about 100 visitors, then about 1.6 % relative standard error), which merges in constant space
-- however many visitors a day has and however many parts hold it. The exact count stays where it was (the daily
-- breakdowns' visitor sets, 0008): the stores panel, `footprint stats` and the chart's CSV export read it.
-- Bots and synthetic events are left out, as in stats_hourly (0004). The day is a Date32, as in 0008.
CREATE TABLE IF NOT EXISTS {db}.visitors_daily
(
    day       Date32,
    type      LowCardinality(String),
    visitors  AggregateFunction(uniqCombined64(12), String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (type, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.visitors_daily_mv TO {db}.visitors_daily AS
SELECT
    toDate32(footprint_time) AS day,
    type,
    uniqCombined64State(12)(visitor_id) AS visitors
FROM {db}.events
WHERE NOT synthetic AND NOT bot
GROUP BY day, type;

-- the events stored before the view existed (as 0003's backfill: stop the consumer while migrating for an exact
-- backfill, or rebuild those days as erasure.py does)
INSERT INTO {db}.visitors_daily
SELECT toDate32(footprint_time) AS day, type, uniqCombined64State(12)(visitor_id)
FROM {db}.events FINAL
WHERE NOT synthetic AND NOT bot
  AND ingested_at < (SELECT max(metadata_modification_time) FROM system.tables
                     WHERE database = '{db}' AND name = 'visitors_daily_mv')
GROUP BY day, type;
