//! The outbox: events other systems are told of (webhooks), written in the transaction of the
//! change that causes them, and their deliveries to each endpoint that asked for them. Owns
//! `webhook_events` and `webhook_deliveries`; `webhooks` delivers them and owns the endpoints.
//!
//! An event is written only when an enabled endpoint of its tenant subscribes to its kind (read
//! in the same statement, so an endpoint added a moment ago on another instance counts), so a
//! deployment without webhooks writes nothing more. Each event's `dedupe` key is unique: the
//! same change told twice (a re-index of a final recording) adds nothing.

use sqlx::AnyConnection;

use crate::db::{Backend, Database, DbError};

macro_rules! event_kinds {
    ($($(#[$meta:meta])* $variant:ident => $text:literal,)+) => {
        /// What happened, as receivers see it in `type`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum EventKind {
            $($(#[$meta])* $variant,)+
        }

        impl EventKind {
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventKind::$variant => $text,)+
                }
            }

            pub fn parse(text: &str) -> Option<EventKind> {
                match text {
                    $($text => Some(EventKind::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

event_kinds! {
    /// A recording is final and hashed.
    RecordingReady => "recording.ready",
    /// A recording ended unusable: empty, unreadable or in a format not served.
    RecordingFailed => "recording.failed",
    /// A call ended: its segments.
    CallEnded => "call.ended",
    /// A transcript was attached to a recording.
    TranscriptReady => "transcript.ready",
    RecordingDeleted => "recording.deleted",
    /// Removed by the retention rule.
    RecordingPurged => "recording.purged",
    HoldPlaced => "hold.placed",
    HoldReleased => "hold.released",
    ConsentChanged => "consent.changed",
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an event is about; its tenant is the subject's.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    Recording(i64),
    Call(&'a str),
}

/// One event to write.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    pub kind: EventKind,
    pub subject: Subject<'a>,
    /// What changed when the subject's row no longer says it (a hold's reason, consent).
    pub detail: Option<String>,
    /// One event per change: an event whose key was written before is not written again.
    pub dedupe: String,
    pub at_ms: i64,
}

impl<'a> Event<'a> {
    /// An event that happens once per subject (a recording's end, a call's end, a delete).
    pub fn once(kind: EventKind, subject: Subject<'a>, at_ms: i64) -> Event<'a> {
        let dedupe = match subject {
            Subject::Recording(id) => format!("{kind}:{id}"),
            Subject::Call(call) => format!("{kind}:call:{call}"),
        };
        Event {
            kind,
            subject,
            detail: None,
            dedupe,
            at_ms,
        }
    }

    /// An event that may happen again to the same subject (a hold placed twice, consent
    /// changed back).
    pub fn each_time(kind: EventKind, subject: Subject<'a>, at_ms: i64) -> Event<'a> {
        let mut event = Event::once(kind, subject, at_ms);
        event.dedupe = format!("{}:{at_ms}:{}", event.dedupe, random_hex(8));
        event
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Event<'a> {
        self.detail = Some(detail.into());
        self
    }

    /// Keyed by more than its subject (a recording rewritten with other audio is ready again).
    pub fn keyed(mut self, key: &str) -> Event<'a> {
        self.dedupe = format!("{}:{key}", self.dedupe);
        self
    }
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", fastrand::u8(..)))
        .collect()
}

/// Told when deliveries were queued (after their transaction committed) or an endpoint was
/// added or turned on: the delivering task of this instance looks at once instead of at its
/// next poll. Kept with the database handle (`Database::attached`).
#[derive(Default)]
pub struct Wake(pub tokio::sync::Notify);

/// Wakes this instance's delivering task.
pub fn wake(db: &Database) {
    db.attached::<Wake>().0.notify_one();
}

/// The endpoints of tenant `{tenant}` that take events of kind `{kind}` (SQL, over
/// `webhook_endpoints e`).
const SUBSCRIBED: &str = "e.tenant = {tenant} AND e.enabled = 1 \
     AND (',' || e.events || ',') LIKE ('%,' || CAST({kind} AS TEXT) || ',%')";

/// Writes `event` on `conn` (inside the caller's transaction) with a delivery to each endpoint
/// of its tenant that asked for its kind. Returns whether anything was written: nothing when no
/// endpoint wants it, when its subject has no row, or when it was written before.
pub async fn record(conn: &mut AnyConnection, event: &Event<'_>) -> Result<bool, sqlx::Error> {
    let subscribed = SUBSCRIBED
        .replace("{tenant}", "s.tenant")
        .replace("{kind}", "$1");
    // The subject's tenant, and whether anyone listens: one statement that writes nothing when
    // nobody does.
    let subject = match event.subject {
        Subject::Recording(_) => {
            "(SELECT id AS recording_id, call_id, tenant FROM recordings WHERE id = $5) s"
        }
        Subject::Call(_) => {
            "(SELECT CAST(NULL AS BIGINT) AS recording_id, call_id, tenant FROM recordings \
             WHERE call_id = $6 \
             ORDER BY id LIMIT 1) s"
        }
    };
    let sql = format!(
        "INSERT INTO webhook_events (message_id, kind, tenant, recording_id, call_id, detail, \
         occurred_at_ms, dedupe) \
         SELECT $2, $1, s.tenant, s.recording_id, s.call_id, $3, $4, $7 FROM {subject} \
         WHERE EXISTS (SELECT 1 FROM webhook_endpoints e WHERE {subscribed}) \
         ON CONFLICT (dedupe) DO NOTHING RETURNING id, tenant"
    );
    let (recording, call) = match event.subject {
        Subject::Recording(id) => (Some(id), None),
        Subject::Call(call) => (None, Some(call)),
    };
    let written: Option<(i64, String)> = sqlx::query_as(&sql)
        .bind(event.kind.as_str())
        .bind(format!("msg_{}", random_hex(16)))
        .bind(event.detail.as_deref())
        .bind(event.at_ms)
        .bind(recording)
        .bind(call)
        .bind(&event.dedupe)
        .fetch_optional(&mut *conn)
        .await?;
    let Some((event_id, tenant)) = written else {
        return Ok(false);
    };
    let subscribed = SUBSCRIBED.replace("{tenant}", "$3").replace("{kind}", "$4");
    sqlx::query(&format!(
        "INSERT INTO webhook_deliveries (event_id, endpoint_id, state, attempts, \
         next_attempt_at_ms, created_at_ms) \
         SELECT $1, e.id, 'pending', 0, $2, $2 FROM webhook_endpoints e WHERE {subscribed}"
    ))
    .bind(event_id)
    .bind(event.at_ms)
    .bind(&tenant)
    .bind(event.kind.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(true)
}

/// A delivery claimed for sending, with its event.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub id: i64,
    pub endpoint_id: i64,
    pub attempts: i64,
    pub created_at_ms: i64,
    pub event_id: i64,
    pub message_id: String,
    pub kind: String,
    pub tenant: String,
    pub recording_id: Option<i64>,
    pub call_id: Option<String>,
    pub detail: Option<String>,
    pub occurred_at_ms: i64,
}

/// Claims up to `limit` due deliveries for `lease_ms` (their next attempt moves past the lease,
/// so an instance that dies mid-send leaves them to be tried again). On PostgreSQL the rows are
/// taken `FOR UPDATE SKIP LOCKED`: instances claiming at once take different deliveries.
pub async fn claim_due(
    db: &Database,
    now_ms: i64,
    lease_ms: i64,
    limit: i64,
) -> Result<Vec<Claimed>, DbError> {
    let lock = match db.backend {
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let claimed: Vec<(i64,)> = sqlx::query_as(&format!(
        "UPDATE webhook_deliveries SET next_attempt_at_ms = $1 WHERE id IN \
         (SELECT id FROM webhook_deliveries WHERE state = 'pending' AND next_attempt_at_ms <= $2 \
          ORDER BY next_attempt_at_ms, id LIMIT $3{lock}) RETURNING id"
    ))
    .bind(now_ms + lease_ms)
    .bind(now_ms)
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    if claimed.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = claimed.iter().map(|(id,)| id.to_string()).collect();
    Ok(sqlx::query_as(&format!(
        "SELECT d.id, d.endpoint_id, d.attempts, d.created_at_ms, v.id AS event_id, \
         v.message_id, v.kind, v.tenant, v.recording_id, v.call_id, v.detail, v.occurred_at_ms \
         FROM webhook_deliveries d JOIN webhook_events v ON v.id = d.event_id \
         WHERE d.id IN ({}) ORDER BY d.id",
        ids.join(", ")
    ))
    .fetch_all(&db.pool)
    .await?)
}

/// Whether a delivery is due: a read through the queue's index, so an instance polling an
/// empty queue takes no write lock.
pub async fn any_due(db: &Database, now_ms: i64) -> Result<bool, DbError> {
    let due: Option<(i64,)> = sqlx::query_as(
        "SELECT id FROM webhook_deliveries WHERE state = 'pending' AND next_attempt_at_ms <= $1 LIMIT 1",
    )
    .bind(now_ms)
    .fetch_optional(&db.pool)
    .await?;
    Ok(due.is_some())
}

/// How an attempt ended, for the delivery's row.
#[derive(Debug, Clone)]
pub enum Settled {
    Delivered {
        status: i64,
    },
    /// Tried again at `next_at_ms`.
    Retry {
        status: Option<i64>,
        error: String,
        next_at_ms: i64,
    },
    /// Given up (out of time, or its endpoint is gone).
    Failed {
        status: Option<i64>,
        error: String,
    },
}

/// Writes an attempt's outcome on `conn` (the caller logs the attempt in the same transaction).
pub async fn settle(
    conn: &mut AnyConnection,
    delivery_id: i64,
    at_ms: i64,
    settled: &Settled,
) -> Result<(), sqlx::Error> {
    let query = match settled {
        Settled::Delivered { status } => sqlx::query(
            "UPDATE webhook_deliveries SET state = 'delivered', attempts = attempts + 1, \
             delivered_at_ms = $1, last_status = $2, last_error = NULL WHERE id = $3",
        )
        .bind(at_ms)
        .bind(*status),
        Settled::Retry {
            status,
            error,
            next_at_ms,
        } => sqlx::query(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at_ms = $1, \
             last_status = $2, last_error = $3 WHERE id = $4",
        )
        .bind(*next_at_ms)
        .bind(*status)
        .bind(error.clone()),
        Settled::Failed { status, error } => sqlx::query(
            "UPDATE webhook_deliveries SET state = 'failed', attempts = attempts + 1, \
             last_status = $1, last_error = $2, next_attempt_at_ms = $3 WHERE id = $4",
        )
        .bind(*status)
        .bind(error.clone())
        .bind(at_ms),
    };
    query.bind(delivery_id).execute(conn).await.map(drop)
}

/// Queues a delivery again now (an admin's redeliver); false when it is not the endpoint's.
pub async fn redeliver(
    conn: &mut AnyConnection,
    endpoint_id: i64,
    delivery_id: i64,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE webhook_deliveries SET state = 'pending', next_attempt_at_ms = $1, \
         created_at_ms = $1 WHERE id = $2 AND endpoint_id = $3",
    )
    .bind(now_ms)
    .bind(delivery_id)
    .bind(endpoint_id)
    .execute(conn)
    .await?
    .rows_affected()
        > 0)
}

/// Queues a `webhook.test` event for one endpoint, whatever it subscribes to; its delivery id.
pub async fn test_event(
    conn: &mut AnyConnection,
    tenant: &str,
    endpoint_id: i64,
    now_ms: i64,
) -> Result<i64, sqlx::Error> {
    let (event_id,): (i64,) = sqlx::query_as(
        "INSERT INTO webhook_events (message_id, kind, tenant, occurred_at_ms, dedupe) \
         VALUES ($1, 'webhook.test', $2, $3, $4) RETURNING id",
    )
    .bind(format!("msg_{}", random_hex(16)))
    .bind(tenant)
    .bind(now_ms)
    .bind(format!(
        "webhook.test:{endpoint_id}:{now_ms}:{}",
        random_hex(8)
    ))
    .fetch_one(&mut *conn)
    .await?;
    let (delivery,): (i64,) = sqlx::query_as(
        "INSERT INTO webhook_deliveries (event_id, endpoint_id, state, attempts, \
         next_attempt_at_ms, created_at_ms) VALUES ($1, $2, 'pending', 0, $3, $3) RETURNING id",
    )
    .bind(event_id)
    .bind(endpoint_id)
    .bind(now_ms)
    .fetch_one(conn)
    .await?;
    Ok(delivery)
}

/// An endpoint's deliveries, newest first, with their event.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct Delivery {
    pub id: i64,
    pub message_id: String,
    pub kind: String,
    pub state: String,
    pub attempts: i64,
    pub created_at_ms: i64,
    pub next_attempt_at_ms: i64,
    pub delivered_at_ms: Option<i64>,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
}

pub async fn deliveries_of(
    db: &Database,
    endpoint_id: i64,
    limit: i64,
) -> Result<Vec<Delivery>, DbError> {
    Ok(sqlx::query_as(
        "SELECT d.id, v.message_id, v.kind, d.state, d.attempts, d.created_at_ms, \
         d.next_attempt_at_ms, d.delivered_at_ms, d.last_status, d.last_error \
         FROM webhook_deliveries d JOIN webhook_events v ON v.id = d.event_id \
         WHERE d.endpoint_id = $1 ORDER BY d.id DESC LIMIT $2",
    )
    .bind(endpoint_id)
    .bind(limit)
    .fetch_all(&db.pool)
    .await?)
}

/// Deliveries waiting (due or retrying), and when the oldest of them was queued (for
/// `/readyz`): read through the queue's index, whatever the size of the log.
pub async fn pending(db: &Database) -> Result<(i64, Option<i64>), DbError> {
    let (count, oldest): (i64, Option<i64>) = sqlx::query_as(
        "SELECT COUNT(*), MIN(created_at_ms) FROM webhook_deliveries WHERE state = 'pending'",
    )
    .fetch_one(&db.pool)
    .await?;
    Ok((count, oldest))
}

/// Deliveries of a removed endpoint are given up.
pub async fn drop_endpoint(conn: &mut AnyConnection, endpoint_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE webhook_deliveries SET state = 'failed', last_error = 'endpoint removed' \
         WHERE endpoint_id = $1 AND state = 'pending'",
    )
    .bind(endpoint_id)
    .execute(conn)
    .await
    .map(drop)
}

/// Events and deliveries settled before `before_ms` are forgotten (the log keeps 30 days).
pub async fn forget_settled(db: &Database, before_ms: i64) -> Result<u64, DbError> {
    let mut tx = db.pool.begin().await?;
    let gone = sqlx::query(
        "DELETE FROM webhook_deliveries WHERE state <> 'pending' AND created_at_ms < $1",
    )
    .bind(before_ms)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query(
        "DELETE FROM webhook_events WHERE occurred_at_ms < $1 AND NOT EXISTS \
         (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = webhook_events.id)",
    )
    .bind(before_ms)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(gone)
}
