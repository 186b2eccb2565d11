-- the goals and funnels made on the dashboard (footprint.goals, goalstore.py); the inventory's come from the
-- settings (FOOTPRINT_GOALS, FOOTPRINT_FUNNELS) and are never stored. A goal: a track event's name or a page
-- path pattern; a funnel: two to ten goal names in order, reached within a visit or a day. The dashboard holds
-- the reader's credentials only: migrate grants the reader role INSERT and DELETE on these two tables and
-- nothing else (migrate._pg_grants).
CREATE TABLE IF NOT EXISTS goals (
    name        text        PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 100),
    event       text,
    page        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((event IS NULL) <> (page IS NULL))
);
CREATE TABLE IF NOT EXISTS funnels (
    name        text        PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 100),
    steps       text[]      NOT NULL CHECK (cardinality(steps) BETWEEN 2 AND 10),
    within      text        NOT NULL CHECK (within IN ('visit', 'day')),
    created_at  timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON goals, funnels FROM PUBLIC;
