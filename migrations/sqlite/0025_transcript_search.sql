-- The words of each transcript, for `?q=` on the lists: one document a recording (its cues'
-- text), full-text indexed by FTS5 (rowid = the recording's id). Owned by `library::transcripts`,
-- written in the transaction that stores or removes the transcript.
CREATE VIRTUAL TABLE IF NOT EXISTS transcript_search USING fts5(text, tokenize = 'unicode61');
INSERT INTO transcript_search (rowid, text)
    SELECT t.recording_id, COALESCE((SELECT group_concat(json_extract(c.value, '$.text'), ' ')
                                     FROM json_each(t.cues) c), '')
    FROM recording_transcripts t
    WHERE t.recording_id NOT IN (SELECT rowid FROM transcript_search);
