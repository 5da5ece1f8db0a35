-- Caller-name word prefixes are searched as ranges (`word >= 'ab' AND word < 'ab' || U+10FFFF`)
-- on the primary key (word, recording_id), which compares bytes: nothing to add here. SQLite's
-- LIKE is case-insensitive and cannot use that index, which is why the range is used.
SELECT 1;
