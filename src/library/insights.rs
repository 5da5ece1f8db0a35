//! Talk-time figures of recordings (who talked how long, silences, cross-talk), drawn from their
//! audio after the call by the transcription worker. Owns `recording_insights`.

use crate::audio::activity::TalkTime;
use crate::db::{Database, DbError};

/// Stores recording `id`'s figures, replacing what it had; nothing for a recording no longer
/// ready (deleted or purged meanwhile).
pub async fn store(db: &Database, id: i64, t: &TalkTime) -> Result<bool, DbError> {
    let ms = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let done = sqlx::query(
        "INSERT INTO recording_insights (recording_id, length_ms, speech_ms, caller_ms, agent_ms, silence_ms, \
         longest_silence_ms, crosstalk_ms, crosstalk_count, agent_share, computed_at_ms) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 \
         WHERE EXISTS (SELECT 1 FROM recordings WHERE id = $1 AND status = 'ready') \
         ON CONFLICT (recording_id) DO UPDATE SET length_ms = excluded.length_ms, speech_ms = excluded.speech_ms, \
         caller_ms = excluded.caller_ms, agent_ms = excluded.agent_ms, silence_ms = excluded.silence_ms, \
         longest_silence_ms = excluded.longest_silence_ms, crosstalk_ms = excluded.crosstalk_ms, \
         crosstalk_count = excluded.crosstalk_count, agent_share = excluded.agent_share, \
         computed_at_ms = excluded.computed_at_ms",
    )
    .bind(id)
    .bind(ms(t.length_ms))
    .bind(ms(t.speech_ms))
    .bind(t.caller_ms.map(ms))
    .bind(t.agent_ms.map(ms))
    .bind(ms(t.silence_ms))
    .bind(ms(t.longest_silence_ms))
    .bind(ms(t.crosstalk_ms))
    .bind(ms(t.crosstalk_count))
    .bind(t.agent_share().map(i64::from))
    .bind(crate::clock::now_ms())
    .execute(&db.pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Recording `id`'s figures, if they were drawn.
pub async fn load(db: &Database, id: i64) -> Result<Option<TalkTime>, DbError> {
    type Row = (i64, i64, Option<i64>, Option<i64>, i64, i64, i64, i64);
    let row: Option<Row> = sqlx::query_as(
        "SELECT length_ms, speech_ms, caller_ms, agent_ms, silence_ms, longest_silence_ms, crosstalk_ms, \
         crosstalk_count FROM recording_insights WHERE recording_id = $1",
    )
    .bind(id)
    .fetch_optional(&db.pool)
    .await?;
    let u = |v: i64| u64::try_from(v).unwrap_or(0);
    Ok(row.map(
        |(length, speech, caller, agent, silence, longest, crosstalk, count)| TalkTime {
            length_ms: u(length),
            speech_ms: u(speech),
            caller_ms: caller.map(u),
            agent_ms: agent.map(u),
            silence_ms: u(silence),
            longest_silence_ms: u(longest),
            crosstalk_ms: u(crosstalk),
            crosstalk_count: u(count),
        },
    ))
}

/// Removes recording `id`'s figures (it was deleted or purged).
pub async fn remove(db: &Database, id: i64) -> Result<(), DbError> {
    sqlx::query("DELETE FROM recording_insights WHERE recording_id = $1")
        .bind(id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// The figures as the API shows them (seconds; shares in percent).
pub fn json(t: &TalkTime) -> serde_json::Value {
    let s = |ms: u64| ms as f64 / 1000.0;
    serde_json::json!({
        "length_seconds": s(t.length_ms),
        "speech_seconds": s(t.speech_ms),
        "caller_talk_seconds": t.caller_ms.map(s),
        "agent_talk_seconds": t.agent_ms.map(s),
        "silence_seconds": s(t.silence_ms),
        "longest_silence_seconds": s(t.longest_silence_ms),
        "crosstalk_seconds": s(t.crosstalk_ms),
        "crosstalk_count": t.crosstalk_count,
        "agent_share_percent": t.agent_share(),
    })
}
