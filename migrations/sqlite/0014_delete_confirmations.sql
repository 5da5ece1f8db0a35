-- Delete confirmations (step one of DELETE /api/recordings/{id}), kept in the database so the
-- second step may reach another instance behind a load balancer. The token is stored as its
-- SHA-256. Owned by `access::confirmations`.
CREATE TABLE IF NOT EXISTS delete_confirmations (
    token_hash    TEXT PRIMARY KEY,
    recording_id  BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
