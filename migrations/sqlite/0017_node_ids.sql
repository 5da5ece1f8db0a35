-- Several instances on one database (PostgreSQL), each with its own Asterisk and recordings
-- folder: a row carries the node whose folder holds its file (NODE_ID), and is found by
-- (node_id, path). Rows from before node ids have '' and go to the first instance that starts.
-- SQLite is one machine's database: its table keeps path unique as well.
ALTER TABLE recordings ADD COLUMN node_id TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX IF NOT EXISTS recordings_node_path ON recordings (node_id, path);
