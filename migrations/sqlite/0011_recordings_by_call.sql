-- A call's segments are read together (GET /api/calls/{id}, its assembled audio).
CREATE INDEX IF NOT EXISTS recordings_call ON recordings (call_id, started_at_ms);
