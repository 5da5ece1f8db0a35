-- Caller-name word prefixes (`word LIKE 'ab%'`) as index range scans whatever the database's
-- collation: text_pattern_ops compares bytes, as LIKE's prefix does.
CREATE INDEX IF NOT EXISTS recording_words_prefix ON recording_words (word text_pattern_ops, recording_id);
