-- Outbox entries are retried one by one with backoff; one that can never be sent (the realtime
-- server refuses it for good) is dead-lettered with its reason instead of blocking the others.
ALTER TABLE outbox ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN refusals BIGINT NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN next_attempt_at_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN last_error TEXT;
ALTER TABLE outbox ADD COLUMN dead_at_ms BIGINT;
CREATE INDEX outbox_due ON outbox (dead_at_ms, next_attempt_at_ms);

-- POST /calls with an Idempotency-Key: the first answer per user and key, replayed on a retry.
CREATE TABLE call_requests (
    user_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_sha256 TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (user_id, idempotency_key)
);
CREATE INDEX call_requests_by_age ON call_requests (created_at_ms);
CREATE INDEX calls_by_created ON calls (created_at_ms, call_id);
CREATE INDEX calls_open ON calls (state);
