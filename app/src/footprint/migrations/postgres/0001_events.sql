-- events: one row per event_id; stats read page events by time, link, method and visitor
CREATE TABLE IF NOT EXISTS events (
    event_id        uuid        PRIMARY KEY,
    type            text        NOT NULL CHECK (type IN ('page', 'track', 'identify', 'group')),
    event           text        NOT NULL DEFAULT '',
    method          text        NOT NULL DEFAULT '',
    link            text        NOT NULL DEFAULT '',
    user_id         text        NOT NULL DEFAULT '',
    anonymous_id    text        NOT NULL DEFAULT '',
    group_id        text        NOT NULL DEFAULT '',
    visitor_id      text        NOT NULL DEFAULT '',
    properties      jsonb       NOT NULL DEFAULT '{}',
    traits          jsonb       NOT NULL DEFAULT '{}',
    footprint_time  timestamptz NOT NULL,
    received_at     timestamptz NOT NULL,
    schema_version  smallint    NOT NULL,
    synthetic       boolean     NOT NULL DEFAULT false,
    ingested_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS events_page_time_idx ON events (footprint_time)
    INCLUDE (link, method, visitor_id) WHERE type = 'page' AND NOT synthetic;
CREATE INDEX IF NOT EXISTS events_page_link_idx ON events (link, footprint_time)
    WHERE type = 'page' AND NOT synthetic;
