-- Access control and audit. Call metadata gains what the flow knows about access: the project,
-- whether the call is private, its participants, and whether the caller heard a recording notice.
ALTER TABLE call_recordings ADD COLUMN project TEXT NOT NULL DEFAULT 'default';
ALTER TABLE call_recordings ADD COLUMN private INTEGER NOT NULL DEFAULT 0;
ALTER TABLE call_recordings ADD COLUMN consent TEXT NOT NULL DEFAULT 'unknown';
ALTER TABLE call_recordings ADD COLUMN participants TEXT;
-- Every list is scoped to one tenant: its newest-first page is one range of this index.
CREATE INDEX IF NOT EXISTS recordings_tenant ON recordings (tenant, started_at_ms DESC, id DESC);

CREATE TABLE IF NOT EXISTS tenants (
    name                 TEXT PRIMARY KEY,
    staff_playback       INTEGER NOT NULL DEFAULT 0,
    download_entitlement INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,
    tenant        TEXT NOT NULL,
    projects      TEXT NOT NULL DEFAULT '',
    extension     TEXT,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at_ms INTEGER NOT NULL
);
-- Tokens and sessions are stored as SHA-256 of a 256-bit random secret: a stolen database
-- holds nothing that authenticates.
CREATE TABLE IF NOT EXISTS api_tokens (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id       INTEGER NOT NULL,
    name          TEXT NOT NULL,
    token_hash    TEXT NOT NULL UNIQUE,
    scopes        TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER,
    revoked_at_ms INTEGER
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash    TEXT PRIMARY KEY,
    user_id       INTEGER NOT NULL,
    csrf_token    TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
-- Nonces of single-use links already spent.
CREATE TABLE IF NOT EXISTS used_grants (
    nonce         TEXT PRIMARY KEY,
    used_at_ms    INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
-- Append-only, hash-chained: each event's hash covers the previous event's hash.
CREATE TABLE IF NOT EXISTS audit_events (
    seq          INTEGER PRIMARY KEY,
    at_ms        INTEGER NOT NULL,
    actor        TEXT NOT NULL,
    tenant       TEXT NOT NULL,
    action       TEXT NOT NULL,
    recording_id INTEGER,
    outcome      TEXT NOT NULL,
    client       TEXT NOT NULL,
    detail       TEXT,
    prev_hash    TEXT NOT NULL,
    hash         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_events_tenant ON audit_events (tenant, seq DESC);
-- The chain's head. Writers update it first, which serializes them (on PostgreSQL too) and
-- lets `audit verify` notice events cut from the end.
CREATE TABLE IF NOT EXISTS audit_head (
    id   INTEGER PRIMARY KEY,
    seq  INTEGER NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000') ON CONFLICT DO NOTHING;
