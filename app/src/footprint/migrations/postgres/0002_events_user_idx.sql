-- events by user: GET /v1/events?userId= and the erasure of a user's events (DELETE /v1/users/{userId})
CREATE INDEX IF NOT EXISTS events_user_idx ON events (user_id) WHERE user_id <> '';
