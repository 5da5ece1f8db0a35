-- Several instances on one database, each with its own Asterisk and recordings folder: a row
-- carries the node whose folder holds its file (NODE_ID), and is found by (node_id, path), so
-- two nodes may hold the same relative path. Rows from before node ids have '' and go to the
-- first instance that starts.
ALTER TABLE recordings ADD COLUMN IF NOT EXISTS node_id TEXT NOT NULL DEFAULT '';
ALTER TABLE recordings DROP CONSTRAINT IF EXISTS recordings_path_key;
CREATE UNIQUE INDEX IF NOT EXISTS recordings_node_path ON recordings (node_id, path);
