//! Calls in progress and live control of their recordings: `GET /api/calls` and
//! `POST /api/calls/{id}/recording/{pause|resume}`.
//!
//! A call is visible as its recordings would be: its tenant and projects, and a private call to
//! its participants only. Pausing (a card number, a diagnosis being read out) is for admins,
//! managers and the agent on the call; it redacts as the deployment says (`redaction_mode`:
//! mute by default, so the file stays aligned with the call), and every pause and resume is
//! audited and stored with the recording. Pausing may be turned off per kind of call
//! (`redaction_inbound_calls`, `redaction_outbound_calls`), per flow or per node (`redaction`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::auth::Caller;
use super::params::CallId;
use super::{rfc3339, ApiError, AppState, ErrorBody};
use crate::access::policy::{in_scope, is_participant};
use crate::access::{audit, Role, Scope};
use crate::flows::call::LiveCall;
use crate::flows::runtime::RedactError;

pub(super) fn visible(caller: &Caller, call: &LiveCall) -> bool {
    in_scope(&caller.principal, &call.tenant, &call.project)
        && (!call.private || is_participant(&caller.principal, &call.participants))
}

/// Whether the caller may pause and resume this call's recording: admins and managers, and the
/// agent on the call (tokens need `flows:write`).
fn may_pause(caller: &Caller, call: &LiveCall) -> bool {
    caller.principal.has_scope(Scope::FlowsWrite)
        && (matches!(caller.principal.role, Role::Admin | Role::Manager)
            || is_participant(&caller.principal, &call.participants))
}

fn call_json(caller: &Caller, call: &LiveCall) -> serde_json::Value {
    serde_json::json!({
        "can_pause": may_pause(caller, call),
        // Pausing turned off for this call (its kind, its flow or the node it is at): the
        // switch that says so. Resuming stays possible.
        "pause_off_by": call.redaction_refused_by,
        "id": call.id,
        "tenant": call.tenant,
        "project": call.project,
        "direction": call.direction,
        "caller": {"name": call.caller_name, "number": call.caller_number},
        "callee": call.callee,
        "node": call.node,
        "private": call.private,
        "started_at": rfc3339(call.started_at_ms),
        "recording": call.recording.as_ref().map(|name| serde_json::json!({
            "name": name,
            "state": call.recording_state,
        })),
    })
}

fn no_such_call() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such call in progress",
    )
}

/// Calls in progress the caller may see, newest first.
///
/// Tenant, projects, and private calls to their participants only; each with its recording's
/// state (recording, muted, paused).
#[utoipa::path(get, path = "/api/calls", tag = "calls", operation_id = "list_calls", responses(
    (status = 200, description = "`{\"calls\": [...]}`"),
    crate::http::openapi::SignedIn,
    (status = 403, description = "a token without recordings:read", body = ErrorBody),
))]
pub(super) async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    if !caller.principal.has_scope(Scope::RecordingsRead) {
        return Err(caller
            .refuse(
                &state,
                caller.entry("calls_list"),
                super::auth::denied(crate::access::policy::Denial::MissingScope),
            )
            .await);
    }
    let calls: Vec<serde_json::Value> = state
        .flows
        .live_calls()
        .iter()
        .filter(|call| visible(&caller, call))
        .map(|call| call_json(&caller, call))
        .collect();
    // What was shown is audited; an empty list showed nothing (the page polls this view).
    if !calls.is_empty() {
        audit::record(&state.db, &caller.entry("calls_list"))
            .await
            .map_err(super::audit_failed)?;
    }
    Ok(Json(serde_json::json!({ "calls": calls })).into_response())
}

/// Redact the call's live recording from now.
///
/// `redaction_mode` decides how: `mute` writes silence, `pause` leaves the audio out. Admins,
/// managers and the agent on the call; audited, stored with the recording.
#[utoipa::path(post, path = "/api/calls/{id}/recording/pause", tag = "calls", params(super::params::CallId), responses(
    (status = 200, description = "the call"),
    (status = 403, description = "not allowed to redact this call (`role_restriction`), or pausing is turned off for it (`redaction_off`)", body = ErrorBody),
    (status = 404, description = "no such call in progress", body = ErrorBody),
    (status = 409, description = "the call is not being recorded", body = ErrorBody),
    (status = 502, description = "Asterisk refused", body = ErrorBody),
))]
pub(super) async fn pause(
    State(state): State<AppState>,
    caller: Caller,
    Path(CallId { id }): Path<CallId>,
) -> Result<Response, ApiError> {
    control(state, caller, id, true).await
}

/// Stop redacting the call's live recording.
#[utoipa::path(post, path = "/api/calls/{id}/recording/resume", tag = "calls", params(super::params::CallId), responses(
    (status = 200, description = "the call"),
    (status = 403, description = "not allowed to redact this call", body = ErrorBody),
    (status = 404, description = "no such call in progress", body = ErrorBody),
    (status = 409, description = "the call is not being recorded", body = ErrorBody),
    (status = 502, description = "Asterisk refused", body = ErrorBody),
))]
pub(super) async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    Path(CallId { id }): Path<CallId>,
) -> Result<Response, ApiError> {
    control(state, caller, id, false).await
}

async fn control(
    state: AppState,
    caller: Caller,
    id: String,
    on: bool,
) -> Result<Response, ApiError> {
    let action = if on {
        "recording_pause"
    } else {
        "recording_resume"
    };
    let mut entry = caller.entry(action);
    entry.detail = Some(format!("call {}", audit::capped(&id, 64)));
    // Out of scope reads exactly like a call that does not exist.
    let Some(call) = state.flows.live_call(&id).filter(|c| visible(&caller, c)) else {
        return Err(caller.refuse(&state, entry, no_such_call()).await);
    };
    if !may_pause(&caller, &call) {
        let error = ApiError::new(
            StatusCode::FORBIDDEN,
            "role_restriction",
            "pausing a recording is for admins, managers and the agent on the call",
        );
        return Err(caller.refuse(&state, entry, error).await);
    }
    if let Some(name) = &call.recording {
        entry.detail = Some(format!("call {id}, recording {name}"));
    }
    match state.flows.redact(&id, on, &caller.principal.actor()).await {
        Ok(call) => {
            audit::record(&state.db, &entry)
                .await
                .map_err(crate::http::audit_failed)?;
            Ok(Json(call_json(&caller, &call)).into_response())
        }
        Err(e) => {
            let (status, code) = match e {
                RedactError::NoCall => (StatusCode::NOT_FOUND, "not_found"),
                RedactError::NotRecording => (StatusCode::CONFLICT, "not_recording"),
                RedactError::Refused => (StatusCode::BAD_GATEWAY, "asterisk_refused"),
                RedactError::NotAllowed(_) => (StatusCode::FORBIDDEN, "redaction_off"),
            };
            let error = ApiError::new(status, code, e.to_string());
            Err(caller.refuse(&state, entry, error).await)
        }
    }
}
