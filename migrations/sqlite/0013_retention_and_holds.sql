-- Retention per tenant (days; NULL or 0 keeps forever): call recordings' and voicemail's audio
-- removed after so many days (the row stays, `purged`), and purged or deleted rows forgotten
-- after forget_after_days. Legal holds: a held recording is never purged or deleted, by rule or
-- by hand, until released. Both owned by `library::retention`.
CREATE TABLE IF NOT EXISTS tenant_retention (
    tenant            TEXT PRIMARY KEY,
    calls_days        BIGINT,
    voicemail_days    BIGINT,
    forget_after_days BIGINT
);
CREATE TABLE IF NOT EXISTS recording_holds (
    recording_id BIGINT PRIMARY KEY,
    reason       TEXT NOT NULL,
    held_by      TEXT NOT NULL,
    held_at_ms   BIGINT NOT NULL
);
