-- Call metadata written by the Stasis app when it starts a recording, completed by
-- RecordingFinished / RecordingFailed. The library joins files to it by recording name.
CREATE TABLE IF NOT EXISTS call_recordings (
    recording_name   TEXT PRIMARY KEY,
    call_id          TEXT NOT NULL,
    tenant           TEXT NOT NULL DEFAULT 'default',
    flow             TEXT,
    node             TEXT,
    node_type        TEXT,
    direction        TEXT NOT NULL DEFAULT 'inbound',
    caller_name      TEXT,
    caller_number    TEXT,
    callee           TEXT,
    format           TEXT NOT NULL,
    state            TEXT NOT NULL,
    started_at_ms    BIGINT NOT NULL,
    finished_at_ms   BIGINT,
    duration_seconds BIGINT,
    failure_cause    TEXT
);
CREATE INDEX IF NOT EXISTS call_recordings_call ON call_recordings (call_id);
CREATE INDEX IF NOT EXISTS call_recordings_started ON call_recordings (started_at_ms DESC);
