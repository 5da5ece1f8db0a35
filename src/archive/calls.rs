//! Whole calls kept in the bucket for download links. Owns `call_objects` and
//! `call_object_segments`.
//!
//! A call assembled for `GET /api/calls/{id}/download-url` is stored once per version of its
//! timeline (the segments' hashes, offsets and pauses: the playback cache's key), under the
//! tenant's prefix, whole (never split, so one presigned URL fetches it) and sealed when
//! encryption is on. Later links reuse it from any instance. A version is retired (`removing`)
//! when a newer one is stored, and when any segment it was made from is deleted, purged or
//! changed, so no copy outlives the recordings it holds; the archive's worker then deletes the
//! object and forgets the row.

use std::path::Path;

use crate::db::{Database, DbError};

use super::{Archive, ArchiveError};

const STORED: &str = "stored";

/// A call's stored version: where its WAV is and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CallObject {
    pub object_key: String,
    pub size_bytes: i64,
    /// Samples of the timeline (8 kHz mono, 16-bit: the WAV's data is twice as many bytes).
    pub samples: i64,
    /// 1: sealed with the deployment's key (encryption at rest).
    pub sealed: i64,
}

/// What a new version of a call is: its call, tenant, timeline and the segments it was made of.
pub struct CallVersion<'a> {
    pub call_id: &'a str,
    pub tenant: &'a str,
    pub timeline_key: &'a str,
    pub samples: u64,
    /// Each segment's recording id and the SHA-256 of its file when assembled.
    pub segments: Vec<(i64, String)>,
    /// The name a browser fetching it by a presigned URL saves it under.
    pub download_name: &'a str,
}

/// A retired version whose object is still to be deleted.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Retired {
    pub object_key: String,
    pub attempts: i64,
}

impl Archive {
    /// The key of a call's version: the tenant's prefix, then `calls/`, the call's id (bytes
    /// other than letters, digits, `.`, `-` and `_` as `~XX`) and the timeline's key.
    pub fn call_key(&self, tenant: &str, call_id: &str, timeline_key: &str) -> String {
        let mut safe = String::with_capacity(call_id.len());
        for byte in call_id.bytes() {
            if byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-' | b'_') {
                safe.push(char::from(byte));
            } else {
                safe.push_str(&format!("~{byte:02X}"));
            }
        }
        if safe.is_empty() || safe.chars().all(|c| c == '.') {
            safe = format!("~{safe}");
        }
        format!(
            "{}{tenant}/calls/{safe}/{timeline_key}.wav",
            self.settings.prefix
        )
    }
}

/// The stored version of `call_id` with this timeline, if there is one.
pub async fn find(
    db: &Database,
    call_id: &str,
    timeline_key: &str,
) -> Result<Option<CallObject>, DbError> {
    Ok(sqlx::query_as(
        "SELECT object_key, size_bytes, samples, sealed FROM call_objects \
         WHERE call_id = $1 AND timeline_key = $2 AND state = 'stored'",
    )
    .bind(call_id)
    .bind(timeline_key)
    .fetch_optional(&db.pool)
    .await?)
}

/// Uploads `file` (`size` bytes, sealed or not) as `version`, reads it back, and records it,
/// retiring the call's other versions in the same transaction.
pub async fn store(
    db: &Database,
    archive: &Archive,
    version: &CallVersion<'_>,
    file: &Path,
    size: u64,
    sealed: bool,
) -> Result<CallObject, ArchiveError> {
    let key = archive.call_key(version.tenant, version.call_id, version.timeline_key);
    archive
        .store_file(
            &key,
            file,
            (size, 0),
            super::objects::attributes_for(version.download_name),
            sealed,
        )
        .await?;
    let object = CallObject {
        object_key: key,
        size_bytes: i64::try_from(size).unwrap_or(i64::MAX),
        samples: i64::try_from(version.samples).unwrap_or(i64::MAX),
        sealed: i64::from(sealed),
    };
    if let Err(e) = record(db, version, &object).await {
        // An object no row names would outlive the recordings it holds: it goes at once, unless
        // a request for the same version recorded it meanwhile (the same key, the same bytes).
        let named: Result<Option<(String,)>, sqlx::Error> =
            sqlx::query_as("SELECT object_key FROM call_objects WHERE object_key = $1")
                .bind(&object.object_key)
                .fetch_optional(&db.pool)
                .await;
        match named {
            Ok(None) => {
                if let Err(removal) = archive.delete_keys(&object.object_key, 0).await {
                    tracing::warn!(key = %object.object_key, error = %removal, "a whole call's copy no row names is left in the bucket");
                }
            }
            Ok(Some(_)) => {}
            Err(lookup) => {
                tracing::warn!(key = %object.object_key, error = %lookup, "a whole call's copy may be left in the bucket with no row naming it");
            }
        }
        return Err(e.into());
    }
    archive.wake.notify_one();
    Ok(object)
}

/// Records a stored version and its segments, retiring the call's other versions, in one
/// transaction.
async fn record(
    db: &Database,
    version: &CallVersion<'_>,
    object: &CallObject,
) -> Result<(), DbError> {
    let now = crate::clock::now_ms();
    let mut tx = db.pool.begin().await?;
    sqlx::query(
        "INSERT INTO call_objects (object_key, call_id, tenant, timeline_key, size_bytes, samples, \
         sealed, state, stored_at_ms, next_attempt_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0) \
         ON CONFLICT (object_key) DO UPDATE SET state = excluded.state, stored_at_ms = excluded.stored_at_ms, \
         size_bytes = excluded.size_bytes, sealed = excluded.sealed, attempts = 0, last_error = NULL",
    )
    .bind(&object.object_key)
    .bind(version.call_id)
    .bind(version.tenant)
    .bind(version.timeline_key)
    .bind(object.size_bytes)
    .bind(object.samples)
    .bind(object.sealed)
    .bind(STORED)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    for (recording, sha256) in &version.segments {
        sqlx::query(
            "INSERT INTO call_object_segments (object_key, recording_id, sha256) VALUES ($1, $2, $3) \
             ON CONFLICT (object_key, recording_id) DO NOTHING",
        )
        .bind(&object.object_key)
        .bind(recording)
        .bind(sha256)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "UPDATE call_objects SET state = 'removing', next_attempt_at_ms = $1 \
         WHERE call_id = $2 AND object_key <> $3 AND state = 'stored'",
    )
    .bind(now)
    .bind(version.call_id)
    .bind(&object.object_key)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The condition of a stored version some segment of which is no longer as it was assembled:
/// gone, deleted, purged, not ready, or another file.
const STALE: &str = "state = 'stored' AND EXISTS (SELECT 1 FROM call_object_segments s \
     LEFT JOIN recordings r ON r.id = s.recording_id WHERE s.object_key = call_objects.object_key \
     AND (r.id IS NULL OR r.status <> 'ready' OR r.sha256 IS NULL OR r.sha256 <> s.sha256))";

/// Retires every stored version whose segments changed; how many. Looks before it writes, so
/// a round with nothing to retire takes no write lock.
pub async fn retire_stale(db: &Database, now_ms: i64) -> Result<u64, DbError> {
    let any: Option<(String,)> = sqlx::query_as(&format!(
        "SELECT object_key FROM call_objects WHERE {STALE} LIMIT 1"
    ))
    .fetch_optional(&db.pool)
    .await?;
    if any.is_none() {
        return Ok(0);
    }
    let done = sqlx::query(&format!(
        "UPDATE call_objects SET state = 'removing', next_attempt_at_ms = $1 WHERE {STALE}"
    ))
    .bind(now_ms)
    .execute(&db.pool)
    .await?;
    Ok(done.rows_affected())
}

/// Retires every sealed version (`reencrypt` retires the key that sealed them; a later link
/// assembles the call again under the new one).
pub async fn retire_sealed(db: &Database, now_ms: i64) -> Result<u64, DbError> {
    let done = sqlx::query(
        "UPDATE call_objects SET state = 'removing', next_attempt_at_ms = $1 \
         WHERE state = 'stored' AND sealed = 1",
    )
    .bind(now_ms)
    .execute(&db.pool)
    .await?;
    Ok(done.rows_affected())
}

/// Retired versions whose deletion is due, oldest first.
pub async fn removals_due(db: &Database, now_ms: i64, limit: i64) -> Result<Vec<Retired>, DbError> {
    Ok(sqlx::query_as(
        "SELECT object_key, attempts FROM call_objects WHERE state = 'removing' \
         AND next_attempt_at_ms <= $1 ORDER BY next_attempt_at_ms LIMIT $2",
    )
    .bind(now_ms)
    .bind(limit)
    .fetch_all(&db.pool)
    .await?)
}

/// When the next retired version is due, if any.
pub async fn next_removal(db: &Database) -> Result<Option<i64>, DbError> {
    let (at,): (Option<i64>,) =
        sqlx::query_as("SELECT MIN(next_attempt_at_ms) FROM call_objects WHERE state = 'removing'")
            .fetch_one(&db.pool)
            .await?;
    Ok(at)
}

/// A retired version's object is gone: its rows go too.
pub async fn forget(db: &Database, object_key: &str) -> Result<(), DbError> {
    let mut tx = db.pool.begin().await?;
    sqlx::query("DELETE FROM call_object_segments WHERE object_key = $1")
        .bind(object_key)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM call_objects WHERE object_key = $1 AND state = 'removing'")
        .bind(object_key)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// A deletion failed: tried again at `next_ms`.
pub async fn removal_failed(
    db: &Database,
    object_key: &str,
    next_ms: i64,
    error: &str,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE call_objects SET attempts = attempts + 1, next_attempt_at_ms = $1, last_error = $2 \
         WHERE object_key = $3 AND state = 'removing'",
    )
    .bind(next_ms)
    .bind(error.chars().take(500).collect::<String>())
    .bind(object_key)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// How many versions are stored and how many wait to be deleted.
pub async fn counts(db: &Database) -> Result<(i64, i64), DbError> {
    let (stored, removing): (i64, i64) = sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(CASE WHEN state = 'stored' THEN 1 ELSE 0 END), 0) AS BIGINT), \
         CAST(COALESCE(SUM(CASE WHEN state = 'removing' THEN 1 ELSE 0 END), 0) AS BIGINT) FROM call_objects",
    )
    .fetch_one(&db.pool)
    .await?;
    Ok((stored, removing))
}
