-- Talk-time figures of each recording, owned by `library::insights`: drawn from its audio after
-- the call (each party's when recorded apart), deleted with the recording. `agent_share` is the
-- agent's percent of the talking (NULL for a mono recording).
CREATE TABLE IF NOT EXISTS recording_insights (
    recording_id       BIGINT PRIMARY KEY,
    length_ms          BIGINT NOT NULL,
    speech_ms          BIGINT NOT NULL,
    caller_ms          BIGINT,
    agent_ms           BIGINT,
    silence_ms         BIGINT NOT NULL,
    longest_silence_ms BIGINT NOT NULL,
    crosstalk_ms       BIGINT NOT NULL,
    crosstalk_count    BIGINT NOT NULL,
    agent_share        BIGINT,
    computed_at_ms     BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS recording_insights_silence ON recording_insights (longest_silence_ms);
CREATE INDEX IF NOT EXISTS recording_insights_agent_share ON recording_insights (agent_share);
