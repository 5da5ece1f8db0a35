-- Webhook endpoints of each tenant (`webhooks::endpoints`), the events other systems are told
-- of (`outbox`, written in the transaction of the change that causes them) and each event's
-- delivery to each endpoint with its attempts (`outbox` queues and claims them, `webhooks`
-- delivers and logs).
CREATE TABLE IF NOT EXISTS webhook_endpoints (
    id                      INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant                  TEXT NOT NULL,
    url                     TEXT NOT NULL,
    description             TEXT NOT NULL DEFAULT '',
    -- Comma-separated event types, e.g. `recording.ready,call.ended`.
    events                  TEXT NOT NULL,
    -- 1: `transcript.ready` carries the transcript's text (only where the tenant allows it).
    include_transcript      BIGINT NOT NULL DEFAULT 0,
    -- The signing secret (`whsec_...`), and the one it replaced while both are valid.
    secret                  TEXT NOT NULL,
    previous_secret         TEXT,
    previous_valid_until_ms BIGINT,
    enabled                 BIGINT NOT NULL DEFAULT 1,
    -- Why it was turned off by the service (failing for days), for its admins.
    disabled_reason         TEXT,
    -- Since when every delivery has failed (NULL: the last one went through).
    failing_since_ms        BIGINT,
    created_by              TEXT NOT NULL,
    created_at_ms           BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_endpoints_tenant ON webhook_endpoints (tenant, enabled);

CREATE TABLE IF NOT EXISTS webhook_events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    -- What the receiver sees as `webhook-id`: random, stable across retries.
    message_id      TEXT NOT NULL,
    kind            TEXT NOT NULL,
    tenant          TEXT NOT NULL,
    recording_id    BIGINT,
    call_id         TEXT,
    -- What changed, when the subject's row does not say it any more (a hold's reason, consent).
    detail          TEXT,
    occurred_at_ms  BIGINT NOT NULL,
    -- One event per change: a re-index of a recording already told of adds nothing.
    dedupe          TEXT NOT NULL UNIQUE
);

CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id            BIGINT NOT NULL,
    endpoint_id         BIGINT NOT NULL,
    -- pending | delivered | failed
    state               TEXT NOT NULL,
    attempts            BIGINT NOT NULL DEFAULT 0,
    next_attempt_at_ms  BIGINT NOT NULL,
    created_at_ms       BIGINT NOT NULL,
    delivered_at_ms     BIGINT,
    last_status         BIGINT,
    last_error          TEXT
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at_ms);
CREATE INDEX IF NOT EXISTS webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id);

-- Each attempt of a delivery: the endpoint's delivery log.
CREATE TABLE IF NOT EXISTS webhook_attempts (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id     BIGINT NOT NULL,
    endpoint_id     BIGINT NOT NULL,
    at_ms           BIGINT NOT NULL,
    -- The receiver's HTTP status (NULL: no answer).
    status          BIGINT,
    latency_ms      BIGINT NOT NULL,
    error           TEXT
);
CREATE INDEX IF NOT EXISTS webhook_attempts_endpoint ON webhook_attempts (endpoint_id, id);
