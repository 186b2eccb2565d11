-- what the collector derives from an event's context (footprint.enrich): the referrer's host, the
-- UTM parameters, browser / OS / device class and the bot flag. Added with defaults, so rows
-- stored before (and writes by the previous release while an upgrade runs) read as "not known".
ALTER TABLE events ADD COLUMN IF NOT EXISTS referrer_host text    NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN IF NOT EXISTS utm_source    text    NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN IF NOT EXISTS utm_medium    text    NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN IF NOT EXISTS utm_campaign  text    NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN IF NOT EXISTS utm_term      text    NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN IF NOT EXISTS utm_content   text    NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN IF NOT EXISTS browser       text    NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN IF NOT EXISTS os            text    NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN IF NOT EXISTS device        text    NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN IF NOT EXISTS bot           boolean NOT NULL DEFAULT false;

-- the stats count human page views: the page indexes now leave bots out too
CREATE INDEX IF NOT EXISTS events_human_page_time_idx ON events (footprint_time)
    INCLUDE (link, method, visitor_id) WHERE type = 'page' AND NOT synthetic AND NOT bot;
CREATE INDEX IF NOT EXISTS events_human_page_link_idx ON events (link, footprint_time)
    WHERE type = 'page' AND NOT synthetic AND NOT bot;
DROP INDEX IF EXISTS events_page_time_idx;
DROP INDEX IF EXISTS events_page_link_idx;
