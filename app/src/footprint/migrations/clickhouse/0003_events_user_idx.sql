-- events by user: a bloom-filter skip index, so GET /v1/events?userId= and the erasure of a user
-- (DELETE /v1/users/{userId}) read only the granules that may hold that user
ALTER TABLE {db}.events ADD INDEX IF NOT EXISTS events_user_idx user_id TYPE bloom_filter(0.01) GRANULARITY 4;

ALTER TABLE {db}.events MATERIALIZE INDEX events_user_idx SETTINGS mutations_sync = 2;
