-- Words of each recording's caller name, lower-cased, so "text in caller name" is an index
-- range scan (word prefix), not a scan of every row.
CREATE TABLE IF NOT EXISTS recording_words (
    word         TEXT NOT NULL,
    recording_id INTEGER NOT NULL,
    PRIMARY KEY (word, recording_id)
);
CREATE INDEX IF NOT EXISTS recording_words_recording ON recording_words (recording_id);
