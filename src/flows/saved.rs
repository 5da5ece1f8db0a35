//! The saved state of calls in progress (the `active_calls` table, owned here): written at each
//! transition of a call, removed when it ends, read once at start to take the calls over.

use super::call::Call;
use crate::library::Database;

/// Saves (or replaces) one call's state, `state` as [`Call`] serializes it.
pub async fn save(
    db: &Database,
    call_id: &str,
    state: &str,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO active_calls (call_id, state, updated_at_ms) VALUES ($1, $2, $3) \
         ON CONFLICT (call_id) DO UPDATE SET state = excluded.state, updated_at_ms = excluded.updated_at_ms",
    )
    .bind(call_id)
    .bind(state)
    .bind(now_ms)
    .execute(&db.pool)
    .await
    .map(drop)
}

/// Forgets a call that ended.
pub async fn remove(db: &Database, call_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM active_calls WHERE call_id = $1")
        .bind(call_id)
        .execute(&db.pool)
        .await
        .map(drop)
}

/// Every saved call. A row that no longer parses (written by an incompatible version) is
/// logged and removed: its call cannot be resumed, and Asterisk's view decides what remains.
pub async fn load_all(db: &Database) -> Result<Vec<Call>, sqlx::Error> {
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT call_id, state FROM active_calls")
        .fetch_all(&db.pool)
        .await?;
    let mut states = Vec::new();
    for (call_id, text) in rows {
        match serde_json::from_str::<Call>(&text) {
            Ok(state) => states.push(state),
            Err(e) => {
                tracing::error!(call = %call_id, error = %e, "saved call state unreadable; the call cannot be resumed");
                remove(db, &call_id).await?;
            }
        }
    }
    Ok(states)
}
