-- Calls in progress, saved at each transition so a restarted ari-recorder takes them over
-- (flows/saved.rs owns this table). A row goes when its call ends.
CREATE TABLE IF NOT EXISTS active_calls (
    call_id       TEXT PRIMARY KEY,
    state         TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
-- A recording armed when the other party was dialled: when that party answered (the lead-in
-- before it is marked, not cut).
ALTER TABLE call_recordings ADD COLUMN answered_at_ms BIGINT;
