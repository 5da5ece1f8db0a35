//! A call as one recording: `GET /api/calls/{id}` (its segments on the call's timeline),
//! `GET /api/calls/{id}/audio` and `/download` (the segments assembled into one 8 kHz WAV, built
//! on first request and kept), and `GET /api/calls/{id}/peaks` (its waveform).
//!
//! A call shows the segments the caller may see; its audio needs the right to play (or
//! download) every segment that has audio, and each segment served is audited as if it had
//! been played alone. The timeline is Asterisk's clock: each file starts where its
//! `RecordingStarted` said, and a paused stretch keeps the audio after it in its place.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::auth::{denied, Caller};
use super::params::{CallId, ListQuery, Params, PeakPoints, RangeHeader};
use super::recordings::{
    bad, fetch_call, list_entry, playable, redaction_spans, serve, spans_json, AudioBody,
    MediaRequest, Recording, Span,
};
use super::{internal, rfc3339, ApiError, AppState, ErrorBody};
use crate::access::audit;
use crate::access::policy::{decide, Action, Denial};
use crate::audio::{wav, Encoding};
use crate::library::search;
use crate::playback::assemble::{Segment, TIMELINE_RATE};
use crate::playback::call_audio::{timeline_key, TimelinePart};
use crate::playback::renderings::RenderError;
use crate::playback::serve::WavStream;
use base64::Engine;

mod links;

pub(super) use links::*;

const SAMPLES_PER_MS: u64 = TIMELINE_RATE as u64 / 1000;

/// The segments of a call in the caller's tenant and projects, oldest first; None when there
/// are none (the call reads as one that does not exist).
async fn visible_segments(
    state: &AppState,
    caller: &Caller,
    call_id: &str,
) -> Result<Option<Vec<Recording>>, ApiError> {
    let rows = fetch_call(&state.db, call_id).await?;
    let settings = caller.principal.settings;
    let visible: Vec<Recording> = rows
        .into_iter()
        .filter(|r| {
            decide(&caller.principal, settings, &r.facts(), Action::Read) != Err(Denial::OutOfScope)
        })
        .collect();
    Ok((!visible.is_empty()).then_some(visible))
}

/// Why the caller may not read the call (a private call they were not on, a token without
/// `recordings:read`), as a recording would say it.
fn read_denial(caller: &Caller, segments: &[Recording]) -> Option<Denial> {
    let settings = caller.principal.settings;
    segments
        .iter()
        .find_map(|s| decide(&caller.principal, settings, &s.facts(), Action::Read).err())
}

fn no_such_call() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such call")
}

/// Where the call's timeline starts: its first segment with audio (its first segment when
/// none has any).
fn timeline_start(segments: &[Recording]) -> i64 {
    let with_audio = segments
        .iter()
        .filter(|s| s.status == crate::library::RecordingStatus::Ready);
    with_audio
        .map(Recording::timeline_ms)
        .min()
        .or_else(|| segments.iter().map(Recording::timeline_ms).min())
        .unwrap_or(0)
}

/// Each segment's redacted stretches, by recording name, in file order (one query each).
async fn spans_of(
    state: &AppState,
    segments: &[Recording],
) -> Result<HashMap<String, Vec<Span>>, ApiError> {
    let mut out = HashMap::new();
    for segment in segments {
        let spans = redaction_spans(&state.db, &segment.name).await?;
        out.insert(segment.name.clone(), spans);
    }
    Ok(out)
}

/// The time of the call a segment's pauses left out of its file.
fn paused_ms(spans: &HashMap<String, Vec<Span>>, name: &str) -> i64 {
    spans
        .get(name)
        .map_or(0, |s| s.iter().map(Span::gap_ms).sum())
}

/// A call and its segments on the call's timeline.
///
/// The timeline is Asterisk's clock: each segment has `offset_seconds`, `in_call_audio` and
/// `paused_seconds`; the answer says whether the asking user may play and download the whole
/// call.
#[utoipa::path(get, path = "/api/calls/{id}", tag = "calls", params(CallId), responses(
    (status = 200, description = "the call"),
    crate::http::openapi::SignedIn,
    (status = 404, description = "no such call the caller may see", body = ErrorBody),
))]
pub(super) async fn get_call(
    State(state): State<AppState>,
    caller: Caller,
    Path(CallId { id: call_id }): Path<CallId>,
) -> Result<Response, ApiError> {
    let mut entry = caller.entry("call_metadata");
    entry.detail = Some(audit::capped(&format!("call {call_id}"), 200));
    let Some(segments) = visible_segments(&state, &caller, &call_id).await? else {
        return Err(caller.refuse(&state, entry, no_such_call()).await);
    };
    entry.recording_id = segments.first().map(|s| s.id);
    if let Some(d) = read_denial(&caller, &segments) {
        return Err(caller.refuse(&state, entry, denied(d)).await);
    }
    audit::record(&state.db, &entry)
        .await
        .map_err(crate::http::audit_failed)?;
    let start = timeline_start(&segments);
    let spans = spans_of(&state, &segments).await?;
    let in_progress = call_in_progress(&state, &call_id, &segments);
    let settings = caller.principal.settings;
    let first = &segments[0];
    let end_ms = segments
        .iter()
        .filter(|s| s.status == crate::library::RecordingStatus::Ready)
        .map(|s| s.timeline_ms() - start + s.duration_ms + paused_ms(&spans, &s.name))
        .max()
        .unwrap_or(0);
    let audio_denial = segments
        .iter()
        .filter(|s| s.status == crate::library::RecordingStatus::Ready)
        .find_map(|s| decide(&caller.principal, settings, &s.facts(), Action::Play).err());
    let download_denial = segments
        .iter()
        .filter(|s| s.status == crate::library::RecordingStatus::Ready)
        .find_map(|s| decide(&caller.principal, settings, &s.facts(), Action::Download).err());
    let has_audio = segments
        .iter()
        .any(|s| s.status == crate::library::RecordingStatus::Ready);
    let verdict = |denial: Option<Denial>| match (has_audio, denial) {
        (false, _) => serde_json::json!({"allowed": false, "reason": "no_audio"}),
        (true, Some(d)) => serde_json::json!({"allowed": false, "reason": d.reason()}),
        (true, None) if in_progress => {
            serde_json::json!({"allowed": false, "reason": "in_progress"})
        }
        (true, None) => serde_json::json!({"allowed": true}),
    };
    // Who talked how long, over the whole call: where all of its audio may be played.
    let insights = if has_audio && audio_denial.is_none() {
        call_insights(&state, &segments, start, &spans).await?
    } else {
        None
    };
    let base = format!("/api/calls/{}", urlencode(&call_id));
    let segments_json: Vec<serde_json::Value> = segments
        .iter()
        .map(|s| {
            let mut json = s.json(&caller.principal, settings);
            json["offset_seconds"] = serde_json::json!((s.timeline_ms() - start) as f64 / 1000.0);
            json["in_call_audio"] =
                serde_json::json!(s.status == crate::library::RecordingStatus::Ready);
            json["paused_seconds"] = serde_json::json!(paused_ms(&spans, &s.name) as f64 / 1000.0);
            // Its redacted stretches, in its file (the page places them on the call).
            json["redactions"] = spans_json(spans.get(&s.name).map_or(&[], Vec::as_slice));
            json
        })
        .collect();
    Ok(Json(serde_json::json!({
        "call_id": call_id,
        "tenant": first.tenant,
        "project": first.project,
        "direction": first.direction.map(crate::library::Direction::as_str),
        "caller": {"name": first.caller_name, "number": first.caller_number},
        "flow": first.flow,
        "consent": first.consent.as_str(),
        "started_at": rfc3339(start),
        "duration_seconds": end_ms as f64 / 1000.0,
        "in_progress": in_progress,
        // What the deployment offers first (`recording_separation`): the call or its segments.
        "separation": state.flows.store().current().settings.recording_separation.as_str(),
        "segment_count": segments.len(),
        "segments": segments_json,
        "access": {"play": verdict(audio_denial), "download": verdict(download_denial)},
        "insights": insights.as_ref().map(crate::library::insights::json),
        "links": {
            "audio": format!("{base}/audio"),
            "download": format!("{base}/download"),
            "peaks": format!("{base}/peaks"),
            "transcript": format!("{base}/transcript"),
        },
    }))
    .into_response())
}

/// The talk-time figures of a call: its segments' with audio, each timeline placed on the
/// call's (after the segment's offset and the pauses before each moment, as its transcript's
/// lines are). None when no segment has figures yet.
async fn call_insights(
    state: &AppState,
    segments: &[Recording],
    start: i64,
    spans: &HashMap<String, Vec<Span>>,
) -> Result<Option<crate::library::insights::Insights>, ApiError> {
    let mut found = Vec::new();
    for segment in segments
        .iter()
        .filter(|s| s.status == crate::library::RecordingStatus::Ready)
    {
        let Some(mut figures) =
            crate::library::insights::load(&state.db, state.library.keys.as_deref(), segment.id)
                .await
                .map_err(internal)?
        else {
            continue;
        };
        let gaps = spans.get(&segment.name).map_or(&[][..], Vec::as_slice);
        let paused_before = |ms: u64| -> u64 {
            let ms = i64::try_from(ms).unwrap_or(i64::MAX);
            let paused: i64 = gaps
                .iter()
                .filter(|g| g.from_offset_ms <= ms)
                .map(Span::gap_ms)
                .sum();
            u64::try_from(paused).unwrap_or(0)
        };
        for voice in figures.timeline.iter_mut().flat_map(|t| t.values_mut()) {
            for [from, to] in voice.iter_mut() {
                let shift = paused_before(*from);
                *from += shift;
                *to += shift;
            }
        }
        figures.talk.length_ms += paused_before(u64::MAX);
        let offset = u64::try_from(segment.timeline_ms() - start).unwrap_or(0);
        found.push((offset, figures));
    }
    Ok(crate::library::insights::of_call(&found))
}

/// A call id in a URL path (ids are Asterisk's `1764518400.12`; anything else is escaped).
fn urlencode(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes()).collect()
}

/// Still going: a segment is being recorded, or the call is live in this process.
fn call_in_progress(state: &AppState, call_id: &str, segments: &[Recording]) -> bool {
    segments
        .iter()
        .any(|s| s.status == crate::library::RecordingStatus::Recording)
        || state.flows.live_calls().iter().any(|c| c.id == call_id)
}

fn in_progress() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "in_progress",
        "the call is still in progress; its recording is assembled when it ends",
    )
    .retry_after(5)
}

fn live_and_visible(state: &AppState, caller: &Caller, call_id: &str) -> bool {
    state
        .flows
        .live_calls()
        .iter()
        .any(|c| c.id == call_id && super::live::visible(caller, c))
}

/// A call the caller may have for an action: its segments with audio, each placed on the
/// call's timeline, and the timeline's key. Nothing is audited as served yet.
struct CallPlan {
    segments: Vec<Recording>,
    pieces: Vec<Segment>,
    key: String,
}

/// The call the caller may have for `action`, or why not (the refusal audited as
/// `audit_action`).
async fn plan(
    state: &AppState,
    caller: &Caller,
    call_id: &str,
    action: Action,
    audit_action: &'static str,
) -> Result<CallPlan, ApiError> {
    let mut entry = caller.entry(audit_action);
    entry.detail = Some(audit::capped(&format!("call {call_id}"), 200));
    let Some(segments) = visible_segments(state, caller, call_id).await? else {
        // A call whose first segment is not in the library yet.
        let error = if live_and_visible(state, caller, call_id) {
            in_progress()
        } else {
            no_such_call()
        };
        return Err(caller.refuse(state, entry, error).await);
    };
    entry.recording_id = segments.first().map(|s| s.id);
    let settings = caller.principal.settings;
    if let Some(d) = read_denial(caller, &segments) {
        return Err(caller.refuse(state, entry, denied(d)).await);
    }
    if call_in_progress(state, call_id, &segments) {
        return Err(caller.refuse(state, entry, in_progress()).await);
    }
    let with_audio: Vec<Recording> = segments
        .into_iter()
        .filter(|s| s.status == crate::library::RecordingStatus::Ready)
        .collect();
    if with_audio.is_empty() {
        let error = ApiError::new(
            StatusCode::NOT_FOUND,
            "no_audio",
            "no audio: no segment of this call was recorded",
        );
        return Err(caller.refuse(state, entry, error).await);
    }
    for segment in &with_audio {
        if let Err(d) = decide(&caller.principal, settings, &segment.facts(), action) {
            entry.recording_id = Some(segment.id);
            return Err(caller.refuse(state, entry, denied(d)).await);
        }
    }
    let start = timeline_start(&with_audio);
    let spans = spans_of(state, &with_audio).await?;
    let mut parts = Vec::new();
    let mut pieces = Vec::new();
    for segment in &with_audio {
        let stream = match playable(state, segment).await {
            Ok(stream) => stream,
            Err(e) => {
                entry.recording_id = Some(segment.id);
                return Err(caller.refuse(state, entry, e).await);
            }
        };
        let offset = u64::try_from(segment.timeline_ms() - start).unwrap_or(0) * SAMPLES_PER_MS;
        let gaps: Vec<(u64, u64)> = spans
            .get(&segment.name)
            .into_iter()
            .flatten()
            .filter(|span| span.gap_ms() > 0)
            .map(|span| {
                let at = u64::try_from(span.from_offset_ms).unwrap_or(0);
                let len = u64::try_from(span.gap_ms()).unwrap_or(0);
                (at * SAMPLES_PER_MS, len * SAMPLES_PER_MS)
            })
            .collect();
        pieces.push(Segment::new(stream, offset, &gaps));
        parts.push(TimelinePart {
            sha256: segment.sha256.clone().unwrap_or_default(),
            offset,
            gaps,
        });
    }
    Ok(CallPlan {
        segments: with_audio,
        pieces,
        key: timeline_key(&parts),
    })
}

/// The call assembled from its plan's pieces, from this instance's cache or built now.
async fn build(
    state: &AppState,
    call_id: &str,
    key: &str,
    pieces: Vec<Segment>,
) -> Result<crate::playback::call_audio::CallFile, ApiError> {
    state
        .library
        .call_audio
        .get(call_id, key, pieces)
        .await
        .map_err(|e| match e {
            RenderError::Audio(reason) => ApiError::new(
                StatusCode::NOT_FOUND,
                "no_audio",
                format!("no audio: {reason}"),
            ),
            RenderError::NoSpace(reason) => ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "cache_full",
                format!("the audio cannot be prepared now: {reason}"),
            )
            .retry_after(60),
            RenderError::Job(_) => internal(e),
        })
}

/// Audits each segment served as if it had been played (or downloaded) alone. With `spend`,
/// a single-use link's nonce is spent in the transaction of the first event (refused when it
/// was spent before).
async fn audit_segments(
    state: &AppState,
    caller: &Caller,
    call_id: &str,
    (audit_action, detail): (&'static str, Option<String>),
    segments: &[Recording],
    spend: Option<&crate::access::links::Grant>,
) -> Result<(), ApiError> {
    for (i, segment) in segments.iter().enumerate() {
        let mut each = caller.entry(audit_action);
        each.recording_id = Some(segment.id);
        let text = [Some(format!("call {call_id}")), detail.clone()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ");
        each.detail = Some(audit::capped(&text, 400));
        match spend.filter(|_| i == 0) {
            Some(grant) => {
                let mut tx = audit::AuditTx::begin(&state.db).await.map_err(internal)?;
                let spent = crate::access::links::spend(
                    tx.conn(),
                    &grant.nonce,
                    grant.expires.saturating_mul(1000),
                    state.access.clock.now_ms(),
                )
                .await
                .map_err(internal)?;
                if !spent {
                    drop(tx);
                    let used = crate::access::links::LinkError::Used;
                    return Err(caller
                        .refuse(state, each, super::recordings::link_refused(used))
                        .await);
                }
                tx.commit(&each).await.map_err(internal)?;
            }
            None => {
                audit::record(&state.db, &each).await.map_err(internal)?;
            }
        }
    }
    Ok(())
}

/// The assembled call the caller may have for `action`, or why not (audited).
async fn assembled(
    state: &AppState,
    caller: &Caller,
    call_id: &str,
    action: Action,
    audit_action: &'static str,
    detail: Option<String>,
) -> Result<
    (
        crate::playback::call_audio::CallFile,
        String,
        Vec<Recording>,
    ),
    ApiError,
> {
    let CallPlan {
        segments,
        pieces,
        key,
    } = plan(state, caller, call_id, action, audit_action).await?;
    let file = build(state, call_id, &key, pieces).await?;
    audit_segments(
        state,
        caller,
        call_id,
        (audit_action, detail),
        &segments,
        None,
    )
    .await?;
    Ok((file, key, segments))
}

fn call_stream(file: &crate::playback::call_audio::CallFile) -> WavStream {
    WavStream {
        source: file.source(),
        encoding: Encoding::Pcm16,
        sample_rate: TIMELINE_RATE,
        data_offset: wav::HEADER_LEN,
        data_len: file.samples * 2,
    }
}

/// The call as one 8 kHz mono PCM WAV.
///
/// Segments at their offsets, silence between, overlaps mixed with clipping; built on first
/// request and cached; exact ranges.
#[utoipa::path(get, path = "/api/calls/{id}/audio", tag = "calls", operation_id = "call_audio",
    params(CallId, RangeHeader), responses(
    (status = 200, description = "the call", content_type = "audio/wav"),
    (status = 206, description = "the requested range", content_type = "audio/wav"),
    crate::http::openapi::CallRefusals,
    (status = 409, description = "a segment has no audio (yet)", body = ErrorBody),
    (status = 416, description = "range not satisfiable", body = ErrorBody),
))]
pub(super) async fn audio(
    State(state): State<AppState>,
    caller: Caller,
    Path(CallId { id: call_id }): Path<CallId>,
    range: RangeHeader,
) -> Result<Response, ApiError> {
    serve_call(&state, &caller, &call_id, &range, false).await
}

/// The assembled call as an attachment (needs the right to download every segment), to a
/// signed-in caller or through a link from `download-url`.
#[utoipa::path(get, path = "/api/calls/{id}/download", tag = "calls", operation_id = "call_download",
    params(CallId, RangeHeader), responses(
    (status = 200, description = "the call, `Content-Disposition: attachment`", content_type = "audio/wav"),
    (status = 206, description = "the requested range", content_type = "audio/wav"),
    crate::http::openapi::CallRefusals,
    (status = 409, description = "a segment has no audio (yet)", body = ErrorBody),
))]
pub(super) async fn download(
    State(state): State<AppState>,
    mut request: MediaRequest,
) -> Result<Response, ApiError> {
    if crate::access::links::is_link(&request.query) {
        return links::serve_link(&state, request).await;
    }
    let Some(caller) = request.caller.take() else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "sign in, send an API token, or use a signed link",
        ));
    };
    serve_call(&state, &caller, &request.id, &request.range, true).await
}

/// The assembled call inline, or as an attachment (the right to download every segment).
async fn serve_call(
    state: &AppState,
    caller: &Caller,
    call_id: &str,
    range: &RangeHeader,
    attachment: bool,
) -> Result<Response, ApiError> {
    let (action, audit_action) = if attachment {
        (Action::Download, "download")
    } else {
        (Action::Play, "play")
    };
    let (file, key, segments) =
        assembled(state, caller, call_id, action, audit_action, range.detail()).await?;
    serve(
        AudioBody::Wav(call_stream(&file)),
        format!("\"call-{key}\""),
        range,
        attachment.then(|| download_name(&segments)),
    )
}

/// `call-<date>-<caller digits>.wav`, from metadata only.
fn download_name(segments: &[Recording]) -> String {
    let first = &segments[0];
    let when = chrono::DateTime::from_timestamp_millis(timeline_start(segments))
        .map(|t| t.format("%Y%m%d-%H%M%S").to_string())
        .unwrap_or_else(|| "call".into());
    let caller = super::recordings::caller_digits(first);
    if caller.is_empty() {
        format!("call-{when}.wav")
    } else {
        format!("call-{when}-{caller}.wav")
    }
}

/// Min/max peaks of the assembled call, for a waveform.
#[utoipa::path(get, path = "/api/calls/{id}/peaks", tag = "calls", operation_id = "call_peaks",
    params(CallId, PeakPoints), responses(
    (status = 200, description = "`{\"peaks\": [[min, max], ...]}`"),
    (status = 400, description = "a number of points not offered", body = ErrorBody),
    crate::http::openapi::CallRefusals,
    (status = 409, description = "a segment has no audio (yet)", body = ErrorBody),
))]
pub(super) async fn peaks(
    State(state): State<AppState>,
    caller: Caller,
    Path(CallId { id: call_id }): Path<CallId>,
    Params(PeakPoints { points }): Params<PeakPoints>,
) -> Result<Response, ApiError> {
    let (file, key, segments) =
        assembled(&state, &caller, &call_id, Action::Play, "peaks", None).await?;
    // Kept with the renderings of the call's first segment, under the timeline's key.
    let peaks = state
        .library
        .renderings
        .peaks(segments[0].id, &key, points, call_stream(&file))
        .await
        .map_err(internal)?;
    Ok(Json(serde_json::json!({
        "call_id": call_id,
        "points": points,
        "duration_seconds": file.samples as f64 / f64::from(TIMELINE_RATE),
        "peaks": peaks.iter().map(|[lo, hi]| [*lo, *hi]).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// What was said in the whole call: each segment's transcript placed on the call's timeline.
///
/// Needs the right to play every segment with audio (a transcript says what the audio says);
/// each segment read is audited as a `transcript` of that recording. Lines are in time order,
/// at the call's offsets (a paused stretch keeps what follows in its place, as in the audio),
/// each with its segment's recording id.
#[utoipa::path(get, path = "/api/calls/{id}/transcript", tag = "calls", operation_id = "call_transcript",
    params(CallId), responses(
    (status = 200, description = "`{call_id, cues: [{start, end, speaker, text, recording_id}], segments_transcribed, segments}`"),
    crate::http::openapi::CallRefusals,
    (status = 409, description = "the call is still in progress", body = ErrorBody),
))]
pub(super) async fn transcript(
    State(state): State<AppState>,
    caller: Caller,
    Path(CallId { id: call_id }): Path<CallId>,
) -> Result<Response, ApiError> {
    // The same gate as the call's audio: a transcript says what the audio says.
    let CallPlan {
        segments: with_audio,
        ..
    } = plan(&state, &caller, &call_id, Action::Play, "transcript").await?;
    let start = timeline_start(&with_audio);
    let spans = spans_of(&state, &with_audio).await?;
    let mut cues = Vec::new();
    let mut transcribed = 0;
    for segment in &with_audio {
        let Some(found) =
            crate::library::transcripts::load(&state.db, state.library.keys.as_deref(), segment.id)
                .await
                .map_err(internal)?
        else {
            continue;
        };
        transcribed += 1;
        let offset = segment.timeline_ms() - start;
        let gaps = spans.get(&segment.name).map_or(&[][..], Vec::as_slice);
        for cue in &found.cues {
            let at = |ms: u64| {
                let ms = i64::try_from(ms).unwrap_or(i64::MAX);
                // The pauses before this moment of the file are time of the call it lacks.
                let paused: i64 = gaps
                    .iter()
                    .filter(|g| g.from_offset_ms <= ms)
                    .map(Span::gap_ms)
                    .sum();
                (offset + ms + paused) as f64 / 1000.0
            };
            cues.push((
                at(cue.start_ms),
                serde_json::json!({
                    "start": at(cue.start_ms),
                    "end": at(cue.end_ms),
                    "speaker": cue.speaker,
                    "text": cue.text,
                    "recording_id": segment.id,
                }),
            ));
        }
        let mut each = caller.entry("transcript");
        each.recording_id = Some(segment.id);
        each.detail = Some(audit::capped(&format!("call {call_id}"), 200));
        audit::record(&state.db, &each).await.map_err(internal)?;
    }
    cues.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(Json(serde_json::json!({
        "call_id": call_id,
        "segments": with_audio.len(),
        "segments_transcribed": transcribed,
        "cues": cues.into_iter().map(|(_, cue)| cue).collect::<Vec<_>>(),
    }))
    .into_response())
}

fn encode_call_cursor(newest: i64, key: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("c:{newest}:{key}"))
}

fn decode_call_cursor(cursor: &str) -> Result<(i64, String), ApiError> {
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| bad("cursor", "not a cursor from this API"))?;
    let mut parts = text.splitn(3, ':');
    match (
        parts.next(),
        parts.next().map(str::parse::<i64>),
        parts.next(),
    ) {
        (Some("c"), Some(Ok(newest)), Some(key)) => Ok((newest, key.to_string())),
        (Some(_), Some(Ok(_)), Some(_)) => Err(bad("cursor", "belongs to the ungrouped list")),
        _ => Err(bad("cursor", "not a cursor from this API")),
    }
}

/// `GET /api/recordings?group=call`: one row per call (a file no call made is its own row),
/// newest call first (by its newest recording), with its segments matching the filters, their
/// count and total duration. Keyset on (newest recording, call); each page groups the
/// filtered rows of the caller's scope, so its cost grows with them (narrow it with `from`).
pub(super) async fn list_grouped(
    state: &AppState,
    caller: &Caller,
    query: &ListQuery,
    viewer: &search::Viewer<'_>,
    filter: &search::Filter,
) -> Result<Response, ApiError> {
    let limit = query.limit;
    let after = query
        .cursor
        .as_deref()
        .map(decode_call_cursor)
        .transpose()?;
    audit::record(&state.db, &list_entry(caller, &query.asked))
        .await
        .map_err(super::audit_failed)?;
    let (page, rows) = search::calls(&state.db, viewer, filter, after, limit)
        .await
        .map_err(internal)?;
    let groups = page.rows;
    let next_cursor = match (page.more, groups.last()) {
        (true, Some(last)) => Some(encode_call_cursor(last.newest_ms, &last.key)),
        _ => None,
    };
    let settings = caller.principal.settings;
    // A search of what was said shows the segments the caller may play, each with where.
    let mut said = HashMap::new();
    if filter.reads_audio() {
        let playable: Vec<i64> = rows
            .iter()
            .filter(|r| decide(&caller.principal, settings, &r.facts(), Action::Play).is_ok())
            .map(|r| r.id)
            .collect();
        let mut found = if filter.said.is_empty() {
            HashMap::new()
        } else {
            super::recordings::said_in_each(state, playable.iter().copied(), &filter.said_words())
                .await?
        };
        for id in playable {
            said.insert(id, found.remove(&id));
        }
    }
    let shown = |r: &Recording| !filter.reads_audio() || said.contains_key(&r.id);
    let calls: Vec<serde_json::Value> = groups
        .iter()
        .filter(|group| {
            rows.iter()
                .any(|r| search::call_key(r) == group.key && shown(r))
        })
        .map(|group| {
            let segments: Vec<&Recording> = rows
                .iter()
                .filter(|r| search::call_key(r) == group.key && shown(r))
                .collect();
            let first = segments.first();
            let call_id = first.and_then(|r| r.call_id.clone());
            serde_json::json!({
                "call_id": call_id,
                "started_at": first.map(|r| rfc3339(r.started_at_ms)),
                "segment_count": group.segments,
                "duration_seconds": group.duration_ms as f64 / 1000.0,
                "caller": first.map(|r| serde_json::json!({"name": r.caller_name, "number": r.caller_number})),
                "direction": first.and_then(|r| r.direction).map(crate::library::Direction::as_str),
                "flow": first.and_then(|r| r.flow.clone()),
                "tenant": first.map(|r| r.tenant.clone()),
                "project": first.map(|r| r.project.clone()),
                "consent": first.map(|r| r.consent.as_str()),
                "segments": segments.iter().map(|r| {
                    let mut json = r.json(&caller.principal, settings);
                    if let Some(Some(found)) = said.get(&r.id) {
                        json["match"] = serde_json::json!(found);
                    }
                    json
                }).collect::<Vec<_>>(),
                "links": call_id.map(|id| serde_json::json!({"call": format!("/api/calls/{}", urlencode(&id))})),
            })
        })
        .collect();
    Ok(Json(serde_json::json!({"calls": calls, "next_cursor": next_cursor})).into_response())
}
