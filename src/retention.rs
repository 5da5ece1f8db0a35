//! Retention rules and legal holds. Owns `tenant_retention` and `recording_holds`.
//!
//! A tenant's rule removes the audio of call recordings and of voicemail messages after so many
//! days (the row stays, `purged`, with the rule as its reason) and can forget purged or deleted
//! rows altogether later. A held recording is never purged or deleted, by rule or by hand, until
//! an admin releases it. The purge runs hourly in `serve` and on demand with `ari-recorder purge
//! [--dry-run]`; each recording it removes leaves one audit event. Its copy in the archive's
//! bucket is queued for removal in the same step.

use std::path::Path;

use crate::access::audit::{self, AuditEntry};
use crate::db::{Database, DbError};
use crate::library::{transcripts, NodeType};
use crate::outbox::{Event, EventKind, Subject};

const DAY_MS: i64 = 86_400_000;

/// Who the purge's audit events name.
pub const PURGE_ACTOR: &str = "system:retention";

/// A tenant's retention rule; `None` keeps forever.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Rule {
    pub calls_days: Option<u32>,
    pub voicemail_days: Option<u32>,
    pub forget_after_days: Option<u32>,
}

/// A legal hold on a recording.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Hold {
    pub reason: String,
    pub by: String,
    pub at_ms: i64,
}

fn days(value: Option<i64>) -> Option<u32> {
    value.filter(|d| *d > 0).and_then(|d| u32::try_from(d).ok())
}

pub async fn rule(db: &Database, tenant: &str) -> Result<Rule, DbError> {
    let row: Option<(Option<i64>, Option<i64>, Option<i64>)> = sqlx::query_as(
        "SELECT calls_days, voicemail_days, forget_after_days FROM tenant_retention WHERE tenant = $1",
    )
    .bind(tenant)
    .fetch_optional(&db.pool)
    .await?;
    Ok(row
        .map(|(calls, voicemail, forget)| Rule {
            calls_days: days(calls),
            voicemail_days: days(voicemail),
            forget_after_days: days(forget),
        })
        .unwrap_or_default())
}

pub async fn set_rule(db: &Database, tenant: &str, rule: Rule) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO tenant_retention (tenant, calls_days, voicemail_days, forget_after_days) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (tenant) DO UPDATE SET calls_days = $2, \
         voicemail_days = $3, forget_after_days = $4",
    )
    .bind(tenant)
    .bind(rule.calls_days.map(i64::from))
    .bind(rule.voicemail_days.map(i64::from))
    .bind(rule.forget_after_days.map(i64::from))
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Places recording `id` on hold (or replaces the reason of its hold).
pub async fn hold(db: &Database, id: i64, reason: &str, by: &str) -> Result<(), DbError> {
    let mut tx = db.pool.begin().await?;
    let at_ms = crate::clock::now_ms();
    sqlx::query(
        "INSERT INTO recording_holds (recording_id, reason, held_by, held_at_ms) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (recording_id) DO UPDATE SET reason = $2, held_by = $3, held_at_ms = $4",
    )
    .bind(id)
    .bind(reason)
    .bind(by)
    .bind(at_ms)
    .execute(&mut *tx)
    .await?;
    let event =
        Event::each_time(EventKind::HoldPlaced, Subject::Recording(id), at_ms).with_detail(reason);
    crate::outbox::record(&mut tx, &event).await?;
    tx.commit().await?;
    Ok(())
}

/// Releases the hold on recording `id`; whether it had one.
pub async fn release(db: &Database, id: i64) -> Result<bool, DbError> {
    let mut tx = db.pool.begin().await?;
    let released: Option<(String,)> =
        sqlx::query_as("DELETE FROM recording_holds WHERE recording_id = $1 RETURNING reason")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    if let Some((reason,)) = &released {
        let at_ms = crate::clock::now_ms();
        let event = Event::each_time(EventKind::HoldReleased, Subject::Recording(id), at_ms)
            .with_detail(reason.as_str());
        crate::outbox::record(&mut tx, &event).await?;
    }
    tx.commit().await?;
    Ok(released.is_some())
}

pub async fn hold_of(db: &Database, id: i64) -> Result<Option<Hold>, DbError> {
    let row: Option<(String, String, i64)> = sqlx::query_as(
        "SELECT reason, held_by, held_at_ms FROM recording_holds WHERE recording_id = $1",
    )
    .bind(id)
    .fetch_optional(&db.pool)
    .await?;
    Ok(row.map(|(reason, by, at_ms)| Hold { reason, by, at_ms }))
}

/// What a purge did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PurgeReport {
    /// Recordings whose audio was (or would be) removed.
    pub purged: u64,
    /// Rows forgotten altogether.
    pub forgotten: u64,
    /// Recordings past their rule but held.
    pub held: u64,
    /// Files that could not be removed (left for the next run).
    pub failed_files: u64,
    /// The recordings purged and their calls, for the caches that hold their audio.
    #[serde(skip)]
    pub removed: Vec<(i64, Option<String>)>,
}

/// A row past its tenant's rule.
#[derive(sqlx::FromRow)]
struct Due {
    id: i64,
    node_id: String,
    path: String,
    name: String,
    tenant: String,
    node_type: Option<String>,
    call_id: Option<String>,
    held: i64,
    calls_days: Option<i64>,
    voicemail_days: Option<i64>,
}

/// Applies every tenant's rule at `now_ms`, as node `node` whose recordings folder is `root`
/// (other nodes' files are removed by their own indexers, which finish off purged rows). A dry
/// run changes nothing and reports what a real one would do.
pub async fn purge(
    db: &Database,
    root: &Path,
    node: &str,
    now_ms: i64,
    dry_run: bool,
) -> Result<PurgeReport, DbError> {
    let mut report = PurgeReport::default();
    // Oldest first per tenant's rule: voicemail by its own days, everything else by the calls'.
    let due: Vec<Due> = sqlx::query_as(
        "SELECT r.id, r.node_id, r.path, r.name, r.tenant, r.node_type, r.call_id, \
         CAST(CASE WHEN h.recording_id IS NULL THEN 0 ELSE 1 END AS BIGINT) AS held, \
         t.calls_days, t.voicemail_days \
         FROM recordings r JOIN tenant_retention t ON t.tenant = r.tenant \
         LEFT JOIN recording_holds h ON h.recording_id = r.id \
         WHERE r.status NOT IN ('deleted', 'purged', 'recording', 'not_recorded') \
         AND ((r.node_type = $3 AND t.voicemail_days > 0 AND r.started_at_ms < $1 - t.voicemail_days * $2) \
           OR (COALESCE(r.node_type, '') <> $3 AND t.calls_days > 0 AND r.started_at_ms < $1 - t.calls_days * $2)) \
         ORDER BY r.started_at_ms",
    )
    .bind(now_ms)
    .bind(DAY_MS)
    .bind(NodeType::Voicemail.as_str())
    .fetch_all(&db.pool)
    .await?;
    for row in due {
        if row.held != 0 {
            report.held += 1;
            continue;
        }
        let rule_days = if row.node_type.as_deref() == Some(NodeType::Voicemail.as_str()) {
            row.voicemail_days
        } else {
            row.calls_days
        }
        .unwrap_or(0);
        if dry_run {
            report.purged += 1;
            continue;
        }
        let reason = format!("retention: audio removed after {rule_days} days (tenant rule)");
        // The row first: a crash before the files go leaves a purged row whose files the
        // indexer removes at its next scan.
        if !crate::library::index::mark_purged(db, row.id, &reason).await? {
            continue;
        }
        transcripts::remove(db, row.id).await?;
        crate::library::insights::remove(db, row.id).await?;
        crate::library::voicemail::mark_new(db, row.id).await?;
        // And from the archive's bucket, by its worker.
        crate::archive::queue::queue_removal(db, row.id, now_ms).await?;
        if row.node_id == node {
            report.failed_files += remove_off_thread(root, files_of(&row.path, &row.name)).await;
        }
        let entry = AuditEntry {
            recording_id: Some(row.id),
            detail: Some(format!("after {rule_days} days")),
            ..AuditEntry::new(PURGE_ACTOR, row.tenant.clone(), "purge")
        };
        audit::record(db, &entry).await?;
        report.purged += 1;
        report.removed.push((row.id, row.call_id));
    }
    report.forgotten = forget(db, now_ms, dry_run).await?;
    if !dry_run {
        report.failed_files += finish_removals(db, root, node, now_ms).await?;
    }
    Ok(report)
}

/// Files of this node's recordings purged or deleted lately by another node (which cannot
/// reach this disk): removed here; how many could not be.
async fn finish_removals(
    db: &Database,
    root: &Path,
    node: &str,
    now_ms: i64,
) -> Result<u64, DbError> {
    // Every node runs this hourly: two hours back covers a missed run.
    let since = now_ms - 2 * 3_600_000;
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT path, name FROM recordings WHERE node_id = $1 \
         AND ((status = 'purged' AND indexed_at_ms >= $2) OR (status = 'deleted' AND deleted_at_ms >= $2))",
    )
    .bind(node)
    .bind(since)
    .fetch_all(&db.pool)
    .await?;
    let mut failed = 0;
    for (path, name) in rows {
        failed += remove_off_thread(root, files_of(&path, &name)).await;
    }
    Ok(failed)
}

/// Removes the files `rels` inside `root` on a blocking thread; how many could not be.
async fn remove_off_thread(root: &Path, rels: Vec<String>) -> u64 {
    let (root, asked) = (root.to_path_buf(), rels.len() as u64);
    tokio::task::spawn_blocking(move || {
        rels.iter()
            .filter(|rel| !crate::library::remove_inside(&root, rel))
            .count() as u64
    })
    .await
    // A removal that never ran removed nothing.
    .unwrap_or(asked)
}

/// Rows purged or deleted longer ago than their tenant's `forget_after_days`: gone altogether.
async fn forget(db: &Database, now_ms: i64, dry_run: bool) -> Result<u64, DbError> {
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT r.id, r.tenant FROM recordings r JOIN tenant_retention t ON t.tenant = r.tenant \
         WHERE r.status IN ('purged', 'deleted') AND t.forget_after_days > 0 \
         AND r.started_at_ms < $1 - t.forget_after_days * $2 \
         AND NOT EXISTS (SELECT 1 FROM recording_holds h WHERE h.recording_id = r.id)",
    )
    .bind(now_ms)
    .bind(DAY_MS)
    .bind(NodeType::Voicemail.as_str())
    .fetch_all(&db.pool)
    .await?;
    if dry_run || rows.is_empty() {
        return Ok(rows.len() as u64);
    }
    let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
    crate::library::index::forget_rows(db, &ids).await?;
    for (id, tenant) in &rows {
        let entry = AuditEntry {
            recording_id: Some(*id),
            ..AuditEntry::new(PURGE_ACTOR, tenant.clone(), "forget")
        };
        audit::record(db, &entry).await?;
    }
    Ok(rows.len() as u64)
}

/// Every file of a recording: the audio, each party's own recording (dual-channel), and a
/// sidecar transcript.
pub fn files_of(path: &str, name: &str) -> Vec<String> {
    vec![
        path.to_string(),
        format!("{}/{name}-caller.wav", crate::audio::PARTY_FOLDER),
        format!("{}/{name}-agent.wav", crate::audio::PARTY_FOLDER),
        Path::new(path)
            .with_extension("vtt")
            .to_string_lossy()
            .into_owned(),
    ]
}
