-- Stretches of a recording muted or paused while the call was live (by an API call, a feature
-- code or a node): where they lie in the file (equal offsets for a pause: the audio is not in
-- the file), when, and who or what asked. Written by the call runtime; read with the
-- recording. Owned by `flows::runtime` (writes) and the recordings API (reads).
CREATE TABLE IF NOT EXISTS recording_redactions (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    recording_name TEXT NOT NULL,
    mode           TEXT NOT NULL,
    from_offset_ms INTEGER NOT NULL,
    to_offset_ms   INTEGER NOT NULL,
    started_at_ms  INTEGER NOT NULL,
    ended_at_ms    INTEGER NOT NULL,
    by_actor       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS recording_redactions_recording ON recording_redactions (recording_name, from_offset_ms);
