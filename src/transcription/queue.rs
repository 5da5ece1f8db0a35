//! The transcription queue. Owns `transcription_jobs`.
//!
//! States: `pending` (to run; `next_attempt_at_ms` says when), `done` (a transcript was stored),
//! `skipped` (nothing to do: the flow opts out, a transcript was attached by hand, no audio)
//! and `failed` (given up after [`MAX_ATTEMPTS`]; `reason` says why). A job is claimed by
//! moving its next attempt past a lease in one statement (PostgreSQL: `FOR UPDATE SKIP
//! LOCKED`), so two instances never run it at once.

use crate::db::{Backend, Database, DbError};

/// How long a claimed job is left to its instance before another may take it.
pub const LEASE_MS: i64 = 30 * 60 * 1000;
/// Attempts before a job is marked failed.
pub const MAX_ATTEMPTS: i64 = 6;

/// A claimed job.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Job {
    pub recording_id: i64,
    pub attempts: i64,
}

/// Queues every final, hashed recording that started at or after `since_ms` and has no job and
/// no transcript yet (one attached by hand or beside the file is kept as it is); how many were
/// queued. Looks before it writes, so a round with nothing new takes no write lock; bounded by
/// the start so that it walks recent rows (the `(status, started_at_ms)` index), not the
/// library.
pub async fn enqueue_ready(db: &Database, since_ms: i64, now_ms: i64) -> Result<u64, DbError> {
    const NEW: &str = "FROM recordings r WHERE r.status = 'ready' AND r.started_at_ms >= {since} \
         AND r.sha256 IS NOT NULL \
         AND NOT EXISTS (SELECT 1 FROM transcription_jobs j WHERE j.recording_id = r.id) \
         AND NOT EXISTS (SELECT 1 FROM recording_transcripts t WHERE t.recording_id = r.id)";
    let any: Option<(i64,)> = sqlx::query_as(&format!(
        "SELECT r.id {} LIMIT 1",
        NEW.replace("{since}", "$1")
    ))
    .bind(since_ms)
    .fetch_optional(&db.pool)
    .await?;
    if any.is_none() {
        return Ok(0);
    }
    let done = sqlx::query(&format!(
        "INSERT INTO transcription_jobs (recording_id, state, next_attempt_at_ms, queued_at_ms, audio_ms) \
         SELECT r.id, 'pending', $1, $1, r.duration_ms {}",
        NEW.replace("{since}", "$2")
    ))
    .bind(now_ms)
    .bind(since_ms)
    .execute(&db.pool)
    .await?;
    Ok(done.rows_affected())
}

/// Claims the shortest due job until the lease ends, in one statement. Shortest first: under a
/// backlog a voicemail is read in seconds rather than after every long call before it, and
/// more transcripts are ready sooner; a long call still comes once the short ones are done.
pub async fn claim_next(db: &Database, node: &str, now_ms: i64) -> Result<Option<Job>, DbError> {
    let lock = match db.backend {
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    Ok(sqlx::query_as(&format!(
        "UPDATE transcription_jobs SET next_attempt_at_ms = $1, claimed_by = $2, attempts = attempts + 1 \
         WHERE recording_id = (SELECT recording_id FROM transcription_jobs \
         WHERE state = 'pending' AND next_attempt_at_ms <= $3 \
         ORDER BY audio_ms, next_attempt_at_ms, recording_id LIMIT 1{lock}) \
         AND state = 'pending' AND next_attempt_at_ms <= $3 RETURNING recording_id, attempts"
    ))
    .bind(now_ms + LEASE_MS)
    .bind(node)
    .bind(now_ms)
    .fetch_optional(&db.pool)
    .await?)
}

/// At an instance's start: the jobs its previous process held are due now (it is gone).
pub async fn release_leases(db: &Database, node: &str, now_ms: i64) -> Result<u64, DbError> {
    let done = sqlx::query(
        "UPDATE transcription_jobs SET next_attempt_at_ms = $1, claimed_by = NULL \
         WHERE state = 'pending' AND claimed_by = $2 AND next_attempt_at_ms > $1",
    )
    .bind(now_ms)
    .bind(node)
    .execute(&db.pool)
    .await?;
    Ok(done.rows_affected())
}

/// The job ended: `done` (with the engine and the audio it heard), or `skipped` with why.
pub async fn finish(
    db: &Database,
    id: i64,
    state: &str,
    engine: Option<&str>,
    audio_ms: Option<i64>,
    reason: Option<&str>,
    now_ms: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE transcription_jobs SET state = $1, engine = $2, audio_ms = COALESCE($3, audio_ms), \
         reason = $4, finished_at_ms = $5, claimed_by = NULL WHERE recording_id = $6",
    )
    .bind(state)
    .bind(engine)
    .bind(audio_ms)
    .bind(reason.map(|r| r.chars().take(500).collect::<String>()))
    .bind(now_ms)
    .bind(id)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// An attempt failed: tried again at `next_ms`, or marked failed after [`MAX_ATTEMPTS`].
pub async fn failed(
    db: &Database,
    job: &Job,
    next_ms: i64,
    reason: &str,
    now_ms: i64,
) -> Result<bool, DbError> {
    let reason: String = reason.chars().take(500).collect();
    if job.attempts >= MAX_ATTEMPTS {
        finish(
            db,
            job.recording_id,
            "failed",
            None,
            None,
            Some(&reason),
            now_ms,
        )
        .await?;
        return Ok(true);
    }
    sqlx::query(
        "UPDATE transcription_jobs SET next_attempt_at_ms = $1, reason = $2, claimed_by = NULL \
         WHERE recording_id = $3 AND state = 'pending'",
    )
    .bind(next_ms)
    .bind(reason)
    .bind(job.recording_id)
    .execute(&db.pool)
    .await?;
    Ok(false)
}

/// Forgets a recording's job (the recording was deleted or purged).
pub async fn forget(db: &Database, id: i64) -> Result<(), DbError> {
    sqlx::query("DELETE FROM transcription_jobs WHERE recording_id = $1")
        .bind(id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// The queue as `/readyz` and `/metrics` show it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub pending: i64,
    pub oldest_pending_queued_at_ms: Option<i64>,
    pub done: i64,
    pub skipped: i64,
    pub failed: i64,
    /// Audio transcribed, the jobs done.
    pub audio_ms: i64,
}

pub async fn summary(db: &Database) -> Result<Summary, DbError> {
    let (pending, oldest, done, skipped, failed, audio_ms): (
        i64,
        Option<i64>,
        i64,
        i64,
        i64,
        i64,
    ) = sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(CASE WHEN state = 'pending' THEN 1 ELSE 0 END), 0) AS BIGINT), \
         MIN(CASE WHEN state = 'pending' THEN queued_at_ms END), \
         CAST(COALESCE(SUM(CASE WHEN state = 'done' THEN 1 ELSE 0 END), 0) AS BIGINT), \
         CAST(COALESCE(SUM(CASE WHEN state = 'skipped' THEN 1 ELSE 0 END), 0) AS BIGINT), \
         CAST(COALESCE(SUM(CASE WHEN state = 'failed' THEN 1 ELSE 0 END), 0) AS BIGINT), \
         CAST(COALESCE(SUM(CASE WHEN state = 'done' THEN audio_ms ELSE 0 END), 0) AS BIGINT) FROM transcription_jobs",
    )
    .fetch_one(&db.pool)
    .await?;
    Ok(Summary {
        pending,
        oldest_pending_queued_at_ms: oldest,
        done,
        skipped,
        failed,
        audio_ms,
    })
}

/// The state of a recording's job, and why, if it has one.
pub async fn state_of(db: &Database, id: i64) -> Result<Option<(String, Option<String>)>, DbError> {
    Ok(
        sqlx::query_as("SELECT state, reason FROM transcription_jobs WHERE recording_id = $1")
            .bind(id)
            .fetch_optional(&db.pool)
            .await?,
    )
}

/// When the next pending job is due, if any.
pub async fn next_due(db: &Database) -> Result<Option<i64>, DbError> {
    let (at,): (Option<i64>,) = sqlx::query_as(
        "SELECT MIN(next_attempt_at_ms) FROM transcription_jobs WHERE state = 'pending'",
    )
    .fetch_one(&db.pool)
    .await?;
    Ok(at)
}

impl Summary {
    /// The queue's figures in the Prometheus text format (shared by every instance).
    pub fn render_metrics(&self, now_ms: i64, out: &mut String) {
        let oldest = self
            .oldest_pending_queued_at_ms
            .map_or(0, |at| (now_ms - at).max(0) / 1000);
        for (name, help, value) in [
            (
                "transcription_pending",
                "Final recordings waiting to be transcribed.",
                self.pending,
            ),
            (
                "transcription_oldest_pending_age_seconds",
                "Age of the oldest transcription still pending (0: none).",
                oldest,
            ),
            ("transcription_done", "Recordings transcribed.", self.done),
            (
                "transcription_skipped",
                "Recordings not transcribed on purpose (their flow opts out, a transcript was attached).",
                self.skipped,
            ),
            (
                "transcription_failed",
                "Recordings whose transcription failed for good.",
                self.failed,
            ),
            (
                "transcription_audio_seconds",
                "Seconds of audio transcribed.",
                self.audio_ms / 1000,
            ),
        ] {
            crate::metrics::header(out, name, "gauge", help);
            out.push_str(&format!("{name} {value}\n"));
        }
    }

    /// What `/readyz` shows of the queue: informative, never gating.
    pub fn readiness(&self, engine: &str) -> serde_json::Value {
        serde_json::json!({
            "engine": engine,
            "pending": self.pending,
            "oldest_pending_since": self.oldest_pending_queued_at_ms.map(crate::clock::rfc3339),
            "done": self.done,
            "skipped": self.skipped,
            "failed": self.failed,
        })
    }
}
