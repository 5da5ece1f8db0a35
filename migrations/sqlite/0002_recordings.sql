-- The recordings library: one row per file found in the recordings folder (or tombstone of a
-- deleted one). Call metadata is copied in from call_recordings when the file is indexed, so
-- every filter and sort of the list is served by an index of this one table.
CREATE TABLE IF NOT EXISTS recordings (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    path              TEXT NOT NULL UNIQUE,
    name              TEXT NOT NULL,
    format            TEXT NOT NULL,
    status            TEXT NOT NULL,
    reason            TEXT,
    size_bytes        INTEGER NOT NULL,
    mtime_ms          INTEGER NOT NULL,
    duration_ms       INTEGER NOT NULL DEFAULT 0,
    encoding          TEXT,
    sample_rate       INTEGER NOT NULL DEFAULT 0,
    data_offset       INTEGER NOT NULL DEFAULT 0,
    data_len          INTEGER NOT NULL DEFAULT 0,
    sha256            TEXT,
    call_id           TEXT,
    tenant            TEXT NOT NULL DEFAULT 'default',
    project           TEXT NOT NULL DEFAULT 'default',
    flow              TEXT,
    node              TEXT,
    node_type         TEXT,
    direction         TEXT,
    caller_name       TEXT,
    caller_number     TEXT,
    callee            TEXT,
    started_at_ms     INTEGER NOT NULL,
    owner             TEXT,
    participants      TEXT,
    private           INTEGER NOT NULL DEFAULT 0,
    consent           TEXT NOT NULL DEFAULT 'unknown',
    compliance        TEXT NOT NULL DEFAULT 'permitted',
    deleted_at_ms     INTEGER,
    deleted_by        TEXT,
    indexed_at_ms     INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS recordings_newest ON recordings (started_at_ms DESC, id DESC);
CREATE INDEX IF NOT EXISTS recordings_longest ON recordings (duration_ms DESC, id DESC);
CREATE INDEX IF NOT EXISTS recordings_caller ON recordings (caller_number, started_at_ms DESC, id DESC);
CREATE INDEX IF NOT EXISTS recordings_callee ON recordings (callee, started_at_ms DESC, id DESC);
CREATE INDEX IF NOT EXISTS recordings_node_type ON recordings (node_type, started_at_ms DESC, id DESC);
CREATE INDEX IF NOT EXISTS recordings_direction ON recordings (direction, started_at_ms DESC, id DESC);
CREATE INDEX IF NOT EXISTS recordings_status ON recordings (status, started_at_ms DESC, id DESC);
CREATE INDEX IF NOT EXISTS recordings_format ON recordings (format, started_at_ms DESC, id DESC);
CREATE INDEX IF NOT EXISTS recordings_name ON recordings (name);
