-- Recordings sealed at rest (ENCRYPTION_KEYS), owned by `encryption::seals`: which key sealed
-- each (the public half, `age1...`), so `ari-recorder reencrypt` finds those of older keys and
-- the archive uploads only sealed files in an encrypted deployment.
CREATE TABLE IF NOT EXISTS recording_seals (
    recording_id BIGINT PRIMARY KEY,
    key_id       TEXT NOT NULL,
    sealed_at_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS recording_seals_key ON recording_seals (key_id);
