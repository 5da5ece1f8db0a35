-- Calls in progress, saved at each transition so a restarted ari-recorder takes them over
-- (flows/saved.rs owns this table). A row goes when its call ends.
CREATE TABLE IF NOT EXISTS active_calls (
    call_id       TEXT PRIMARY KEY,
    state         TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
