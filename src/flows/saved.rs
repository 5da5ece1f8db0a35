//! The saved state of calls in progress (the `active_calls` table, owned here): written at each
//! transition of a call, removed when it ends, read once at start to take the calls over.

use super::call::Call;
use crate::db::Database;
use sqlx::AnyExecutor;

/// Rows of one statement: three parameters each, well under every backend's limit.
const ROWS_A_STATEMENT: usize = 200;

/// Saves (or replaces) calls' states, `state` as [`Call`] serializes it, and forgets the calls
/// whose state is None (they ended): one statement for the saves, one for the removals.
pub async fn save_all(
    conn: &mut sqlx::AnyConnection,
    states: &[(String, Option<String>)],
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    let saves: Vec<(&str, &str)> = states
        .iter()
        .filter_map(|(id, state)| Some((id.as_str(), state.as_deref()?)))
        .collect();
    for chunk in saves.chunks(ROWS_A_STATEMENT) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3))
            .collect();
        let sql = format!(
            "INSERT INTO active_calls (call_id, state, updated_at_ms) VALUES {} \
             ON CONFLICT (call_id) DO UPDATE SET state = excluded.state, updated_at_ms = excluded.updated_at_ms",
            rows.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for (id, state) in chunk {
            query = query.bind(*id).bind(*state).bind(now_ms);
        }
        query.execute(&mut *conn).await?;
    }
    let ended: Vec<&str> = states
        .iter()
        .filter(|(_, state)| state.is_none())
        .map(|(id, _)| id.as_str())
        .collect();
    for chunk in ended.chunks(ROWS_A_STATEMENT) {
        let sql = format!(
            "DELETE FROM active_calls WHERE call_id IN ({})",
            crate::db::placeholders(1, chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(*id);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Forgets a call that ended.
async fn remove(conn: impl AnyExecutor<'_>, call_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM active_calls WHERE call_id = $1")
        .bind(call_id)
        .execute(conn)
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
                remove(&db.pool, &call_id).await?;
            }
        }
    }
    Ok(states)
}
