-- Transcripts and talk timelines sealed at rest when `ENCRYPTION_KEYS` is set. `sealed_by` names
-- the key (its public half) that sealed a transcript's cues and keyed its words in
-- `transcript_search`; NULL: stored in clear. `timeline` is who talked when (JSON, or an age
-- file in base64 behind `age:` when sealed); the figures beside it stay in clear so the list can
-- filter on them; `timeline_sealed_by` names its key as `sealed_by` does.
ALTER TABLE recording_transcripts ADD COLUMN IF NOT EXISTS sealed_by TEXT;
ALTER TABLE recording_insights ADD COLUMN IF NOT EXISTS timeline TEXT;
ALTER TABLE recording_insights ADD COLUMN IF NOT EXISTS timeline_sealed_by TEXT;
CREATE INDEX IF NOT EXISTS recording_transcripts_sealed_by ON recording_transcripts (sealed_by);
CREATE INDEX IF NOT EXISTS recording_insights_timeline_sealed_by ON recording_insights (timeline_sealed_by);
