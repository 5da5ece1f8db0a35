-- The uniqueid of the channel that answered the caller in a recording (the agent's leg, as
-- Asterisk named it when the call originated it): with the caller's (the call's id) and the
-- call's linkedid, each recording joins with the CDR and CEL rows of its own channels.
ALTER TABLE call_recordings ADD COLUMN callee_channel TEXT;
ALTER TABLE recordings ADD COLUMN callee_channel TEXT;
CREATE INDEX IF NOT EXISTS recordings_callee_channel ON recordings (callee_channel);
