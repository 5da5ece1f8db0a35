//! Voicemail messages, new and heard: a message is new until someone who may play it listens to
//! it (asks for its audio link) or marks it heard; it can be marked new again. Owns
//! `voicemail_heard`.

use std::collections::HashMap;

use crate::db::{Database, DbError};

/// Who heard a message first, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heard {
    pub at_ms: i64,
    pub by: String,
}

/// Notes message `id` heard by `by` at `at_ms`, unless it was heard already (the first listener
/// is kept); whether it was new.
pub async fn mark_heard(db: &Database, id: i64, by: &str, at_ms: i64) -> Result<bool, DbError> {
    let done = sqlx::query(
        "INSERT INTO voicemail_heard (recording_id, heard_at_ms, by_actor) VALUES ($1, $2, $3) \
         ON CONFLICT (recording_id) DO NOTHING",
    )
    .bind(id)
    .bind(at_ms)
    .bind(by)
    .execute(&db.pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Makes message `id` new again; whether it had been heard.
pub async fn mark_new(db: &Database, id: i64) -> Result<bool, DbError> {
    let done = sqlx::query("DELETE FROM voicemail_heard WHERE recording_id = $1")
        .bind(id)
        .execute(&db.pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Which of `ids` were heard.
pub async fn heard_of(db: &Database, ids: &[i64]) -> Result<HashMap<i64, Heard>, DbError> {
    let mut out = HashMap::new();
    for chunk in ids.chunks(500) {
        let sql = format!(
            "SELECT recording_id, heard_at_ms, by_actor FROM voicemail_heard WHERE recording_id IN ({})",
            crate::db::placeholders(1, chunk.len())
        );
        let mut query = sqlx::query_as::<_, (i64, i64, String)>(&sql);
        for id in chunk {
            query = query.bind(*id);
        }
        for (id, at_ms, by) in query.fetch_all(&db.pool).await? {
            out.insert(id, Heard { at_ms, by });
        }
    }
    Ok(out)
}
