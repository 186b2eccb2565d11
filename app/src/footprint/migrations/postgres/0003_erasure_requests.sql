-- erasure requests (DELETE /v1/users/{userId}): the job's status, and the user ids whose events the
-- consumer drops on arrival until keep_until (the topic's retention has passed the request by then)
CREATE TABLE IF NOT EXISTS erasure_requests (
    job_id        uuid        PRIMARY KEY,
    user_id       text        NOT NULL,
    status        text        NOT NULL DEFAULT 'pending'
                              CHECK (status IN ('pending', 'running', 'done', 'failed')),
    requested_at  timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    keep_until    timestamptz NOT NULL,
    pg_deleted    bigint      NOT NULL DEFAULT 0,
    ch_deleted    bigint      NOT NULL DEFAULT 0,
    error         text        NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS erasure_requests_keep_idx ON erasure_requests (keep_until);
