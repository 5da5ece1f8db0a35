-- Transcription of final recordings, owned by `transcription::queue`: one row per recording
-- queued. Being in the database, the queue survives restarts and is shared by every instance;
-- a job is claimed by moving its next attempt past a lease, so two instances never run it at
-- once, and a job whose instance died is taken again when the lease ends.
CREATE TABLE IF NOT EXISTS transcription_jobs (
    recording_id        BIGINT PRIMARY KEY,
    -- pending | done | skipped | failed
    state               TEXT NOT NULL,
    attempts            BIGINT NOT NULL DEFAULT 0,
    next_attempt_at_ms  BIGINT NOT NULL,
    queued_at_ms        BIGINT NOT NULL,
    -- The node whose instance holds the job now (released when that instance starts again).
    claimed_by          TEXT,
    finished_at_ms      BIGINT,
    -- The engine that made the transcript, and the audio it heard (until then the recording's
    -- length: the shortest due job is taken first).
    engine              TEXT,
    audio_ms            BIGINT NOT NULL DEFAULT 0,
    -- Why it was skipped or failed (a flow that opts out, no audio, the engine's error).
    reason              TEXT
);
CREATE INDEX IF NOT EXISTS transcription_jobs_due ON transcription_jobs (state, next_attempt_at_ms);
CREATE INDEX IF NOT EXISTS transcription_jobs_shortest ON transcription_jobs (state, audio_ms);
