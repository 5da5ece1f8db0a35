//! What calls tell the library about their recordings (the `call_recordings` and
//! `recording_redactions` tables, owned here): a recording started, its other party answered,
//! it finished, failed or was discarded, stretches of it were redacted, and the call's consent.
//! The indexer reads it to know whose a file is; the API to show a call's recordings.

use std::collections::HashMap;

use sqlx::AnyExecutor;

use super::{Consent, Direction, NodeType, RecordingFormat};

/// What the call writes to the library when it starts a recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingStarted {
    pub recording_name: String,
    pub call_id: String,
    pub tenant: String,
    pub project: String,
    /// Only the people on the call may see it.
    pub private: bool,
    /// `granted` when the caller heard a recording notice, else `unknown`.
    pub consent: Consent,
    /// The caller's number and the answering endpoint, comma-separated.
    pub participants: String,
    pub flow: Option<String>,
    pub node: Option<String>,
    /// None: the flow's node could not be found (not one that records).
    pub node_type: Option<NodeType>,
    pub direction: Direction,
    pub caller_name: String,
    pub caller_number: String,
    pub callee: String,
    /// None: nothing is written (a call not recorded).
    pub format: Option<RecordingFormat>,
    pub started_at_ms: i64,
    /// Asterisk's linkedid of the call (its CDR and CEL records carry it), when Asterisk
    /// reports it (`channelvars = CHANNEL(linkedid)` in ari.conf).
    pub linkedid: Option<String>,
    /// The uniqueid of the channel that answered the caller (None: not known when the
    /// recording began, as for a lead-in armed at dial).
    pub callee_channel: Option<String>,
}

/// A call's recording as the library knows it, by recording name.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CallMeta {
    pub recording_name: String,
    pub call_id: String,
    pub tenant: String,
    pub flow: Option<String>,
    pub node: Option<String>,
    pub node_type: Option<NodeType>,
    pub direction: Direction,
    pub caller_name: Option<String>,
    pub caller_number: Option<String>,
    pub callee: Option<String>,
    /// `recording`, `done`, `failed` or `canceled`.
    pub state: String,
    pub started_at_ms: i64,
    pub project: String,
    pub private: i64,
    pub consent: Consent,
    pub participants: Option<String>,
    pub asterisk_started_at_ms: Option<i64>,
    /// Why the recording failed, or (finished) why it is short: cut by an Asterisk restart.
    pub failure_cause: Option<String>,
    /// The file's format (a [`RecordingFormat`]'s name), or `none` when nothing was written.
    pub format: String,
    /// How long it was, once finished (as Asterisk said).
    pub duration_seconds: Option<i64>,
    /// Asterisk's linkedid of the call, when it was reported.
    pub linkedid: Option<String>,
    /// The uniqueid of the channel that answered the caller, when known.
    pub callee_channel: Option<String>,
}

const META_COLUMNS: &str = "recording_name, call_id, tenant, flow, node, node_type, direction, \
     caller_name, caller_number, callee, state, started_at_ms, project, private, consent, \
     participants, asterisk_started_at_ms, failure_cause, format, duration_seconds, linkedid, \
     callee_channel";

/// Binds a recording's row in the one order its statements number it: $1 recording_name,
/// $2 call_id, $3 tenant, $4 flow, $5 node, $6 node_type, $7 direction, $8 caller_name,
/// $9 caller_number, $10 callee, $11 format, $12 started_at_ms, $13 project, $14 private,
/// $15 consent, $16 participants, $17 linkedid, $18 callee_channel.
pub(crate) fn bind_row<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    row: &'q RecordingStarted,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    query
        .bind(&row.recording_name)
        .bind(&row.call_id)
        .bind(&row.tenant)
        .bind(&row.flow)
        .bind(&row.node)
        .bind(row.node_type.map(NodeType::as_str))
        .bind(row.direction.as_str())
        .bind(&row.caller_name)
        .bind(&row.caller_number)
        .bind(&row.callee)
        .bind(row.format.map_or("none", RecordingFormat::as_str))
        .bind(row.started_at_ms)
        .bind(&row.project)
        .bind(i64::from(row.private))
        .bind(row.consent.as_str())
        .bind(&row.participants)
        .bind(&row.linkedid)
        .bind(&row.callee_channel)
}

/// A recording began: its metadata, before (or beside) its file.
pub async fn started(
    conn: impl AnyExecutor<'_>,
    row: &RecordingStarted,
) -> Result<(), sqlx::Error> {
    bind_row(
        sqlx::query(
            "INSERT INTO call_recordings (recording_name, call_id, tenant, flow, node, node_type, direction, \
             caller_name, caller_number, callee, format, state, started_at_ms, project, private, consent, participants, \
             linkedid, callee_channel) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'recording', $12, $13, $14, $15, $16, $17, $18) \
             ON CONFLICT (recording_name) DO NOTHING",
        ),
        row,
    )
    .execute(conn)
    .await
    .map(drop)
}

/// Why a recording is filed with no call: shown as its reason.
pub const FILED_UNCLAIMED: &str = "its call's metadata never reached the library (lost in a \
     crash?): filed as a private recording of the operator's tenant, seen by its admins";

/// A call's recording whose metadata never came (lost in a crash) is filed after a grace
/// period: the metadata is written here as the library knows it, private to nobody on a call
/// (no participants: the tenant's admins see it). What the name says is kept: a recording
/// named `outbound-...` was a direct outbound call, the others were inbound calls to a flow
/// node of that type.
pub async fn file_unclaimed(
    conn: impl AnyExecutor<'_>,
    name: &str,
    format: &str,
    (tenant, project): (&str, &str),
    started_at_ms: i64,
) -> Result<(), sqlx::Error> {
    // `<node type>-<date>-<time>-<hex>`, the type spelled with dashes (`hunt-group`).
    let kind = name.rsplitn(4, '-').nth(3).unwrap_or_default();
    let node_type = NodeType::parse(&kind.replace('-', "_"));
    let direction = if node_type == Some(NodeType::Outbound) {
        Direction::Outbound
    } else {
        Direction::Inbound
    };
    sqlx::query(
        "INSERT INTO call_recordings (recording_name, call_id, tenant, node_type, direction, \
         format, state, started_at_ms, project, private, consent, participants, failure_cause) \
         VALUES ($1, $1, $2, $3, $4, $5, 'done', $6, $7, 1, 'unknown', '', $8) \
         ON CONFLICT (recording_name) DO NOTHING",
    )
    .bind(name)
    .bind(tenant)
    .bind(node_type.map(NodeType::as_str))
    .bind(direction.as_str())
    .bind(format)
    .bind(started_at_ms)
    .bind(project)
    .bind(FILED_UNCLAIMED)
    .execute(conn)
    .await
    .map(drop)
}

/// An armed recording's other party answered: its callee, and where the lead-in ends.
pub async fn answered(
    conn: impl AnyExecutor<'_>,
    name: &str,
    callee: &str,
    at_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE call_recordings SET callee = $1, answered_at_ms = $2, \
         participants = COALESCE(caller_number, '') || ',' || $1 WHERE recording_name = $3",
    )
    .bind(callee)
    .bind(at_ms)
    .bind(name)
    .execute(conn)
    .await
    .map(drop)
}

/// An armed recording nobody answered was discarded.
pub async fn cancelled(
    conn: impl AnyExecutor<'_>,
    name: &str,
    at_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE call_recordings SET state = 'canceled', failure_cause = 'nobody answered', \
         finished_at_ms = $1 WHERE recording_name = $2 AND state = 'recording'",
    )
    .bind(at_ms)
    .bind(name)
    .execute(conn)
    .await
    .map(drop)
}

/// Asterisk finished the recording; `started_at_ms` is Asterisk's clock when the file began.
/// Returns the metadata as it is now (None: not recording any more, or unknown), which the
/// indexer needs to make the file's row final.
pub async fn finished(
    conn: impl AnyExecutor<'_>,
    name: &str,
    duration_seconds: Option<i64>,
    started_at_ms: Option<i64>,
    at_ms: i64,
    cut: Option<&str>,
) -> Result<Option<CallMeta>, sqlx::Error> {
    sqlx::query_as(&format!(
        "UPDATE call_recordings SET state = 'done', duration_seconds = COALESCE($1, duration_seconds), \
         finished_at_ms = $2, asterisk_started_at_ms = $4, failure_cause = COALESCE($5, failure_cause) \
         WHERE recording_name = $3 AND state = 'recording' RETURNING {META_COLUMNS}"
    ))
    .bind(duration_seconds)
    .bind(at_ms)
    .bind(name)
    .bind(started_at_ms)
    .bind(cut)
    .fetch_optional(conn)
    .await
}

/// A finished recording turned out cut short (Asterisk restarted under it): why.
pub async fn note_cut(
    conn: impl AnyExecutor<'_>,
    name: &str,
    cause: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE call_recordings SET failure_cause = $1 WHERE recording_name = $2 AND state = 'done'")
        .bind(cause)
        .bind(name)
        .execute(conn)
        .await?;
    Ok(())
}

/// Asterisk could not record (or stopped with an error); returns the metadata as for
/// [`finished`].
pub async fn failed(
    conn: impl AnyExecutor<'_>,
    name: &str,
    cause: &str,
    at_ms: i64,
) -> Result<Option<CallMeta>, sqlx::Error> {
    sqlx::query_as(&format!(
        "UPDATE call_recordings SET state = 'failed', failure_cause = $1, finished_at_ms = $2 \
         WHERE recording_name = $3 RETURNING {META_COLUMNS}"
    ))
    .bind(cause)
    .bind(at_ms)
    .bind(name)
    .fetch_optional(conn)
    .await
}

/// One recording's metadata.
pub async fn meta(conn: impl AnyExecutor<'_>, name: &str) -> Result<Option<CallMeta>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {META_COLUMNS} FROM call_recordings WHERE recording_name = $1"
    ))
    .bind(name)
    .fetch_optional(conn)
    .await
}

/// Every recording's metadata, by recording name (for a full scan).
pub async fn meta_all(
    conn: impl AnyExecutor<'_>,
) -> Result<HashMap<String, CallMeta>, sqlx::Error> {
    let rows: Vec<CallMeta> =
        sqlx::query_as(&format!("SELECT {META_COLUMNS} FROM call_recordings"))
            .fetch_all(conn)
            .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.recording_name.clone(), r))
        .collect())
}

/// The call's consent changed: every recording of it carries the new answer.
pub async fn set_consent(
    conn: impl AnyExecutor<'_>,
    call_id: &str,
    consent: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE call_recordings SET consent = $1 WHERE call_id = $2")
        .bind(consent)
        .bind(call_id)
        .execute(conn)
        .await
        .map(drop)
}

/// A stretch of a recording muted or paused while its call was live: where in the file (ms),
/// when, by whom.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Redaction {
    pub recording_name: String,
    /// `mute` (silence in the file) or `pause` (left out of the file).
    pub mode: String,
    pub from_offset_ms: i64,
    pub to_offset_ms: i64,
    pub started_at_ms: i64,
    pub ended_at_ms: i64,
    pub by_actor: String,
}

impl Redaction {
    /// Time of the call left out of the file (a pause): 0 for a mute.
    pub fn gap_ms(&self) -> i64 {
        if self.mode == "pause" {
            (self.ended_at_ms - self.started_at_ms).max(0)
        } else {
            0
        }
    }
}

pub async fn add_redaction(
    conn: impl AnyExecutor<'_>,
    redaction: &Redaction,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO recording_redactions (recording_name, mode, from_offset_ms, to_offset_ms, started_at_ms, ended_at_ms, by_actor) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&redaction.recording_name)
    .bind(&redaction.mode)
    .bind(redaction.from_offset_ms)
    .bind(redaction.to_offset_ms)
    .bind(redaction.started_at_ms)
    .bind(redaction.ended_at_ms)
    .bind(&redaction.by_actor)
    .execute(conn)
    .await
    .map(drop)
}

/// A recording's redacted stretches, in file order.
pub async fn redactions(
    conn: impl AnyExecutor<'_>,
    name: &str,
) -> Result<Vec<Redaction>, sqlx::Error> {
    sqlx::query_as(
        "SELECT recording_name, mode, from_offset_ms, to_offset_ms, started_at_ms, ended_at_ms, by_actor \
         FROM recording_redactions WHERE recording_name = $1 ORDER BY from_offset_ms, id",
    )
    .bind(name)
    .fetch_all(conn)
    .await
}
