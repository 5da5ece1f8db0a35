//! A recording's transcript: `GET`, `PUT` and `DELETE /api/recordings/{id}/transcript`.
//!
//! Reading needs the right to play the recording (a transcript says what the audio says);
//! attaching or removing one is for admins, as consent and compliance are. Every attempt is
//! audited like the recording's audio.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::auth::Caller;
use super::params::RecordingId;
use super::recordings::authorize;
use super::{internal, rfc3339, ApiError, AppState, ErrorBody};
use crate::access::audit;
use crate::access::policy::Action;
use crate::library::transcripts::{self, Cue, Source};

fn cue_json(cue: &Cue) -> serde_json::Value {
    serde_json::json!({
        "start": cue.start_ms as f64 / 1000.0,
        "end": cue.end_ms as f64 / 1000.0,
        "speaker": cue.speaker,
        "text": cue.text,
    })
}

/// The recording's transcript (needs the right to play it; audited).
///
/// Cues with start and end (seconds), speaker and text.
#[utoipa::path(get, path = "/api/recordings/{id}/transcript", tag = "recordings", operation_id = "get_transcript", params(RecordingId), responses(
    (status = 200, description = "`{id, source: \"api\" | \"sidecar\" | \"pocketsphinx\" | \"openai\", updated_at, by, cues: [...]}`"),
    crate::http::openapi::RecordingRefusals,
))]
pub(super) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(RecordingId { id }): Path<RecordingId>,
) -> Result<Response, ApiError> {
    let (row, _, entry) = authorize(&state, &caller, &id, Action::Play, "transcript").await?;
    let Some(transcript) = transcripts::load(&state.db, state.library.keys.as_deref(), row.id)
        .await
        .map_err(internal)?
    else {
        // Say where its transcription is, when one was queued.
        let job = crate::transcription::queue::state_of(&state.db, row.id)
            .await
            .map_err(internal)?;
        let message = match job {
            Some((state, _)) if state == "pending" => {
                "this recording has no transcript yet: its transcription is pending".to_string()
            }
            Some((state, Some(reason))) if state == "failed" || state == "skipped" => {
                format!("this recording has no transcript: its transcription {state}: {reason}")
            }
            _ => "this recording has no transcript".to_string(),
        };
        let error = ApiError::new(StatusCode::NOT_FOUND, "no_transcript", message);
        return Err(caller.refuse(&state, entry, error).await);
    };
    audit::record(&state.db, &entry)
        .await
        .map_err(crate::http::audit_failed)?;
    Ok(Json(serde_json::json!({
        "id": row.id,
        "source": transcript.source,
        "updated_at": rfc3339(transcript.updated_at_ms),
        "by": transcript.by,
        "cues": transcript.cues.iter().map(cue_json).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// Attach a transcript, replacing any (admins; audited).
///
/// WebVTT as `text/vtt` (speakers from `<v Name>` tags) or JSON as `application/json`:
/// `[{start, end, speaker, text}]` in seconds (or the same list under `cues`).
#[utoipa::path(put, path = "/api/recordings/{id}/transcript", tag = "recordings", operation_id = "put_transcript", params(RecordingId),
    request_body(content(
        (Vec<crate::library::transcripts::JsonCue> = "application/json"),
        (String = "text/vtt"),
    )),
    responses(
    (status = 200, description = "the stored cues"),
    (status = 400, description = "not a transcript: the reason", body = ErrorBody),
    crate::http::openapi::RecordingRefusals,
    (status = 409, description = "the recording is on legal hold", body = ErrorBody),
))]
pub(super) async fn put(
    State(state): State<AppState>,
    caller: Caller,
    Path(RecordingId { id }): Path<RecordingId>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|rejection| {
        super::body_rejection(&rejection, rejection.status()).unwrap_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                rejection.body_text(),
            )
        })
    })?;
    let (row, _, mut entry) =
        authorize(&state, &caller, &id, Action::SetStatus, "transcript_change").await?;
    if let Some(error) = held(&row) {
        return Err(caller.refuse(&state, entry, error).await);
    }
    let refuse =
        |message: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_transcript", message);
    let Ok(text) = std::str::from_utf8(&body) else {
        return Err(caller
            .refuse(&state, entry, refuse("not UTF-8 text".into()))
            .await);
    };
    let kind = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let parsed = match kind.as_str() {
        "text/vtt" => transcripts::parse_webvtt(text),
        "application/json" => transcripts::parse_json(text),
        other => Err(format!(
            "Content-Type {other:?}: send text/vtt (WebVTT) or application/json"
        )),
    };
    let cues = match parsed {
        Ok(cues) => cues,
        Err(reason) => return Err(caller.refuse(&state, entry, refuse(reason)).await),
    };
    entry.detail = Some(format!("{} cues", cues.len()));
    audit::record(&state.db, &entry)
        .await
        .map_err(crate::http::audit_failed)?;
    transcripts::store(
        &state.db,
        state.library.keys.as_deref(),
        row.id,
        &cues,
        Source::Api,
        None,
        &caller.principal.actor(),
    )
    .await
    .map_err(internal)?;
    Ok(Json(serde_json::json!({
        "id": row.id,
        "source": Source::Api.as_str(),
        "cues": cues.iter().map(cue_json).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// A recording on legal hold keeps its transcript as it is: neither replaced nor removed.
fn held(row: &super::recordings::Recording) -> Option<ApiError> {
    row.hold_reason.as_ref().map(|reason| {
        ApiError::new(
            StatusCode::CONFLICT,
            "on_hold",
            format!(
                "the recording is on legal hold ({reason}): its transcript stays as it is until an admin releases it"
            ),
        )
    })
}

/// Remove the recording's transcript (admins; audited).
#[utoipa::path(delete, path = "/api/recordings/{id}/transcript", tag = "recordings", operation_id = "delete_transcript", params(RecordingId), responses(
    (status = 200, description = "`{id, removed: bool}`"),
    crate::http::openapi::RecordingRefusals,
    (status = 409, description = "the recording is on legal hold", body = ErrorBody),
))]
pub(super) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(RecordingId { id }): Path<RecordingId>,
) -> Result<Response, ApiError> {
    let (row, _, entry) =
        authorize(&state, &caller, &id, Action::SetStatus, "transcript_delete").await?;
    if let Some(error) = held(&row) {
        return Err(caller.refuse(&state, entry, error).await);
    }
    audit::record(&state.db, &entry)
        .await
        .map_err(crate::http::audit_failed)?;
    // A `<name>.vtt` beside the audio goes too: left there, the indexer would import it again
    // seconds later and the transcript would be back.
    let mut removed = false;
    if state.library.holds(&row) {
        let sidecar = std::path::Path::new(&row.path)
            .with_extension("vtt")
            .to_string_lossy()
            .into_owned();
        if let Some(file) = state.library.entry(&sidecar) {
            match tokio::fs::remove_file(&file).await {
                Ok(()) => removed = true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(recording = row.id, error = %e, "transcript file beside the recording not removed");
                    return Err(internal("the transcript file could not be removed"));
                }
            }
        }
    }
    removed |= transcripts::remove(&state.db, row.id)
        .await
        .map_err(internal)?;
    Ok(Json(serde_json::json!({"id": row.id, "removed": removed})).into_response())
}
