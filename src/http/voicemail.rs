//! Voicemail apart from call recordings: `GET /api/voicemail` (the mailboxes the caller may see,
//! each with its messages, new and heard) and `PUT` / `DELETE /api/recordings/{id}/heard`.
//!
//! A message is a voicemail node's recording, seen under the same rules as any recording; it is
//! heard once someone who may play it asks for its audio link (or marks it heard), and may be
//! marked new again. Every look and mark is audited.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::auth::{denied, Caller};
use super::params::{Params, RecordingId, VoicemailQuery};
use super::recordings::{authorize, viewer, Recording};
use super::{internal, rfc3339, ApiError, AppState, ErrorBody};
use crate::access::audit;
use crate::access::policy::{decide, Action, Denial};
use crate::access::Scope;
use crate::library::search::{self, Filter, Sort};
use crate::library::voicemail::{self, Heard};
use crate::library::{NodeType, RecordingStatus};

fn heard_json(heard: Option<&Heard>) -> serde_json::Value {
    heard.map_or(
        serde_json::Value::Null,
        |h| serde_json::json!({"at": rfc3339(h.at_ms), "by": h.by}),
    )
}

/// The voicemail messages the caller may see, by mailbox, newest first.
///
/// The newest `limit` messages (100 by default, at most 500) of the caller's tenant and projects
/// (a private line's to the people on the call), deleted and purged ones left out, grouped by
/// mailbox; each message as the list shows a recording, with `heard` (`{at, by}`, or null: new)
/// and whether the caller may play it. `more`: older messages were left out.
#[utoipa::path(get, path = "/api/voicemail", tag = "recordings", params(VoicemailQuery), responses(
    (status = 200, description = "`{\"mailboxes\": [{\"mailbox\", \"new\", \"messages\": [...]}], \"more\"}`"),
    crate::http::openapi::SignedIn,
    (status = 403, description = "a token without recordings:read", body = ErrorBody),
))]
pub(super) async fn mailboxes(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Params<VoicemailQuery>, ApiError>,
) -> Result<Response, ApiError> {
    if !caller.principal.has_scope(Scope::RecordingsRead) {
        return Err(caller
            .refuse(
                &state,
                caller.entry("voicemail_list"),
                denied(Denial::MissingScope),
            )
            .await);
    }
    let Params(VoicemailQuery { limit }) = query?;
    let principal = &caller.principal;
    let filter = Filter {
        node_type: Some(NodeType::Voicemail),
        ..Filter::default()
    };
    // Deleted and purged messages are no longer messages: left out below, so the answer may
    // hold fewer than `limit`.
    let page = search::recordings(
        &state.db,
        &viewer(principal),
        &filter,
        Sort::Newest,
        None,
        limit,
    )
    .await
    .map_err(internal)?;
    audit::record(&state.db, &caller.entry("voicemail_list"))
        .await
        .map_err(super::audit_failed)?;
    let rows: Vec<&Recording> = page
        .rows
        .iter()
        .filter(|r| !matches!(r.status, RecordingStatus::Deleted | RecordingStatus::Purged))
        .collect();
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let heard = voicemail::heard_of(&state.db, &ids)
        .await
        .map_err(internal)?;
    let settings = principal.settings;
    let mut boxes: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for row in rows {
        let mut json = row.json(principal, settings);
        json["heard"] = heard_json(heard.get(&row.id));
        json["may_play"] =
            serde_json::json!(decide(principal, settings, &row.facts(), Action::Play).is_ok());
        boxes
            .entry(row.callee.clone().unwrap_or_default())
            .or_default()
            .push(json);
    }
    let mailboxes: Vec<serde_json::Value> = boxes
        .into_iter()
        .map(|(mailbox, messages)| {
            let new = messages.iter().filter(|m| m["heard"].is_null()).count();
            serde_json::json!({"mailbox": mailbox, "new": new, "messages": messages})
        })
        .collect();
    Ok(Json(serde_json::json!({"mailboxes": mailboxes, "more": page.more})).into_response())
}

/// Whether `row` is a voicemail message, or why not as an error.
fn message(row: &Recording) -> Result<(), ApiError> {
    if row.node_type != Some(NodeType::Voicemail) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_voicemail",
            "only a voicemail message is heard or new",
        ));
    }
    Ok(())
}

/// Mark a voicemail message heard (by whoever may play it; audited). Asking for its audio
/// link marks it too.
#[utoipa::path(put, path = "/api/recordings/{id}/heard", tag = "recordings", params(RecordingId), responses(
    (status = 200, description = "`{\"id\", \"heard\": {at, by}}`"),
    crate::http::openapi::RecordingRefusals,
    (status = 409, description = "not a voicemail message", body = ErrorBody),
))]
pub(super) async fn mark_heard(
    State(state): State<AppState>,
    caller: Caller,
    Path(RecordingId { id }): Path<RecordingId>,
) -> Result<Response, ApiError> {
    mark(&state, &caller, &id, true).await
}

/// Mark a voicemail message new again (audited).
#[utoipa::path(delete, path = "/api/recordings/{id}/heard", tag = "recordings", params(RecordingId), responses(
    (status = 200, description = "`{\"id\", \"heard\": null}`"),
    crate::http::openapi::RecordingRefusals,
    (status = 409, description = "not a voicemail message", body = ErrorBody),
))]
pub(super) async fn mark_new(
    State(state): State<AppState>,
    caller: Caller,
    Path(RecordingId { id }): Path<RecordingId>,
) -> Result<Response, ApiError> {
    mark(&state, &caller, &id, false).await
}

/// Marks message `id` heard or new again, for a caller who may play it; audited either way.
async fn mark(
    state: &AppState,
    caller: &Caller,
    id: &str,
    heard: bool,
) -> Result<Response, ApiError> {
    let action = if heard {
        "voicemail_heard"
    } else {
        "voicemail_new"
    };
    let (row, _, entry) = authorize(state, caller, id, Action::Play, action).await?;
    if let Err(error) = message(&row) {
        return Err(caller.refuse(state, entry, error).await);
    }
    if heard {
        let now = state.access.clock.now_ms();
        voicemail::mark_heard(&state.db, row.id, &caller.principal.actor(), now).await
    } else {
        voicemail::mark_new(&state.db, row.id).await
    }
    .map_err(internal)?;
    audit::record(&state.db, &entry)
        .await
        .map_err(super::audit_failed)?;
    // The first listener is kept: what is stored now, which may be someone else's.
    let marks = voicemail::heard_of(&state.db, &[row.id])
        .await
        .map_err(internal)?;
    Ok(
        Json(serde_json::json!({"id": row.id, "heard": heard_json(marks.get(&row.id))}))
            .into_response(),
    )
}

/// A player asked for a voicemail message's audio link: it is heard (by the first who did).
pub(super) async fn heard_on_play(
    state: &AppState,
    caller: &Caller,
    row: &Recording,
) -> Result<(), ApiError> {
    if row.node_type == Some(NodeType::Voicemail) {
        voicemail::mark_heard(
            &state.db,
            row.id,
            &caller.principal.actor(),
            state.access.clock.now_ms(),
        )
        .await
        .map_err(internal)?;
    }
    Ok(())
}
