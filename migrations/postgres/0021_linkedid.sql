-- Asterisk's linkedid of each call (the CDR's and CEL's `linkedid`: every channel of one call
-- carries it), read from the channel snapshot's `channelvars` when ari.conf lists
-- `CHANNEL(linkedid)`; so operators join recordings with their CDR and CEL data. The caller's
-- channel's uniqueid is already the call's id (`call_id`).
ALTER TABLE call_recordings ADD COLUMN linkedid TEXT;
ALTER TABLE recordings ADD COLUMN linkedid TEXT;
CREATE INDEX IF NOT EXISTS recordings_linkedid ON recordings (linkedid);
