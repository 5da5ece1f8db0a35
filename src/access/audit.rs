//! The audit log: append-only and hash-chained.
//!
//! An action and its event share one transaction: `AuditTx::begin` opens it and takes the
//! chain's head row first (a write, so SQLite takes its write lock at once and PostgreSQL
//! serializes writers on that row); the action does its writes on `conn()`; `commit` appends
//! the event after the head and commits both. No action is stored without its trace.
//!
//! Each event's hash covers the previous event's hash and every field, so editing or removing
//! an event breaks the chain from there; `verify` walks it.

use sha2::{Digest, Sha256};
use sqlx::{Any, AnyConnection, Transaction};

use super::{hex, now_ms};
use crate::library::{Database, DbError};

/// The hash before the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audited access. Never audio or transcript content: ids, names and outcomes only.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub actor: String,
    pub tenant: String,
    pub action: &'static str,
    pub recording_id: Option<i64>,
    /// `allowed`, or the denial reason.
    pub outcome: String,
    pub client: String,
    pub detail: Option<String>,
}

impl AuditEntry {
    pub fn new(actor: impl Into<String>, tenant: impl Into<String>, action: &'static str) -> Self {
        AuditEntry {
            actor: actor.into(),
            tenant: tenant.into(),
            action,
            recording_id: None,
            outcome: "allowed".into(),
            client: String::new(),
            detail: None,
        }
    }
}

/// `text` cut to `max` characters, marked with "…" when cut.
pub fn capped(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The hash of an event: SHA-256 over the previous hash and each field (not its own `hash`),
/// length-prefixed so no two different events can hash the same text.
pub fn event_hash(event: &StoredEvent) -> String {
    let mut hasher = Sha256::new();
    let recording = event
        .recording_id
        .map(|r| r.to_string())
        .unwrap_or_default();
    let fields = [
        event.prev_hash.as_str(),
        &event.seq.to_string(),
        &event.at_ms.to_string(),
        &event.actor,
        &event.tenant,
        &event.action,
        &recording,
        &event.outcome,
        &event.client,
        event.detail.as_deref().unwrap_or("\u{0}"),
    ];
    for field in fields {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    hex(&hasher.finalize())
}

/// An open transaction holding the audit chain's head.
pub struct AuditTx {
    tx: Transaction<'static, Any>,
    /// The chain's newest event (sequence number, hash), read while holding it.
    head: (i64, String),
}

impl AuditTx {
    pub async fn begin(db: &Database) -> Result<AuditTx, DbError> {
        let mut tx = db.pool.begin().await?;
        let head: (i64, String) =
            sqlx::query_as("UPDATE audit_head SET seq = seq WHERE id = 1 RETURNING seq, hash")
                .fetch_one(&mut *tx)
                .await?;
        Ok(AuditTx { tx, head })
    }

    /// Where the action does its own writes.
    pub fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    /// Appends the event and commits it with whatever the action wrote. Returns its sequence
    /// number.
    pub async fn commit(mut self, entry: &AuditEntry) -> Result<i64, DbError> {
        let (head_seq, head_hash) = std::mem::take(&mut self.head);
        // Every field has a ceiling, whatever a caller put in it: an event never grows with
        // what an unauthenticated client sends.
        let mut event = StoredEvent {
            seq: head_seq + 1,
            at_ms: now_ms(),
            actor: capped(&entry.actor, 128),
            tenant: capped(&entry.tenant, 64),
            action: entry.action.to_string(),
            recording_id: entry.recording_id,
            outcome: capped(&entry.outcome, 64),
            client: capped(&entry.client, 64),
            detail: entry.detail.as_deref().map(|d| capped(d, 512)),
            prev_hash: head_hash,
            hash: String::new(),
        };
        event.hash = event_hash(&event);
        sqlx::query(
            "INSERT INTO audit_events (seq, at_ms, actor, tenant, action, recording_id, outcome, client, detail, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(event.seq)
        .bind(event.at_ms)
        .bind(&event.actor)
        .bind(&event.tenant)
        .bind(&event.action)
        .bind(event.recording_id)
        .bind(&event.outcome)
        .bind(&event.client)
        .bind(&event.detail)
        .bind(&event.prev_hash)
        .bind(&event.hash)
        .execute(&mut *self.tx)
        .await?;
        sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
            .bind(event.seq)
            .bind(&event.hash)
            .execute(&mut *self.tx)
            .await?;
        self.tx.commit().await?;
        Ok(event.seq)
    }
}

/// Records an event that goes with no other write (a read, a denial).
pub async fn record(db: &Database, entry: &AuditEntry) -> Result<i64, DbError> {
    AuditTx::begin(db).await?.commit(entry).await
}

#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct StoredEvent {
    pub seq: i64,
    pub at_ms: i64,
    pub actor: String,
    pub tenant: String,
    pub action: String,
    pub recording_id: Option<i64>,
    pub outcome: String,
    pub client: String,
    pub detail: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

/// What `audit verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub events: i64,
    pub head_hash: String,
    /// The first break found, naming the event.
    pub problem: Option<String>,
}

/// Walks the whole chain in order, a page at a time.
pub async fn verify(db: &Database) -> Result<Verification, DbError> {
    const PAGE: i64 = 5000;
    let mut expected_seq = 1;
    let mut prev = GENESIS.to_string();
    let mut problem = None;
    'pages: loop {
        let page: Vec<StoredEvent> = sqlx::query_as(
            "SELECT seq, at_ms, actor, tenant, action, recording_id, outcome, client, detail, prev_hash, hash \
             FROM audit_events WHERE seq >= $1 ORDER BY seq LIMIT $2",
        )
        .bind(expected_seq)
        .bind(PAGE)
        .fetch_all(&db.pool)
        .await?;
        let done = (page.len() as i64) < PAGE;
        for event in page {
            if event.seq != expected_seq {
                problem = Some(format!(
                    "event {expected_seq} is missing (the next stored is {})",
                    event.seq
                ));
                break 'pages;
            }
            if event.prev_hash != prev {
                problem = Some(format!(
                    "event {} does not follow event {}: the chain was cut or reordered",
                    event.seq,
                    event.seq - 1
                ));
                break 'pages;
            }
            if event_hash(&event) != event.hash {
                problem = Some(format!(
                    "event {} was altered: its fields do not match its hash",
                    event.seq
                ));
                break 'pages;
            }
            prev = event.hash;
            expected_seq += 1;
        }
        if done {
            break;
        }
    }
    let events = expected_seq - 1;
    if problem.is_none() {
        let (head_seq, head_hash): (i64, String) =
            sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1")
                .fetch_one(&db.pool)
                .await?;
        if head_seq != events || head_hash != prev {
            problem = Some(format!(
                "the log ends at event {events} but its head says {head_seq}: events were removed from the end"
            ));
        }
    }
    Ok(Verification {
        events,
        head_hash: prev,
        problem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_changes_the_hash() {
        let base = StoredEvent {
            seq: 1,
            at_ms: 5,
            actor: "user:a".into(),
            tenant: "t".into(),
            action: "stream".into(),
            recording_id: Some(3),
            outcome: "allowed".into(),
            client: "ip".into(),
            detail: None,
            prev_hash: GENESIS.into(),
            hash: String::new(),
        };
        let reference = event_hash(&base);
        let variants = [
            StoredEvent {
                prev_hash: "1".into(),
                ..base.clone()
            },
            StoredEvent {
                seq: 2,
                ..base.clone()
            },
            StoredEvent {
                at_ms: 6,
                ..base.clone()
            },
            StoredEvent {
                actor: "user:b".into(),
                ..base.clone()
            },
            StoredEvent {
                tenant: "u".into(),
                ..base.clone()
            },
            StoredEvent {
                action: "download".into(),
                ..base.clone()
            },
            StoredEvent {
                recording_id: None,
                ..base.clone()
            },
            StoredEvent {
                outcome: "denied".into(),
                ..base.clone()
            },
            StoredEvent {
                client: "ip2".into(),
                ..base.clone()
            },
            StoredEvent {
                detail: Some(String::new()),
                ..base.clone()
            },
            // Moving text between fields must not keep the hash.
            StoredEvent {
                actor: "user:at".into(),
                tenant: String::new(),
                ..base.clone()
            },
        ];
        for (i, v) in variants.iter().enumerate() {
            assert_ne!(reference, event_hash(v), "variant {i}");
        }
        // The stored hash itself is not an input.
        assert_eq!(
            reference,
            event_hash(&StoredEvent {
                hash: "x".into(),
                ..base
            })
        );
    }
}
