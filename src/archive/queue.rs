//! The upload queue and where each stored recording lives. Owns `recording_archive`.
//!
//! States: `pending` (to upload; `next_attempt_at_ms` says when), `stored` (verified in the
//! bucket; `local_removed_at_ms` once the local copy went) and `removing` (the recording was
//! deleted or purged: its objects are to be removed, then the row). A job is claimed by moving
//! its next attempt past a lease (PostgreSQL: `FOR UPDATE SKIP LOCKED`), so two instances never
//! upload the same file at once.

use std::collections::HashSet;

use crate::db::{Backend, Database, DbError};

/// How long a claimed job is left to its instance before another may take it.
pub const LEASE_MS: i64 = 10 * 60 * 1000;

pub const PENDING: &str = "pending";
pub const STORED: &str = "stored";
pub const REMOVING: &str = "removing";

/// A queued upload or removal, with what the library knows of its recording now.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Job {
    pub recording_id: i64,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at_ms: i64,
    /// The hash and size when queued.
    pub sha256: String,
    pub size_bytes: i64,
    pub object_key: Option<String>,
    pub parts: i64,
    /// The recording's row now (None once forgotten).
    pub path: Option<String>,
    pub tenant: Option<String>,
    pub name: Option<String>,
    pub current_sha256: Option<String>,
    pub current_status: Option<String>,
}

/// A stored recording: where its bytes are in the bucket.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Stored {
    pub recording_id: i64,
    pub object_key: String,
    pub size_bytes: i64,
    pub parts: i64,
    pub part_bytes: i64,
    pub sha256: String,
    pub local_removed_at_ms: Option<i64>,
    pub sealed: i64,
}

/// A verified local copy old enough to go.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LocalCopy {
    pub recording_id: i64,
    pub path: String,
    pub object_key: String,
    pub size_bytes: i64,
    pub parts: i64,
}

/// Queues every final, hashed recording not queued yet (that started at or after
/// `started_since_ms`, when given); how many were queued. Looks before it writes, so a round
/// with nothing new takes no write lock.
pub async fn enqueue_ready(
    db: &Database,
    node: &str,
    now_ms: i64,
    started_since_ms: Option<i64>,
    sealed_only: bool,
) -> Result<u64, DbError> {
    // `{since}` is the placeholder of the start bound: $1 alone, $2 beside `now_ms`.
    // `{node}` likewise: this instance queues the files of its own folder. Compared as an
    // expression so that SQLite (without statistics) walks the recent rows by status and start,
    // not every row of the node through the (node_id, path) index.
    const NEW: &str = "FROM recordings r WHERE r.status = 'ready' AND r.sha256 IS NOT NULL \
         AND r.started_at_ms >= {since} AND (r.node_id || '') = {node} \
         AND NOT EXISTS (SELECT 1 FROM recording_archive a WHERE a.recording_id = r.id)";
    // Encrypted deployments upload a recording once it is sealed (its seal is recorded after
    // the library learnt its sealed size).
    const SEALED: &str =
        " AND EXISTS (SELECT 1 FROM recording_seals s WHERE s.recording_id = r.id)";
    let new = if sealed_only {
        format!("{NEW}{SEALED}")
    } else {
        NEW.to_string()
    };
    let since = started_since_ms.unwrap_or(i64::MIN);
    let any: Option<(i64,)> = sqlx::query_as(&format!(
        "SELECT r.id {} LIMIT 1",
        new.replace("{since}", "$1").replace("{node}", "$2")
    ))
    .bind(since)
    .bind(node)
    .fetch_optional(&db.pool)
    .await?;
    if any.is_none() {
        return Ok(0);
    }
    let done = sqlx::query(&format!(
        "INSERT INTO recording_archive (recording_id, state, sha256, size_bytes, next_attempt_at_ms, queued_at_ms) \
         SELECT r.id, 'pending', r.sha256, r.size_bytes, $1, $1 {}",
        new.replace("{since}", "$2").replace("{node}", "$3")
    ))
    .bind(now_ms)
    .bind(since)
    .bind(node)
    .execute(&db.pool)
    .await?;
    Ok(done.rows_affected())
}

/// Recordings deleted, purged or forgotten whose objects were not queued for removal (the
/// process stopped in between): queued now.
pub async fn sweep_gone(db: &Database, now_ms: i64) -> Result<u64, DbError> {
    let done = sqlx::query(
        "UPDATE recording_archive SET state = 'removing', attempts = 0, next_attempt_at_ms = $1, \
         last_error = NULL WHERE state <> 'removing' AND NOT EXISTS (SELECT 1 FROM recordings r \
         WHERE r.id = recording_archive.recording_id AND r.status NOT IN ('deleted', 'purged'))",
    )
    .bind(now_ms)
    .execute(&db.pool)
    .await?;
    Ok(done.rows_affected())
}

/// The columns of a [`Job`], over `recording_archive a LEFT JOIN recordings r`.
const JOB_COLUMNS: &str = "a.recording_id, a.state, a.attempts, a.next_attempt_at_ms, a.sha256, \
     a.size_bytes, a.object_key, a.parts, r.path, r.tenant, r.name, r.sha256 AS current_sha256, \
     r.status AS current_status";

/// Claims the oldest due job for this instance (an upload of `node`'s files, or any node's
/// removal) until the lease ends, in one statement. On PostgreSQL the job's row is taken `FOR
/// UPDATE SKIP LOCKED`: instances claiming at the same moment take different jobs and none
/// waits on another. On SQLite the statement runs under the one write lock, atomic by itself.
pub async fn claim_next(db: &Database, node: &str, now_ms: i64) -> Result<Option<Job>, DbError> {
    let lock = match db.backend {
        Backend::Postgres => " FOR UPDATE OF a SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let claimed: Option<(i64,)> = sqlx::query_as(&format!(
        "UPDATE recording_archive SET next_attempt_at_ms = $1 WHERE recording_id = \
         (SELECT a.recording_id FROM recording_archive a LEFT JOIN recordings r ON r.id = a.recording_id \
         WHERE a.next_attempt_at_ms <= $2 \
         AND (a.state = 'removing' OR (a.state = 'pending' AND r.node_id = $3)) \
         ORDER BY a.next_attempt_at_ms, a.recording_id LIMIT 1{lock}) \
         AND next_attempt_at_ms <= $2 RETURNING recording_id"
    ))
    .bind(now_ms + LEASE_MS)
    .bind(now_ms)
    .bind(node)
    .fetch_optional(&db.pool)
    .await?;
    let Some((id,)) = claimed else {
        return Ok(None);
    };
    Ok(sqlx::query_as(&format!(
        "SELECT {JOB_COLUMNS} FROM recording_archive a LEFT JOIN recordings r ON r.id = a.recording_id \
         WHERE a.recording_id = $1"
    ))
    .bind(id)
    .fetch_optional(&db.pool)
    .await?)
}

/// At an instance's start: its node's uploads are due now. Only this node uploads its own files,
/// so a lease on one was taken by this node's previous process, which is gone (a kill in the
/// middle of an upload would otherwise wait out the lease).
pub async fn release_leases(db: &Database, node: &str, now_ms: i64) -> Result<u64, DbError> {
    let done = sqlx::query(
        "UPDATE recording_archive SET next_attempt_at_ms = $1 WHERE state = 'pending' \
         AND next_attempt_at_ms > $1 AND recording_id IN \
         (SELECT id FROM recordings WHERE node_id = $2 AND status = 'ready')",
    )
    .bind(now_ms)
    .bind(node)
    .execute(&db.pool)
    .await?;
    Ok(done.rows_affected())
}

/// The upload of `id` was verified. False when the job changed meanwhile (the recording was
/// deleted or purged): the caller removes what it uploaded.
pub async fn mark_stored(
    db: &Database,
    id: i64,
    object: &StoredObject,
    now_ms: i64,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE recording_archive SET state = 'stored', object_key = $1, parts = $2, part_bytes = $3, \
         stored_at_ms = $4, last_error = NULL, sealed = $5, attempts = 0 \
         WHERE recording_id = $6 AND state = 'pending'",
    )
    .bind(&object.key)
    .bind(i64::try_from(object.parts).unwrap_or(i64::MAX))
    .bind(i64::try_from(object.part_bytes).unwrap_or(i64::MAX))
    .bind(now_ms)
    .bind(i64::from(object.sealed))
    .bind(id)
    .execute(&db.pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// What an upload put in the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub key: String,
    pub parts: u64,
    pub part_bytes: u64,
    pub size: u64,
    pub sealed: bool,
}

/// A recording's object was replaced (sealed again in the bucket): where and how it is now.
pub async fn replaced(
    db: &Database,
    id: i64,
    object: &StoredObject,
    now_ms: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE recording_archive SET object_key = $1, parts = $2, part_bytes = $3, size_bytes = $4, \
         sealed = $5, stored_at_ms = $6 WHERE recording_id = $7 AND state = 'stored'",
    )
    .bind(&object.key)
    .bind(i64::try_from(object.parts).unwrap_or(i64::MAX))
    .bind(i64::try_from(object.part_bytes).unwrap_or(i64::MAX))
    .bind(i64::try_from(object.size).unwrap_or(i64::MAX))
    .bind(i64::from(object.sealed))
    .bind(now_ms)
    .bind(id)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Stored recordings whose local file was sealed (again) after their upload: the bucket holds
/// an older form (in clear, or under an older key), so they go up again.
pub async fn requeue_resealed(db: &Database, now_ms: i64) -> Result<u64, DbError> {
    let done = sqlx::query(
        "UPDATE recording_archive SET state = 'pending', attempts = 0, next_attempt_at_ms = $1, \
         size_bytes = (SELECT r.size_bytes FROM recordings r WHERE r.id = recording_archive.recording_id), \
         queued_at_ms = $1 \
         WHERE state = 'stored' AND local_removed_at_ms IS NULL AND EXISTS (SELECT 1 FROM recording_seals s \
         WHERE s.recording_id = recording_archive.recording_id AND s.sealed_at_ms > recording_archive.stored_at_ms)",
    )
    .bind(now_ms)
    .execute(&db.pool)
    .await?;
    Ok(done.rows_affected())
}

/// Recordings held only in the bucket whose object is in clear (stored before encryption was
/// turned on) or sealed with a key other than `current`.
pub async fn remote_to_reseal(db: &Database, current: &str) -> Result<Vec<i64>, DbError> {
    let rows: Vec<(i64,)> = sqlx::query_as(
        "SELECT a.recording_id FROM recording_archive a \
         LEFT JOIN recording_seals s ON s.recording_id = a.recording_id \
         WHERE a.state = 'stored' AND a.local_removed_at_ms IS NOT NULL \
         AND (a.sealed = 0 OR s.key_id IS NULL OR s.key_id <> $1) ORDER BY a.recording_id",
    )
    .bind(current)
    .fetch_all(&db.pool)
    .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// An attempt failed: the next one after the backoff, the reason kept for `/readyz`.
pub async fn mark_failed(
    db: &Database,
    job: &Job,
    next_attempt_at_ms: i64,
    error: &str,
) -> Result<(), DbError> {
    let error: String = error.chars().take(500).collect();
    sqlx::query(
        "UPDATE recording_archive SET attempts = attempts + 1, next_attempt_at_ms = $1, last_error = $2 \
         WHERE recording_id = $3 AND state = $4",
    )
    .bind(next_attempt_at_ms)
    .bind(error)
    .bind(job.recording_id)
    .bind(&job.state)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// The recording was deleted or purged: its objects are to go too (at once, retried like an
/// upload while the bucket is away).
pub async fn queue_removal(db: &Database, id: i64, now_ms: i64) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE recording_archive SET state = 'removing', attempts = 0, next_attempt_at_ms = $1, \
         last_error = NULL WHERE recording_id = $2",
    )
    .bind(now_ms)
    .bind(id)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// A removal is done: the row goes.
pub async fn forget(db: &Database, id: i64) -> Result<(), DbError> {
    sqlx::query("DELETE FROM recording_archive WHERE recording_id = $1 AND state = 'removing'")
        .bind(id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Verified local copies of `node` stored at or before `stored_before_ms` and still on disk.
pub async fn local_copies_due(
    db: &Database,
    node: &str,
    stored_before_ms: i64,
    limit: i64,
) -> Result<Vec<LocalCopy>, DbError> {
    Ok(sqlx::query_as(
        "SELECT a.recording_id, r.path, a.object_key, a.size_bytes, a.parts \
         FROM recording_archive a JOIN recordings r ON r.id = a.recording_id \
         WHERE a.state = 'stored' AND a.local_removed_at_ms IS NULL AND a.stored_at_ms <= $1 \
         AND r.status = 'ready' AND r.sha256 = a.sha256 AND r.size_bytes = a.size_bytes \
         AND r.node_id = $3 ORDER BY a.stored_at_ms LIMIT $2",
    )
    .bind(stored_before_ms)
    .bind(limit)
    .bind(node)
    .fetch_all(&db.pool)
    .await?)
}

/// Written before the local file is removed, so the indexer never takes the missing file for
/// a lost recording.
pub async fn mark_local_removed(db: &Database, id: i64, now_ms: i64) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE recording_archive SET local_removed_at_ms = $1 WHERE recording_id = $2 AND state = 'stored'",
    )
    .bind(now_ms)
    .bind(id)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Where recording `id` is in the bucket, once stored and verified.
pub async fn stored(db: &Database, id: i64) -> Result<Option<Stored>, DbError> {
    Ok(sqlx::query_as(
        "SELECT recording_id, object_key, size_bytes, parts, part_bytes, sha256, local_removed_at_ms, sealed \
         FROM recording_archive WHERE recording_id = $1 AND state = 'stored' AND object_key IS NOT NULL",
    )
    .bind(id)
    .fetch_optional(&db.pool)
    .await?)
}

/// Tells the indexer which vanished files the bucket keeps (their local copies were removed on
/// purpose): they are not missing.
pub struct KeptInBucket;

impl crate::library::index::CopiesElsewhere for KeptInBucket {
    fn kept_elsewhere<'a>(
        &'a self,
        db: &'a Database,
        node: &'a str,
        paths: &'a [String],
    ) -> futures_util::future::BoxFuture<'a, Result<HashSet<String>, DbError>> {
        Box::pin(kept_remotely(db, node, paths))
    }
}

/// Of `paths`, those whose local copy was removed on purpose (the bucket holds them).
pub async fn kept_remotely(
    db: &Database,
    node: &str,
    paths: &[String],
) -> Result<HashSet<String>, DbError> {
    let mut out = HashSet::new();
    if paths.is_empty() {
        return Ok(out);
    }
    for chunk in paths.chunks(500) {
        let sql = format!(
            "SELECT r.path FROM recordings r JOIN recording_archive a ON a.recording_id = r.id \
             WHERE a.local_removed_at_ms IS NOT NULL AND r.node_id = $1 AND r.path IN ({})",
            crate::db::placeholders(2, chunk.len())
        );
        let mut query = sqlx::query_as::<_, (String,)>(&sql).bind(node);
        for path in chunk {
            query = query.bind(path);
        }
        out.extend(query.fetch_all(&db.pool).await?.into_iter().map(|(p,)| p));
    }
    Ok(out)
}

/// The queue at a glance, for `/readyz`, `/metrics` and `ari-recorder archive`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub pending: i64,
    pub oldest_pending_queued_at_ms: Option<i64>,
    /// Pending uploads that failed at least once.
    pub failing: i64,
    pub stored: i64,
    pub local_copies_removed: i64,
    pub removing: i64,
    pub last_error: Option<String>,
}

pub async fn summary(db: &Database) -> Result<Summary, DbError> {
    let (pending, oldest, failing, stored, local_removed, removing): (
        i64,
        Option<i64>,
        i64,
        i64,
        i64,
        i64,
    ) = sqlx::query_as(
        "SELECT \
         CAST(COALESCE(SUM(CASE WHEN state = 'pending' THEN 1 ELSE 0 END), 0) AS BIGINT), \
         MIN(CASE WHEN state = 'pending' THEN queued_at_ms END), \
         CAST(COALESCE(SUM(CASE WHEN state = 'pending' AND attempts > 0 THEN 1 ELSE 0 END), 0) AS BIGINT), \
         CAST(COALESCE(SUM(CASE WHEN state = 'stored' THEN 1 ELSE 0 END), 0) AS BIGINT), \
         CAST(COALESCE(SUM(CASE WHEN local_removed_at_ms IS NOT NULL THEN 1 ELSE 0 END), 0) AS BIGINT), \
         CAST(COALESCE(SUM(CASE WHEN state = 'removing' THEN 1 ELSE 0 END), 0) AS BIGINT) \
         FROM recording_archive",
    )
    .fetch_one(&db.pool)
    .await?;
    let last_error: Option<(Option<String>,)> = sqlx::query_as(
        "SELECT last_error FROM recording_archive WHERE last_error IS NOT NULL \
         ORDER BY next_attempt_at_ms DESC LIMIT 1",
    )
    .fetch_optional(&db.pool)
    .await?;
    Ok(Summary {
        pending,
        oldest_pending_queued_at_ms: oldest,
        failing,
        stored,
        local_copies_removed: local_removed,
        removing,
        last_error: last_error.and_then(|(e,)| e),
    })
}

/// The job's file was re-indexed since it was queued: the upload is of the new content.
pub async fn rehash(db: &Database, id: i64, sha256: &str) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE recording_archive SET sha256 = $1, \
         size_bytes = (SELECT size_bytes FROM recordings WHERE id = $2) \
         WHERE recording_id = $2 AND state = 'pending'",
    )
    .bind(sha256)
    .bind(id)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// When the next upload or removal is due.
pub async fn next_due(db: &Database) -> Result<Option<i64>, DbError> {
    let (at,): (Option<i64>,) = sqlx::query_as(
        "SELECT MIN(next_attempt_at_ms) FROM recording_archive WHERE state IN ('pending', 'removing')",
    )
    .fetch_one(&db.pool)
    .await?;
    Ok(at)
}

/// When the oldest stored recording with a local copy was stored.
pub async fn next_local_removal(db: &Database) -> Result<Option<i64>, DbError> {
    let (at,): (Option<i64>,) = sqlx::query_as(
        "SELECT MIN(stored_at_ms) FROM recording_archive WHERE state = 'stored' AND local_removed_at_ms IS NULL",
    )
    .fetch_one(&db.pool)
    .await?;
    Ok(at)
}
