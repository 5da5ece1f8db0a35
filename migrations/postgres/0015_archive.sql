-- Copies of recordings in the object store (the ARCHIVE_* settings), owned by `archive::queue`.
-- One row per recording queued, stored or being removed; being in the database, the queue
-- survives restarts and is shared by every instance. A local copy is removed only once its row
-- says `stored` (size and SHA-256 read back from the bucket) and local_retention_days passed.
CREATE TABLE IF NOT EXISTS recording_archive (
    recording_id        BIGINT PRIMARY KEY,
    -- pending | stored | removing
    state               TEXT NOT NULL,
    sha256              TEXT NOT NULL,
    size_bytes          BIGINT NOT NULL,
    -- The object's key, or the manifest's when the file was split into parts.
    object_key          TEXT,
    -- 0: one object; N: N parts of part_bytes (the last shorter) beside the manifest.
    parts               BIGINT NOT NULL DEFAULT 0,
    part_bytes          BIGINT NOT NULL DEFAULT 0,
    -- 1: the object is the file sealed with age (encryption at rest), read through the keys.
    sealed              BIGINT NOT NULL DEFAULT 0,
    attempts            BIGINT NOT NULL DEFAULT 0,
    next_attempt_at_ms  BIGINT NOT NULL,
    last_error          TEXT,
    queued_at_ms        BIGINT NOT NULL,
    stored_at_ms        BIGINT,
    local_removed_at_ms BIGINT
);
CREATE INDEX IF NOT EXISTS recording_archive_due ON recording_archive (state, next_attempt_at_ms);
