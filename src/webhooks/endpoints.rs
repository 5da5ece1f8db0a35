//! Each tenant's webhook endpoints and their delivery log. Owns `webhook_endpoints` and
//! `webhook_attempts`. A secret is shown once, when it is made (creation, rotation); reads
//! never return it.

use sqlx::AnyConnection;

use crate::db::{Database, DbError};
use crate::outbox::EventKind;

/// An endpoint as its admins see it (no secret).
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct Endpoint {
    pub id: i64,
    pub tenant: String,
    pub url: String,
    pub description: String,
    /// Comma-separated in the table; a list in JSON.
    #[serde(serialize_with = "as_list")]
    pub events: String,
    #[serde(serialize_with = "as_bool")]
    pub include_transcript: i64,
    #[serde(serialize_with = "as_bool")]
    pub enabled: i64,
    pub disabled_reason: Option<String>,
    pub failing_since_ms: Option<i64>,
    /// Until when the secret it replaced still signs beside the new one.
    pub previous_valid_until_ms: Option<i64>,
    pub created_by: String,
    pub created_at_ms: i64,
}

fn as_list<S: serde::Serializer>(events: &str, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(events.split(',').filter(|e| !e.is_empty()))
}

fn as_bool<S: serde::Serializer>(value: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bool(*value != 0)
}

const COLUMNS: &str = "id, tenant, url, description, events, include_transcript, enabled, \
     disabled_reason, failing_since_ms, previous_valid_until_ms, created_by, created_at_ms";

/// The event kinds of a request, checked and in a stable order.
pub fn parse_events(events: &[String]) -> Result<String, String> {
    let every = || {
        EventKind::ALL
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if events.is_empty() {
        return Err(format!("name at least one of: {}", every()));
    }
    let mut kinds = Vec::new();
    for event in events {
        let kind = EventKind::parse(event.trim())
            .ok_or_else(|| format!("{event:?} is not an event; one of: {}", every()))?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    kinds.sort_by_key(|k| EventKind::ALL.iter().position(|a| a == k));
    Ok(kinds
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(","))
}

pub struct NewEndpoint<'a> {
    pub tenant: &'a str,
    pub url: &'a str,
    pub description: &'a str,
    /// From [`parse_events`].
    pub events: &'a str,
    pub include_transcript: bool,
    pub secret: &'a str,
    pub created_by: &'a str,
    pub at_ms: i64,
}

pub async fn create(conn: &mut AnyConnection, new: &NewEndpoint<'_>) -> Result<i64, sqlx::Error> {
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO webhook_endpoints (tenant, url, description, events, include_transcript, \
         secret, enabled, created_by, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8) \
         RETURNING id",
    )
    .bind(new.tenant)
    .bind(new.url)
    .bind(new.description)
    .bind(new.events)
    .bind(i64::from(new.include_transcript))
    .bind(new.secret)
    .bind(new.created_by)
    .bind(new.at_ms)
    .fetch_one(conn)
    .await?;
    Ok(id)
}

pub async fn list(db: &Database, tenant: &str) -> Result<Vec<Endpoint>, DbError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM webhook_endpoints WHERE tenant = $1 ORDER BY id"
    ))
    .bind(tenant)
    .fetch_all(&db.pool)
    .await?)
}

/// One endpoint of `tenant` (another tenant's is not found).
pub async fn get(
    conn: &mut AnyConnection,
    tenant: &str,
    id: i64,
) -> Result<Option<Endpoint>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM webhook_endpoints WHERE id = $1 AND tenant = $2"
    ))
    .bind(id)
    .bind(tenant)
    .fetch_optional(conn)
    .await
}

/// What an admin may change; None keeps it.
#[derive(Debug, Default)]
pub struct Change<'a> {
    pub url: Option<&'a str>,
    pub description: Option<&'a str>,
    pub events: Option<&'a str>,
    pub include_transcript: Option<bool>,
    /// Turning it on again clears the reason it was turned off and its failing streak.
    pub enabled: Option<bool>,
}

pub async fn update(
    conn: &mut AnyConnection,
    tenant: &str,
    id: i64,
    change: &Change<'_>,
) -> Result<bool, sqlx::Error> {
    let enable = change.enabled.map(i64::from);
    Ok(sqlx::query(
        "UPDATE webhook_endpoints SET url = COALESCE($1, url), \
         description = COALESCE($2, description), events = COALESCE($3, events), \
         include_transcript = COALESCE($4, include_transcript), enabled = COALESCE($5, enabled), \
         disabled_reason = CASE WHEN $5 = 1 THEN NULL ELSE disabled_reason END, \
         failing_since_ms = CASE WHEN $5 = 1 THEN NULL ELSE failing_since_ms END \
         WHERE id = $6 AND tenant = $7",
    )
    .bind(change.url)
    .bind(change.description)
    .bind(change.events)
    .bind(change.include_transcript.map(i64::from))
    .bind(enable)
    .bind(id)
    .bind(tenant)
    .execute(conn)
    .await?
    .rows_affected()
        > 0)
}

pub async fn delete(conn: &mut AnyConnection, tenant: &str, id: i64) -> Result<bool, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1 AND tenant = $2")
            .bind(id)
            .bind(tenant)
            .execute(conn)
            .await?
            .rows_affected()
            > 0,
    )
}

/// A new secret signs from now on; the old one signs beside it until `previous_until_ms`.
pub async fn rotate(
    conn: &mut AnyConnection,
    tenant: &str,
    id: i64,
    secret: &str,
    previous_until_ms: i64,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE webhook_endpoints SET previous_secret = secret, secret = $1, \
         previous_valid_until_ms = $2 WHERE id = $3 AND tenant = $4",
    )
    .bind(secret)
    .bind(previous_until_ms)
    .bind(id)
    .bind(tenant)
    .execute(conn)
    .await?
    .rows_affected()
        > 0)
}

/// What a delivery needs of its endpoint.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub enabled: bool,
    pub include_transcript: bool,
    pub tenant: String,
    /// The secrets that sign now: the current one, and the previous while it is valid.
    pub secrets: Vec<String>,
    pub failing_since_ms: Option<i64>,
}

pub async fn target(db: &Database, id: i64, now_ms: i64) -> Result<Option<Target>, DbError> {
    type Row = (
        String,
        i64,
        i64,
        String,
        String,
        Option<String>,
        Option<i64>,
        Option<i64>,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT url, enabled, include_transcript, tenant, secret, previous_secret, \
         previous_valid_until_ms, failing_since_ms FROM webhook_endpoints WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&db.pool)
    .await?;
    Ok(row.map(
        |(url, enabled, include_transcript, tenant, secret, previous, until, failing)| {
            let mut secrets = vec![secret];
            if let (Some(previous), Some(until)) = (previous, until) {
                if now_ms < until {
                    secrets.push(previous);
                }
            }
            Target {
                url,
                enabled: enabled != 0,
                include_transcript: include_transcript != 0,
                tenant,
                secrets,
                failing_since_ms: failing,
            }
        },
    ))
}

/// A delivery went through: the endpoint's failing streak ends.
pub async fn note_success(conn: &mut AnyConnection, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE webhook_endpoints SET failing_since_ms = NULL WHERE id = $1 AND failing_since_ms IS NOT NULL",
    )
    .bind(id)
    .execute(conn)
    .await
    .map(drop)
}

/// A delivery failed: the streak starts now unless it runs already.
pub async fn note_failure(
    conn: &mut AnyConnection,
    id: i64,
    at_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE webhook_endpoints SET failing_since_ms = COALESCE(failing_since_ms, $1) WHERE id = $2",
    )
    .bind(at_ms)
    .bind(id)
    .execute(conn)
    .await
    .map(drop)
}

/// Turned off by the service (failing for days), with why.
pub async fn disable(conn: &mut AnyConnection, id: i64, reason: &str) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE webhook_endpoints SET enabled = 0, disabled_reason = $1 WHERE id = $2 AND enabled = 1",
    )
    .bind(reason)
    .bind(id)
    .execute(conn)
    .await?
    .rows_affected()
        > 0)
}

/// One attempt, for the endpoint's delivery log.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct Attempt {
    pub id: i64,
    pub delivery_id: i64,
    pub at_ms: i64,
    pub status: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
}

pub async fn log_attempt(
    conn: &mut AnyConnection,
    endpoint_id: i64,
    attempt: &Attempt,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO webhook_attempts (delivery_id, endpoint_id, at_ms, status, latency_ms, error) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(attempt.delivery_id)
    .bind(endpoint_id)
    .bind(attempt.at_ms)
    .bind(attempt.status)
    .bind(attempt.latency_ms)
    .bind(attempt.error.as_deref())
    .execute(conn)
    .await
    .map(drop)
}

/// The endpoint's latest attempts, newest first.
pub async fn attempts(
    db: &Database,
    endpoint_id: i64,
    limit: i64,
) -> Result<Vec<Attempt>, DbError> {
    Ok(sqlx::query_as(
        "SELECT id, delivery_id, at_ms, status, latency_ms, error FROM webhook_attempts \
         WHERE endpoint_id = $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(endpoint_id)
    .bind(limit)
    .fetch_all(&db.pool)
    .await?)
}

/// Attempts older than `before_ms` are forgotten.
pub async fn forget_attempts(db: &Database, before_ms: i64) -> Result<u64, DbError> {
    Ok(sqlx::query("DELETE FROM webhook_attempts WHERE at_ms < $1")
        .bind(before_ms)
        .execute(&db.pool)
        .await?
        .rows_affected())
}
