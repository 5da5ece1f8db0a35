-- Sessions end after a spell of inactivity as well as at their absolute expiry: the last time a
-- session was used, written at most once a minute. Existing sessions count from their start.
ALTER TABLE sessions ADD COLUMN last_seen_at_ms INTEGER NOT NULL DEFAULT 0;
UPDATE sessions SET last_seen_at_ms = created_at_ms;
-- Links a user made before being disabled stay dead when the user is enabled again: links
-- issued at or before this instant are refused. Owned by `access::accounts`.
ALTER TABLE users ADD COLUMN links_valid_after_ms INTEGER NOT NULL DEFAULT 0;
