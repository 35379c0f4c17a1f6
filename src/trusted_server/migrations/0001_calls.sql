-- Call records of the reference trusted server. Portable between SQLite and PostgreSQL: only TEXT
-- and BIGINT columns, no autoincrement, JSON kept as TEXT.
CREATE TABLE calls (
    call_id TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    scope TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    caller TEXT NOT NULL,
    callees TEXT NOT NULL,
    media TEXT NOT NULL,
    privacy TEXT NOT NULL,
    topology TEXT NOT NULL,
    ring_timeout_ms BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    ring_deadline_ms BIGINT NOT NULL,
    state TEXT NOT NULL,
    accepted_by TEXT,
    accepted_at_ms BIGINT,
    ended_at_ms BIGINT,
    end_reason TEXT,
    server_seq BIGINT NOT NULL
);
CREATE INDEX calls_by_deadline ON calls (state, ring_deadline_ms);

-- Everyone a call concerns (caller and invitees), for history queries.
CREATE TABLE call_participants (
    call_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    role TEXT NOT NULL,
    PRIMARY KEY (call_id, user_id)
);
CREATE INDEX participants_by_user ON call_participants (user_id);

CREATE TABLE call_log (
    call_id TEXT NOT NULL,
    ordinal BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    kind TEXT NOT NULL,
    user_id TEXT,
    detail TEXT NOT NULL,
    PRIMARY KEY (call_id, ordinal)
);

CREATE TABLE missed_calls (
    call_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (call_id, user_id)
);
CREATE INDEX missed_by_user ON missed_calls (user_id);

-- Webhook bodies already processed (SHA-256), so a replayed delivery changes nothing.
CREATE TABLE webhook_deliveries (
    body_sha256 TEXT PRIMARY KEY,
    received_at_ms BIGINT NOT NULL
);

-- Events to send through the realtime HTTP API, written in the same transaction as the change
-- that caused them and deleted once sent: a crash between the two loses nothing.
CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    created_at_ms BIGINT NOT NULL,
    channels TEXT NOT NULL,
    event TEXT NOT NULL,
    data TEXT NOT NULL
);
