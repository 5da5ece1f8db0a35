-- One recording per call. A call's segments are read together (GET /api/calls/{id}, its
-- assembled audio), and each is placed on the call's timeline by Asterisk's own clock: the
-- timestamp of its RecordingStarted event (NULL when the start was not seen). started_at_ms
-- stays the service's clock, which the list sorts and filters by.
ALTER TABLE call_recordings ADD COLUMN asterisk_started_at_ms BIGINT;
ALTER TABLE recordings ADD COLUMN asterisk_started_at_ms BIGINT;
CREATE INDEX IF NOT EXISTS recordings_call ON recordings (call_id, started_at_ms);
