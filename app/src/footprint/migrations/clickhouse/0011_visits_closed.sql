-- The visits of the days that ended, stored (`footprint close-visits`, footprint.visitcloser), so that the
-- dashboard's visits, entry and exit pages read each closed day's visits instead of making them again from its
-- raw events every time (footprint.closedvisits, footprint.stats._visits): per event type ('' for every type
-- together), session timeout (gap_us) and day, the visits counted per entry page, exit page and what the filters
-- read on a visit's first event (its referrer host, device, browser, OS and country): how many, how many of one
-- event (bounces), the sums of their durations and of their events. A row's key is unique (a GROUP BY makes the
-- rows), so a ReplacingMergeTree, which the owner may create, keeps every row. A day's rows count only while its
-- row in visits_days names them (closedvisits.standing).
CREATE TABLE IF NOT EXISTS {db}.visits_closed
(
    type           LowCardinality(String),
    gap_us         Int64,
    day            Date32,
    closed_at      DateTime64(6, 'UTC'),
    entry_link     String,
    exit_link      String,
    referrer_host  String,
    device         LowCardinality(String),
    browser        LowCardinality(String),
    os             LowCardinality(String),
    country        LowCardinality(String),
    visits         UInt64,
    bounces        UInt64,
    duration_us    Int64,
    pages          UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (type, gap_us, day, closed_at, entry_link, exit_link, referrer_host, device, browser, os, country);

-- Each closed day of a type and timeout: when its visits were made (closed_at; 0: not closed, as an erasure
-- leaves the days it touched), which of them (through_us: those that start before it, the day's end once the
-- whole day is closed; today's and yesterday's up to their first visit still going on), how far they reach
-- (reach_us: through_us, or the last event of one of them plus the timeout if later; no later event can change
-- them), and when its events were last found unchanged (verified_at). A day's row with the newest verified_at
-- counts (closedvisits reads them with argMax, so that in a cluster the rows of one day may lie on any shard).
CREATE TABLE IF NOT EXISTS {db}.visits_days
(
    type           LowCardinality(String),
    gap_us         Int64,
    day            Date32,
    closed_at      DateTime64(6, 'UTC'),
    through_us     Int64,
    reach_us       Int64,
    verified_at    DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(verified_at)
PARTITION BY toYYYYMM(day)
ORDER BY (type, gap_us, day);

-- an event stored after a day was verified (ingested_at, set by the server at insert) may change its visits: a
-- minmax index on it lets the search for such events skip the granules (and so the parts) stored before
ALTER TABLE {db}.events ADD INDEX IF NOT EXISTS events_ingested_idx ingested_at TYPE minmax GRANULARITY 1;

ALTER TABLE {db}.events MATERIALIZE INDEX events_ingested_idx SETTINGS mutations_sync = 2;
