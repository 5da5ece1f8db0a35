//! Whole-call download links: `GET` (or `POST`) `/api/calls/{id}/download-url`.
//!
//! The first link assembles the call as `/download` does. With an archive, that WAV is stored
//! in the bucket under the tenant's prefix (sealed when encryption is on) and every later link
//! reuses it, from any instance, until a segment changes; the link is then a presigned bucket
//! URL where the operator allows them (`ARCHIVE_PRESIGNED_LINKS`), else the service's own
//! single-use link, served from the stored copy. Without a bucket, the service's own link,
//! served from this instance's cache. Rights, caps, rate and audit are the recording link's:
//! the caller must be allowed to download every segment, and each segment is audited.

use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{audit_segments, build, plan, urlencode, CallPlan};
use crate::access::links::{self, Grant, LinkAction, LinkTarget};
use crate::access::policy::Action;
use crate::access::random_secret;
use crate::archive::calls::{self as stored_calls, CallObject, CallVersion};
use crate::archive::{ObjectBytes, StoredAudio};
use crate::audio::{wav, Encoding};
use crate::http::auth::Caller;
use crate::http::params::{CallId, LinkLifetime, Params};
use crate::http::recordings::{link_caller_for, serve, AudioBody, MediaRequest};
use crate::http::{internal, rfc3339, ApiError, AppState, ErrorBody};
use crate::playback::assemble::TIMELINE_RATE;
use crate::playback::serve::WavStream;

/// A download link to the whole call, usable without credentials until it expires.
///
/// The call is assembled once; with an archive it is kept in the bucket and reused until a
/// segment changes. Single-use and served by this service, or (`ARCHIVE_PRESIGNED_LINKS`) a
/// presigned bucket URL reusable until it expires.
#[utoipa::path(post, path = "/api/calls/{id}/download-url", tag = "calls",
    operation_id = "call_download_url",
    params(CallId, LinkLifetime),
    responses(
    (status = 201, description = "`{call_id, url, expires_at, expires_in, single_use, presigned, stored}`"),
    (status = 400, description = "a bad expires_in", body = ErrorBody),
    crate::http::openapi::CallRefusals,
    (status = 409, description = "the call is still in progress", body = ErrorBody),
    (status = 429, description = "too many links asked for", body = ErrorBody),
))]
pub(in crate::http) async fn download_url(
    State(state): State<AppState>,
    caller: Caller,
    Path(CallId { id }): Path<CallId>,
    Params(lifetime): Params<LinkLifetime>,
) -> Result<Response, ApiError> {
    create_link(&state, &caller, &id, lifetime).await
}

/// A download link to the whole call, as `POST` makes it (`GET` as Gravity Rail spells it).
#[utoipa::path(get, path = "/api/calls/{id}/download-url", tag = "calls",
    operation_id = "call_download_url_get",
    params(CallId, LinkLifetime),
    responses(
    (status = 201, description = "`{call_id, url, expires_at, expires_in, single_use, presigned, stored}`"),
    (status = 400, description = "a bad expires_in", body = ErrorBody),
    crate::http::openapi::CallRefusals,
    (status = 409, description = "the call is still in progress", body = ErrorBody),
    (status = 429, description = "too many links asked for", body = ErrorBody),
))]
pub(in crate::http) async fn download_url_get(
    State(state): State<AppState>,
    caller: Caller,
    Path(CallId { id }): Path<CallId>,
    Params(lifetime): Params<LinkLifetime>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    // A state change however it is spelt (audited, counted against the caller's quota): a
    // cookie session sends its CSRF token here as for POST.
    caller
        .require_csrf(
            &state,
            &headers,
            format!("GET /api/calls/{}/download-url", urlencode(&id)),
        )
        .await?;
    create_link(&state, &caller, &id, lifetime).await
}

async fn create_link(
    state: &AppState,
    caller: &Caller,
    call_id: &str,
    LinkLifetime { expires_in }: LinkLifetime,
) -> Result<Response, ApiError> {
    let access = &state.access;
    let lifetime = expires_in.unwrap_or(3600).min(access.link_max_seconds);
    let principal = &caller.principal;
    if let Err(wait) = access.limiter.take(
        &format!("grant:{}", principal.link_subject()),
        Instant::now(),
    ) {
        let mut entry = caller.entry("link_create");
        entry.detail = Some(crate::access::audit::capped(
            &format!("call {call_id}"),
            200,
        ));
        return Err(caller
            .refuse(state, entry, crate::http::too_many(wait))
            .await);
    }
    let call = plan(state, caller, call_id, Action::Download, "link_create").await?;
    let segments = call.segments.clone();
    let stored = match &state.library.archive {
        Some(_) => kept_in_bucket(state, call_id, call).await?,
        None => None,
    };
    let issued_ms = access.clock.now_ms();
    let expires = issued_ms.div_euclid(1000) + lifetime;
    let presigned = match (&state.library.archive, &stored) {
        (Some(archive), Some(object)) if archive.settings.presigned_links => {
            let ttl = std::time::Duration::from_secs(u64::try_from(lifetime).unwrap_or(1));
            Some(
                archive
                    .presigned_get(&object.object_key, ttl)
                    .await
                    .map_err(|e| {
                        ApiError::new(
                            StatusCode::BAD_GATEWAY,
                            "archive_unavailable",
                            format!("cannot sign a bucket link: {e}"),
                        )
                    })?,
            )
        }
        _ => None,
    };
    let detail = match (&presigned, &stored) {
        (Some(_), _) => format!("presigned bucket link for {lifetime} s"),
        (None, Some(_)) => format!("download link for {lifetime} s, from the bucket's copy"),
        (None, None) => format!("download link for {lifetime} s"),
    };
    audit_segments(
        state,
        caller,
        call_id,
        ("link_create", Some(detail)),
        &segments,
        None,
    )
    .await?;
    let url = match &presigned {
        Some(url) => url.clone(),
        None => {
            let grant = Grant {
                target: LinkTarget::Call(call_id.to_string()),
                action: LinkAction::Download,
                subject: principal.link_subject(),
                issued_ms,
                expires,
                nonce: random_secret()[..32].to_string(),
            };
            format!(
                "/api/calls/{}/download?{}",
                urlencode(call_id),
                links::sign(&access.keys, &grant)
            )
        }
    };
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "call_id": call_id,
            "url": url,
            "expires_at": rfc3339(expires * 1000),
            "expires_in": lifetime,
            "single_use": presigned.is_none(),
            "presigned": presigned.is_some(),
            "stored": stored.is_some(),
        })),
    )
        .into_response())
}

/// The call's copy in the bucket for this timeline: found, or assembled and stored now. None
/// when the bucket cannot take it now (logged; the service's own link serves the call).
async fn kept_in_bucket(
    state: &AppState,
    call_id: &str,
    call: CallPlan,
) -> Result<Option<CallObject>, ApiError> {
    let Some(archive) = state.library.archive.clone() else {
        return Ok(None);
    };
    if let Some(found) = usable(state, call_id, &call.key).await? {
        return Ok(Some(found));
    }
    let CallPlan {
        segments,
        pieces,
        key,
    } = call;
    let file = build(state, call_id, &key, pieces).await?;
    let keys = state.library.keys.clone();
    // A sealed copy under the deployment's key, or the cache's plaintext file itself.
    let (upload, scratch) = match &keys {
        Some(keys) => {
            let scratch = state
                .library
                .call_audio
                .dir()
                .join(format!(".bucket-{key}.part-{:08x}", fastrand::u32(..)));
            let (keys, copy, to) = (keys.clone(), file.clone(), scratch.clone());
            let sealed = tokio::task::spawn_blocking(move || copy.seal_copy(&keys, &to))
                .await
                .map_err(internal)?;
            match sealed {
                Ok(size) => ((scratch.clone(), size), Some(scratch)),
                Err(e) => {
                    let _ = std::fs::remove_file(&scratch);
                    tracing::warn!(call = %call_id, error = %e, "the call's copy for the bucket was not sealed; the service serves its link");
                    return Ok(None);
                }
            }
        }
        None => ((file.path.clone(), file.len), None),
    };
    let tenant = segments[0].tenant.clone();
    let name = super::download_name(&segments);
    let version = CallVersion {
        call_id,
        tenant: &tenant,
        timeline_key: &key,
        samples: file.samples,
        segments: segments
            .iter()
            .map(|s| (s.id, s.sha256.clone().unwrap_or_default()))
            .collect(),
        download_name: &name,
    };
    let stored = stored_calls::store(
        &state.db,
        &archive,
        &version,
        &upload.0,
        upload.1,
        keys.is_some(),
    )
    .await;
    if let Some(scratch) = scratch {
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_file(scratch)).await;
    }
    match stored {
        Ok(object) => Ok(Some(object)),
        Err(e) => {
            tracing::warn!(call = %call_id, error = %e, "the call was not stored in the bucket; the service serves its link");
            Ok(None)
        }
    }
}

/// The stored copy of this timeline, when this instance can read it (a sealed copy needs the
/// keys).
async fn usable(
    state: &AppState,
    call_id: &str,
    key: &str,
) -> Result<Option<CallObject>, ApiError> {
    let found = stored_calls::find(&state.db, call_id, key)
        .await
        .map_err(internal)?;
    Ok(found.filter(|object| object.sealed == 0 || state.library.keys.is_some()))
}

/// `GET /api/calls/{id}/download` through a signed link: the link's principal must still be
/// allowed to download every segment; the link is spent with the first segment's event.
pub(super) async fn serve_link(
    state: &AppState,
    request: MediaRequest,
) -> Result<Response, ApiError> {
    let call_id = request.id.clone();
    let (caller, grant) = link_caller_for(
        state,
        &request.query,
        &request.client,
        Some(LinkTarget::Call(call_id.clone())),
        LinkAction::Download,
    )
    .await?;
    let call = plan(state, &caller, &call_id, Action::Download, "download").await?;
    let stored = match &state.library.archive {
        Some(_) => usable(state, &call_id, &call.key).await?,
        None => None,
    };
    let (key, segments) = (call.key.clone(), call.segments.clone());
    let (source, samples, from) = match (stored, &state.library.archive) {
        (Some(object), Some(archive)) => {
            let bytes = StoredAudio::Object(ObjectBytes {
                archive: archive.clone(),
                key: object.object_key,
                len: u64::try_from(object.size_bytes).unwrap_or(0),
                parts: 0,
                part_bytes: 0,
            });
            let source = bytes.sealed_if(object.sealed != 0, state.library.keys.as_ref());
            let samples = u64::try_from(object.samples).unwrap_or(0);
            (source, samples, "the bucket's copy")
        }
        _ => {
            let file = build(state, &call_id, &call.key, call.pieces).await?;
            (file.source(), file.samples, "assembled here")
        }
    };
    let detail = [Some("signed link".to_string()), Some(from.to_string())]
        .into_iter()
        .chain(std::iter::once(request.range.detail()))
        .flatten()
        .collect::<Vec<_>>()
        .join(", ");
    audit_segments(
        state,
        &caller,
        &call_id,
        ("download", Some(detail)),
        &segments,
        Some(&grant),
    )
    .await?;
    let stream = WavStream {
        source,
        encoding: Encoding::Pcm16,
        sample_rate: TIMELINE_RATE,
        data_offset: wav::HEADER_LEN,
        data_len: samples * 2,
    };
    serve(
        AudioBody::Wav(stream),
        format!("\"call-{key}\""),
        &request.range,
        Some(super::download_name(&segments)),
    )
}
