-- The words of each transcript, for `?q=` on the lists: one document a recording (its cues'
-- text) as a tsvector of the `simple` configuration (lower-cased words, no stemming: the same
-- matches as SQLite's FTS5 unicode61), with a GIN index. Owned by `library::transcripts`,
-- written in the transaction that stores or removes the transcript.
CREATE TABLE IF NOT EXISTS transcript_search (
    recording_id BIGINT PRIMARY KEY,
    words        TSVECTOR NOT NULL
);
CREATE INDEX IF NOT EXISTS transcript_search_words ON transcript_search USING GIN (words);
INSERT INTO transcript_search (recording_id, words)
    SELECT t.recording_id, to_tsvector('simple', COALESCE(
        (SELECT string_agg(c->>'text', ' ') FROM jsonb_array_elements(t.cues::jsonb) c), ''))
    FROM recording_transcripts t
ON CONFLICT (recording_id) DO NOTHING;
