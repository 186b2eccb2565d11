-- Raw events in monthly partitions (by footprint_time, UTC), so that the retention job
-- (footprint.retention) drops a month as one table instead of deleting its rows.
--
-- An install of an earlier release moves over without copying its rows: the existing table
-- becomes the partition events_legacy, holding everything before next month (its rows with a
-- later footprint_time move to their partitions), and is dropped whole once its newest month has
-- passed the retention. A new install (no rows yet) starts with this month's partition instead.
-- Every month from then on has its own partition, made three months ahead by the migration and
-- then by the retention job; events_default takes the times no partition covers (older months,
-- far ahead), and the retention job moves the months it holds that are kept into partitions of
-- their own, deleting only the few expired rows left there.
--
-- A partitioned table's unique keys must hold the partition key: the key is now
-- (event_id, footprint_time). It still catches every redelivery of a message (same id, same time).
-- An id that may come back with another time (a client's messageId) is looked up in every
-- partition before the insert (pgrows.INSERT_FROM_STAGE): first write wins, as before.
DO $$
DECLARE
    this_month date := date_trunc('month', now() AT TIME ZONE 'UTC')::date;
    next_month date := (this_month + interval '1 month')::date;
    bound text := to_char(next_month, 'YYYY-MM-DD') || ' 00:00:00+00';
    legacy boolean;
    first_month date;
    month date;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = 'events'::regclass) THEN
        RETURN;
    END IF;
    ALTER TABLE events RENAME TO events_legacy;
    ALTER INDEX events_pkey RENAME TO events_legacy_event_id_key;
    ALTER INDEX events_user_idx RENAME TO events_legacy_user_idx;
    ALTER INDEX events_human_page_time_idx RENAME TO events_legacy_human_page_time_idx;
    ALTER INDEX events_human_page_link_idx RENAME TO events_legacy_human_page_link_idx;

    CREATE TABLE events (LIKE events_legacy INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)
        PARTITION BY RANGE (footprint_time);

    -- rows dated next month or later: out of events_legacy, back in through the new table below
    CREATE TEMP TABLE events_moving ON COMMIT DROP AS
        SELECT * FROM events_legacy WHERE footprint_time >= bound::timestamptz;
    DELETE FROM events_legacy WHERE footprint_time >= bound::timestamptz;

    legacy := EXISTS (SELECT FROM events_legacy);
    IF legacy THEN
        -- a partition has the partitioned table's key, built below: its own (event_id alone) goes
        ALTER TABLE events_legacy DROP CONSTRAINT events_legacy_event_id_key;
        EXECUTE format('ALTER TABLE events ATTACH PARTITION events_legacy FOR VALUES FROM (MINVALUE) TO (%L)', bound);
        first_month := next_month;
    ELSE
        DROP TABLE events_legacy;
        first_month := this_month;
    END IF;
    -- the indexes of the partitioned table; those events_legacy has already are attached, not rebuilt
    ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY (event_id, footprint_time);
    CREATE INDEX events_user_idx ON events (user_id) WHERE user_id <> '';
    CREATE INDEX events_human_page_time_idx ON events (footprint_time)
        INCLUDE (link, method, visitor_id) WHERE type = 'page' AND NOT synthetic AND NOT bot;
    CREATE INDEX events_human_page_link_idx ON events (link, footprint_time)
        WHERE type = 'page' AND NOT synthetic AND NOT bot;

    FOR i IN 0..3 LOOP
        month := first_month + make_interval(months => i);
        EXECUTE format('CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)',
                       'events_' || to_char(month, 'YYYY_MM'),
                       to_char(month, 'YYYY-MM-DD') || ' 00:00:00+00',
                       to_char(month + interval '1 month', 'YYYY-MM-DD') || ' 00:00:00+00');
    END LOOP;
    CREATE TABLE events_default PARTITION OF events DEFAULT;

    INSERT INTO events SELECT * FROM events_moving;
END
$$;
