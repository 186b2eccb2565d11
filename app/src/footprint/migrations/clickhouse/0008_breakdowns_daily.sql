-- The dashboard's breakdowns per UTC day (footprint.stats: referrers, UTM source / medium / campaign,
-- browsers, OS, devices, countries, bots per day, bot agents), so that none reads the raw events:
-- one row per day, type, bot flag, dimension (the enrichment column's name) and its value, with the
-- events counted and, for the countries of human events, the set of visitors. Every event gives one
-- row to each dimension (ARRAY JOIN), so any one dimension's rows also count all events (bots per day).
-- Counting is exact as in stats_hourly (0003): the consumer inserts only ids ClickHouse does not hold yet.
-- The day is a Date32, which holds every day the contract takes (2000..2199) without saturating.
CREATE TABLE IF NOT EXISTS {db}.breakdowns_daily
(
    day        Date32,
    type       LowCardinality(String),
    bot        Bool,
    dimension  LowCardinality(String),
    value      String,
    events     SimpleAggregateFunction(sum, UInt64),
    visitors   AggregateFunction(uniqExact, String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (dimension, bot, type, day, value);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.breakdowns_daily_mv TO {db}.breakdowns_daily AS
SELECT
    toDate32(footprint_time) AS day,
    type,
    bot,
    dimension,
    value,
    count() AS events,
    uniqExactStateIf(visitor_id, dimension = 'country' AND NOT bot) AS visitors
FROM {db}.events
ARRAY JOIN
    ['referrer_host', 'utm_source', 'utm_medium', 'utm_campaign', 'browser', 'os', 'device', 'country'] AS dimension,
    [referrer_host, utm_source, utm_medium, utm_campaign, toString(browser), toString(os), toString(device),
     toString(country)] AS value
WHERE NOT synthetic
GROUP BY day, type, bot, dimension, value;

-- the events stored before the view existed (as 0003's backfill: an event a running consumer writes in the
-- second the view was created in may be missed or counted twice; stop the consumer while migrating for an
-- exact backfill, or rebuild those days as erasure.py does)
INSERT INTO {db}.breakdowns_daily
SELECT toDate32(footprint_time) AS day, type, bot, dimension, value, count(),
       uniqExactStateIf(visitor_id, dimension = 'country' AND NOT bot)
FROM {db}.events FINAL
ARRAY JOIN
    ['referrer_host', 'utm_source', 'utm_medium', 'utm_campaign', 'browser', 'os', 'device', 'country'] AS dimension,
    [referrer_host, utm_source, utm_medium, utm_campaign, toString(browser), toString(os), toString(device),
     toString(country)] AS value
WHERE NOT synthetic
  AND ingested_at < (SELECT max(metadata_modification_time) FROM system.tables
                     WHERE database = '{db}' AND name = 'breakdowns_daily_mv')
GROUP BY day, type, bot, dimension, value;
