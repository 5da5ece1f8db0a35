-- Whole calls kept in the archive's bucket for download links, owned by `archive::calls`: one
-- row per version of a call's timeline (the segments' hashes, offsets and pauses), `stored`
-- while it is served, `removing` once a newer version replaced it or a segment it was made from
-- was deleted, purged or changed, until its object is deleted.
CREATE TABLE IF NOT EXISTS call_objects (
    object_key          TEXT PRIMARY KEY,
    call_id             TEXT NOT NULL,
    tenant              TEXT NOT NULL,
    timeline_key        TEXT NOT NULL,
    size_bytes          BIGINT NOT NULL,
    -- Samples of the 8 kHz timeline: the WAV's data is twice as many bytes.
    samples             BIGINT NOT NULL,
    -- 1: sealed with age (encryption at rest), read through the keys.
    sealed              BIGINT NOT NULL DEFAULT 0,
    -- stored | removing
    state               TEXT NOT NULL,
    stored_at_ms        BIGINT NOT NULL,
    attempts            BIGINT NOT NULL DEFAULT 0,
    next_attempt_at_ms  BIGINT NOT NULL DEFAULT 0,
    last_error          TEXT
);
CREATE INDEX IF NOT EXISTS call_objects_call ON call_objects (call_id, timeline_key);
CREATE INDEX IF NOT EXISTS call_objects_due ON call_objects (state, next_attempt_at_ms);

-- The segments each stored version was assembled from, with their files' hashes then.
CREATE TABLE IF NOT EXISTS call_object_segments (
    object_key   TEXT NOT NULL,
    recording_id BIGINT NOT NULL,
    sha256       TEXT NOT NULL,
    PRIMARY KEY (object_key, recording_id)
);
CREATE INDEX IF NOT EXISTS call_object_segments_recording ON call_object_segments (recording_id);
