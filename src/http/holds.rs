//! Legal holds: `PUT` and `DELETE /api/recordings/{id}/hold` and `/api/calls/{id}/hold`.
//!
//! Admins place and release holds, with a reason; every attempt is audited. A held recording is
//! never deleted by hand nor purged by a retention rule until it is released.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::auth::{denied, Caller};
use super::params::{CallId, RecordingId};
use super::recordings::{authorize, fetch_call, Recording};
use super::{internal, rfc3339, ApiError, AppState, ErrorBody};
use crate::access::audit::{self, AuditEntry};
use crate::access::policy::{decide, Action, Denial};
use crate::retention;

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct HoldRequest {
    /// Why (a case, a request), kept with the hold and in the audit log.
    #[schema(max_length = 200)]
    reason: String,
}

/// A hold's reason: said, and short enough for the audit log.
fn reason_of(
    body: Result<Json<HoldRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<String, ApiError> {
    let Json(request) = body?;
    let reason = request.reason.trim().to_string();
    if reason.is_empty() || reason.chars().count() > 200 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "reason: say why the recording is held (1 to 200 characters), e.g. a case number",
        ));
    }
    Ok(reason)
}

fn gone(row: &Recording) -> Option<ApiError> {
    matches!(row.status.as_str(), "deleted" | "purged").then(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "gone",
            format!(
                "the recording's audio was {}: there is nothing to hold",
                row.status
            ),
        )
    })
}

async fn hold_json(state: &AppState, id: i64) -> Result<serde_json::Value, ApiError> {
    let hold = retention::hold_of(&state.db, id).await.map_err(internal)?;
    Ok(serde_json::json!({
        "id": id,
        "hold": hold.map(|h| serde_json::json!({"reason": h.reason, "by": h.by, "at": rfc3339(h.at_ms)})),
    }))
}

/// Place the recording on legal hold (admins; audited).
///
/// Held, it is deleted by nobody and purged by no retention rule until released.
#[utoipa::path(put, path = "/api/recordings/{id}/hold", tag = "recordings", params(super::params::RecordingId),
    request_body = HoldRequest, responses(
    (status = 200, description = "`{\"id\", \"hold\": {reason, by, at}}`"),
    (status = 400, description = "no reason, or one too long", body = ErrorBody),
    crate::http::openapi::RecordingRefusals,
    (status = 409, description = "its audio was deleted or purged", body = ErrorBody),
))]
pub(super) async fn hold_recording(
    State(state): State<AppState>,
    caller: Caller,
    Path(RecordingId { id }): Path<RecordingId>,
    body: Result<Json<HoldRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let reason = reason_of(body)?;
    let (row, _, mut entry) = authorize(&state, &caller, &id, Action::SetStatus, "hold").await?;
    if let Some(error) = gone(&row) {
        return Err(caller.refuse(&state, entry, error).await);
    }
    entry.detail = Some(audit::capped(&reason, 200));
    audit::record(&state.db, &entry)
        .await
        .map_err(crate::http::audit_failed)?;
    retention::hold(&state.db, row.id, &reason, &caller.principal.actor())
        .await
        .map_err(internal)?;
    Ok(Json(hold_json(&state, row.id).await?).into_response())
}

/// Release the recording's hold (admins; audited).
#[utoipa::path(delete, path = "/api/recordings/{id}/hold", tag = "recordings", params(super::params::RecordingId), responses(
    (status = 200, description = "`{\"id\", \"hold\": null}`"),
    crate::http::openapi::RecordingRefusals,
))]
pub(super) async fn release_recording(
    State(state): State<AppState>,
    caller: Caller,
    Path(RecordingId { id }): Path<RecordingId>,
) -> Result<Response, ApiError> {
    let (row, _, entry) =
        authorize(&state, &caller, &id, Action::SetStatus, "hold_release").await?;
    audit::record(&state.db, &entry)
        .await
        .map_err(crate::http::audit_failed)?;
    retention::release(&state.db, row.id)
        .await
        .map_err(internal)?;
    Ok(Json(hold_json(&state, row.id).await?).into_response())
}

/// The recordings of a call an admin may hold: every one in their scope, or why not.
async fn call_rows(
    state: &AppState,
    caller: &Caller,
    call_id: &str,
    action: &'static str,
) -> Result<(Vec<Recording>, AuditEntry), ApiError> {
    let mut entry = caller.entry(action);
    entry.detail = Some(audit::capped(&format!("call {call_id}"), 200));
    let settings = caller.principal.settings;
    let rows: Vec<Recording> = fetch_call(&state.db, call_id)
        .await?
        .into_iter()
        .filter(|r| {
            decide(&caller.principal, settings, &r.facts(), Action::Read) != Err(Denial::OutOfScope)
        })
        .collect();
    if rows.is_empty() {
        let error = ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such call");
        return Err(caller.refuse(state, entry, error).await);
    }
    entry.recording_id = rows.first().map(|r| r.id);
    if let Some(d) = rows
        .iter()
        .find_map(|r| decide(&caller.principal, settings, &r.facts(), Action::SetStatus).err())
    {
        return Err(caller.refuse(state, entry, denied(d)).await);
    }
    Ok((rows, entry))
}

/// Hold every recording of the call with audio left (admins of every segment; audited).
#[utoipa::path(put, path = "/api/calls/{id}/hold", tag = "calls", params(super::params::CallId),
    request_body = HoldRequest, responses(
    (status = 200, description = "`{\"held\": [ids]}`"),
    (status = 400, description = "no reason, or one too long", body = ErrorBody),
    crate::http::openapi::CallRefusals,
))]
pub(super) async fn hold_call(
    State(state): State<AppState>,
    caller: Caller,
    Path(CallId { id: call_id }): Path<CallId>,
    body: Result<Json<HoldRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let reason = reason_of(body)?;
    let (rows, mut entry) = call_rows(&state, &caller, &call_id, "hold").await?;
    let held: Vec<i64> = rows
        .iter()
        .filter(|r| gone(r).is_none())
        .map(|r| r.id)
        .collect();
    entry.detail = Some(audit::capped(
        &format!("call {call_id}, {} recordings: {reason}", held.len()),
        400,
    ));
    audit::record(&state.db, &entry)
        .await
        .map_err(crate::http::audit_failed)?;
    for id in &held {
        retention::hold(&state.db, *id, &reason, &caller.principal.actor())
            .await
            .map_err(internal)?;
    }
    Ok(Json(serde_json::json!({"call_id": call_id, "held": held})).into_response())
}

/// Release every recording of the call (admins of every segment; audited).
#[utoipa::path(delete, path = "/api/calls/{id}/hold", tag = "calls", params(super::params::CallId), responses(
    (status = 200, description = "`{\"released\": [ids]}`"),
    crate::http::openapi::CallRefusals,
))]
pub(super) async fn release_call(
    State(state): State<AppState>,
    caller: Caller,
    Path(CallId { id: call_id }): Path<CallId>,
) -> Result<Response, ApiError> {
    let (rows, entry) = call_rows(&state, &caller, &call_id, "hold_release").await?;
    audit::record(&state.db, &entry)
        .await
        .map_err(crate::http::audit_failed)?;
    let mut released = Vec::new();
    for row in &rows {
        if retention::release(&state.db, row.id)
            .await
            .map_err(internal)?
        {
            released.push(row.id);
        }
    }
    Ok(Json(serde_json::json!({"call_id": call_id, "released": released})).into_response())
}
