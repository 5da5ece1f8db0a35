-- A transcript attached to a recording (PUT /api/recordings/{id}/transcript, or a `<name>.vtt`
-- sidecar file beside the audio): its cues as JSON [{start_ms, end_ms, speaker, text}]. As
-- sensitive as the audio: read with the right to play it. Owned by `library::transcripts`.
CREATE TABLE IF NOT EXISTS recording_transcripts (
    recording_id     BIGINT PRIMARY KEY,
    source           TEXT NOT NULL,
    cues             TEXT NOT NULL,
    sidecar_mtime_ms BIGINT,
    updated_at_ms    BIGINT NOT NULL,
    by_actor         TEXT NOT NULL
);
