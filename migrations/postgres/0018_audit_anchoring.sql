-- When this deployment started anchoring its audit chain's head outside the database
-- (AUDIT_ANCHOR_FILE). Set: `audit verify` refuses to run without the anchor file, since a
-- chain checked without its anchors cannot show that events were cut from its end. Owned by
-- `access::audit`.
ALTER TABLE audit_head ADD COLUMN anchored_since_ms BIGINT;
