-- The audit chain is sealed with HMAC-SHA256 under a key kept outside the database
-- (AUDIT_KEYS): this names the key of each event. NULL: an event written before a key was
-- configured, chained with plain SHA-256. Owned by `access::audit`.
ALTER TABLE audit_events ADD COLUMN key_id TEXT;
