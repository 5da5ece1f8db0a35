//! The recordings as the API reads them (the `recordings` table's rows, written by the
//! indexer, `index.rs`): one row, a call's rows, and the changes people make to them.

use sqlx::AnyExecutor;

use super::{Compliance, Consent, Direction, NodeType, RecordingStatus};

/// A recording as the API sees it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Recording {
    pub id: i64,
    pub path: String,
    pub name: String,
    /// A [`super::RecordingFormat`]'s name, or `none` for a call not recorded (no file).
    pub format: String,
    pub status: RecordingStatus,
    pub reason: Option<String>,
    pub size_bytes: i64,
    pub duration_ms: i64,
    pub encoding: Option<String>,
    pub sample_rate: i64,
    pub data_offset: i64,
    pub data_len: i64,
    pub sha256: Option<String>,
    pub call_id: Option<String>,
    pub tenant: String,
    pub project: String,
    pub participants: Option<String>,
    pub flow: Option<String>,
    pub node: Option<String>,
    pub node_type: Option<NodeType>,
    pub direction: Option<Direction>,
    pub caller_name: Option<String>,
    pub caller_number: Option<String>,
    pub callee: Option<String>,
    pub started_at_ms: i64,
    pub private: i64,
    pub consent: Consent,
    pub compliance: Compliance,
    pub deleted_at_ms: Option<i64>,
    /// Where the file begins on Asterisk's clock (None: its start was not seen).
    pub asterisk_started_at_ms: Option<i64>,
    /// The reason of its legal hold, when it is held.
    pub hold_reason: Option<String>,
    /// The instance whose recordings folder holds (or held) its file.
    pub node_id: String,
    /// Asterisk's linkedid of its call (CDR and CEL), when Asterisk reported it.
    pub linkedid: Option<String>,
    /// The uniqueid of the channel that answered the caller, when known.
    pub callee_channel: Option<String>,
}

/// The columns of [`Recording`], for queries that select rows (the list builds on them).
pub const COLUMNS: &str = "id, path, name, format, status, reason, size_bytes, duration_ms, encoding, sample_rate, \
    data_offset, data_len, sha256, call_id, tenant, project, participants, flow, node, node_type, direction, caller_name, caller_number, \
    callee, started_at_ms, private, consent, compliance, deleted_at_ms, asterisk_started_at_ms, \
    (SELECT reason FROM recording_holds h WHERE h.recording_id = recordings.id) AS hold_reason, node_id, linkedid, callee_channel";

pub async fn by_id(conn: impl AnyExecutor<'_>, id: i64) -> Result<Option<Recording>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM recordings WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Every row of a call (its segments, and its bridged calls listed without audio), oldest first.
pub async fn of_call(
    conn: impl AnyExecutor<'_>,
    call_id: &str,
) -> Result<Vec<Recording>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM recordings WHERE call_id = $1 \
         ORDER BY COALESCE(asterisk_started_at_ms, started_at_ms), id"
    ))
    .bind(call_id)
    .fetch_all(conn)
    .await
}

/// Whose a recording is (None: no such row).
pub async fn tenant_of(conn: impl AnyExecutor<'_>, id: i64) -> Result<Option<String>, sqlx::Error> {
    let tenant: Option<(String,)> = sqlx::query_as("SELECT tenant FROM recordings WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?;
    Ok(tenant.map(|(t,)| t))
}

pub async fn set_consent_and_compliance(
    conn: impl AnyExecutor<'_>,
    id: i64,
    consent: &str,
    compliance: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE recordings SET consent = $1, compliance = $2 WHERE id = $3")
        .bind(consent)
        .bind(compliance)
        .bind(id)
        .execute(conn)
        .await
        .map(drop)
}

/// The call's other recordings (in `tenant`, all but `except`) take `consent`; how many.
pub async fn set_consent_of_call(
    conn: impl AnyExecutor<'_>,
    call_id: &str,
    tenant: &str,
    except: i64,
    consent: &str,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE recordings SET consent = $1 WHERE call_id = $2 AND tenant = $3 AND id <> $4",
    )
    .bind(consent)
    .bind(call_id)
    .bind(tenant)
    .bind(except)
    .execute(conn)
    .await?
    .rows_affected())
}

/// Deleted through the API by `by` at `at_ms` (the file goes with the owning node's purge).
pub async fn mark_deleted(
    conn: impl AnyExecutor<'_>,
    id: i64,
    at_ms: i64,
    by: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE recordings SET status = 'deleted', reason = 'deleted through the API', deleted_at_ms = $1, deleted_by = $2 WHERE id = $3")
        .bind(at_ms)
        .bind(by)
        .bind(id)
        .execute(conn)
        .await
        .map(drop)
}
