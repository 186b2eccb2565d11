-- The visits of the days that ended, stored (`footprint close-visits`, footprint.visitcloser), so that the
-- dashboard's visits, entry and exit pages read each closed day's visits instead of making them again from its
-- raw events every time (footprint.closedvisits, footprint.stats._visits): one row per visit, per event type
-- ('' for every type together) and session timeout (gap_us), with what the filters read on a visit's first
-- event (its link, referrer host, device, browser, OS and country), and whose they are (a visitor's visits start
-- at different times: the sort key is unique, so a ReplacingMergeTree, as the owner may create, keeps them all).
-- A day's rows stand only while its row in visits_days says so (closedvisits.standing).
CREATE TABLE IF NOT EXISTS {db}.visits_closed
(
    type           LowCardinality(String),
    gap_us         Int64,
    day            Date32,
    closed_at      DateTime64(6, 'UTC'),
    visitor_id     String,
    start_us       Int64,
    duration_us    Int64,
    pages          UInt32,
    entry_link     String,
    exit_link      String,
    referrer_host  String,
    device         LowCardinality(String),
    browser        LowCardinality(String),
    os             LowCardinality(String),
    country        LowCardinality(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (type, gap_us, day, closed_at, visitor_id, start_us);

-- Each closed day of a type and timeout: when its visits were made (closed_at; 0: not closed, as an erasure
-- leaves the days it touched), how far they reach (reach_us: the day's end, or the last event of a visit of it
-- plus the timeout if later; no later event can join one), and when its events were last found unchanged
-- (verified_at). A day's row with the newest verified_at counts (closedvisits reads them with argMax, so that in
-- a cluster the rows of one day may lie on any shard).
CREATE TABLE IF NOT EXISTS {db}.visits_days
(
    type           LowCardinality(String),
    gap_us         Int64,
    day            Date32,
    closed_at      DateTime64(6, 'UTC'),
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
