-- Which voicemail messages someone listened to (or marked heard), owned by `library::voicemail`:
-- a message without a row is new. Deleted with the recording's row.
CREATE TABLE IF NOT EXISTS voicemail_heard (
    recording_id BIGINT PRIMARY KEY,
    heard_at_ms  BIGINT NOT NULL,
    by_actor     TEXT NOT NULL
);
