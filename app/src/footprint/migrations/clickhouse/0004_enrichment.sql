-- what the collector derives from an event's context (footprint.enrich): the referrer's host, the
-- UTM parameters, browser / OS / device class and the bot flag. Added with defaults, so rows
-- stored before (and writes by the previous release while an upgrade runs) read as "not known".
ALTER TABLE {db}.events
    ADD COLUMN IF NOT EXISTS referrer_host String,
    ADD COLUMN IF NOT EXISTS utm_source    String,
    ADD COLUMN IF NOT EXISTS utm_medium    String,
    ADD COLUMN IF NOT EXISTS utm_campaign  String,
    ADD COLUMN IF NOT EXISTS utm_term      String,
    ADD COLUMN IF NOT EXISTS utm_content   String,
    ADD COLUMN IF NOT EXISTS browser       LowCardinality(String),
    ADD COLUMN IF NOT EXISTS os            LowCardinality(String),
    ADD COLUMN IF NOT EXISTS device        LowCardinality(String),
    ADD COLUMN IF NOT EXISTS bot           Bool;

-- the rollups count human events: bots (stored, marked, countable in events) stay out of them.
-- MODIFY QUERY swaps a view's query in place: no insert is missed, as it would be between a
-- DROP and a CREATE while the consumer writes. (erasure.py rebuilds hours with the same filters.)
ALTER TABLE {db}.link_hourly_mv MODIFY QUERY
SELECT
    toStartOfHour(footprint_time) AS hour,
    link,
    uniqExactState(event_id) AS views,
    uniqExactState(visitor_id) AS visitors
FROM {db}.events
WHERE type = 'page' AND NOT synthetic AND NOT bot
GROUP BY hour, link;

ALTER TABLE {db}.stats_hourly_mv MODIFY QUERY
SELECT
    toStartOfHour(footprint_time) AS hour,
    type,
    link,
    method,
    event,
    count() AS events,
    uniqExactState(visitor_id) AS visitors
FROM {db}.events
WHERE NOT synthetic AND NOT bot
GROUP BY hour, type, link, method, event;
