//! Which recordings are sealed, and with which key. Owns `recording_seals`.

use crate::db::{Database, DbError};

/// A recording to seal or to seal again.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ToSeal {
    pub id: i64,
    pub path: String,
    pub name: String,
}

/// Final recordings of `node` not sealed yet and still on its disk (those only in the archive's
/// bucket are `reencrypt`'s), that started at or after `started_since_ms` when given, oldest
/// first. The node is compared as an expression: SQLite without statistics would otherwise walk
/// every row of the node through the (node_id, path) index instead of the recent ones by status.
pub async fn unsealed(
    db: &Database,
    node: &str,
    started_since_ms: Option<i64>,
    limit: i64,
) -> Result<Vec<ToSeal>, DbError> {
    Ok(sqlx::query_as(
        "SELECT r.id, r.path, r.name FROM recordings r \
         WHERE r.status = 'ready' AND r.sha256 IS NOT NULL AND r.started_at_ms >= $1 \
         AND NOT EXISTS (SELECT 1 FROM recording_seals s WHERE s.recording_id = r.id) \
         AND NOT EXISTS (SELECT 1 FROM recording_archive a WHERE a.recording_id = r.id \
           AND a.local_removed_at_ms IS NOT NULL) \
         AND (r.node_id || '') = $3 ORDER BY r.started_at_ms, r.id LIMIT $2",
    )
    .bind(started_since_ms.unwrap_or(i64::MIN))
    .bind(limit)
    .bind(node)
    .fetch_all(&db.pool)
    .await?)
}

/// Recordings of `node` sealed with another key than `current`, after id `after` (in id order).
pub async fn sealed_with_other_keys(
    db: &Database,
    node: &str,
    current: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<ToSeal>, DbError> {
    Ok(sqlx::query_as(
        "SELECT r.id, r.path, r.name FROM recordings r JOIN recording_seals s ON s.recording_id = r.id \
         WHERE s.key_id <> $1 AND r.id > $2 AND r.status NOT IN ('deleted', 'purged') \
         AND r.node_id = $4 ORDER BY r.id LIMIT $3",
    )
    .bind(current)
    .bind(after)
    .bind(limit)
    .bind(node)
    .fetch_all(&db.pool)
    .await?)
}

/// Recording `id` is sealed with `key_id` now.
pub async fn record(db: &Database, id: i64, key_id: &str, now_ms: i64) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO recording_seals (recording_id, key_id, sealed_at_ms) VALUES ($1, $2, $3) \
         ON CONFLICT (recording_id) DO UPDATE SET key_id = $2, sealed_at_ms = $3",
    )
    .bind(id)
    .bind(key_id)
    .bind(now_ms)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Sealed recordings by key (public halves), for `reencrypt` and the operator.
pub async fn count_by_key(db: &Database) -> Result<Vec<(String, i64)>, DbError> {
    Ok(sqlx::query_as(
        "SELECT key_id, CAST(COUNT(*) AS BIGINT) FROM recording_seals GROUP BY key_id ORDER BY key_id",
    )
    .fetch_all(&db.pool)
    .await?)
}
