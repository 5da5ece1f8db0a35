//! The recordings library over HTTP: the paginated, filtered list, one recording's metadata,
//! inline audio with exact HTTP ranges, download as an attachment, waveform peaks, and delete
//! in two steps.
//!
//! IDs in URLs, never paths; every file opened is checked to stay inside the recordings folder.
//! Every request is authorized by `access::policy::decide` and leaves one audit event; audio is
//! served to a signed-in caller or through a signed link.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;

use super::auth::{denied, Caller, ConnectInfoOrUnknown};
use super::params::{
    AudioFormat, AudioQuery, DeleteConfirmation, FromQuery, LinkLifetime, Params, PeakChannels,
    PeakPoints, RangeHeader, RecordingId,
};
use super::{internal, rfc3339, ApiError, AppState, ErrorBody};
use crate::access::accounts::principal_for_subject;
use crate::access::audit::{self, AuditEntry, AuditTx};
use crate::access::links::{self, Grant, LinkAction, LinkTarget};
use crate::access::policy::{decide, Action, Denial, RecordingFacts, TenantSettings};
use crate::access::{random_secret, Principal, Scope};
use crate::archive::{Archive, ObjectBytes, StoredAudio};
use crate::audio::Encoding;
use crate::db::Database;
use crate::library::Indexer;
use crate::playback::call_audio::CallAudio;
use crate::playback::renderings::{RenderError, Renderings};
use crate::playback::serve::{parse_range, RangeRequest, WavStream};

mod bundle;
mod delete;
mod export;
mod list;
mod media;
mod signed_links;

pub(in crate::http) use bundle::*;
pub(in crate::http) use delete::*;
pub(in crate::http) use export::*;
pub(in crate::http) use list::*;
pub use media::LibraryAudio;
pub(in crate::http) use media::*;
pub(in crate::http) use signed_links::*;

/// How long a delete confirmation token stays valid.
const CONFIRM_TTL: Duration = Duration::from_secs(120);

/// What the library endpoints share.
pub struct Library {
    pub indexer: Arc<Indexer>,
    root: PathBuf,
    /// This instance's node: only its rows have their files in `root`.
    node: String,
    /// Opus encodings and waveforms: one job per rendering, a bounded cache.
    pub renderings: Arc<Renderings>,
    /// Calls assembled into one recording, on disk.
    pub call_audio: Arc<CallAudio>,
    /// The object store recordings are copied to, when one is configured.
    pub archive: Option<Arc<Archive>>,
    /// The engine that transcribes final recordings (None: transcription is off).
    pub transcription: Option<&'static str>,
    /// Opens recordings sealed at rest.
    pub keys: Option<Arc<crate::encryption::Keyring>>,
}

/// Bytes of Opus and waveforms kept in memory: about fifty ten-minute calls' Opus.
const RENDER_CACHE_BYTES: u64 = 64 << 20;

impl Library {
    pub fn new(indexer: Arc<Indexer>, call_audio: Arc<CallAudio>) -> Library {
        let root = indexer.root().to_path_buf();
        let node = indexer.node().to_string();
        Library {
            indexer,
            root,
            node,
            // One rendering job per core: a burst of Opus requests queues instead of
            // taking every blocking thread.
            renderings: Renderings::new(
                RENDER_CACHE_BYTES,
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            ),
            call_audio,
            archive: None,
            transcription: None,
            keys: None,
        }
    }

    /// Opens recordings sealed at rest with `keys`.
    pub fn with_keys(mut self, keys: Option<Arc<crate::encryption::Keyring>>) -> Library {
        self.keys = keys;
        self
    }

    /// Final recordings are transcribed by `engine` (shown in `/readyz`).
    pub fn with_transcription(mut self, engine: Option<&'static str>) -> Library {
        self.transcription = engine;
        self
    }

    /// Reads recordings whose local copy went from `archive`.
    pub fn with_archive(mut self, archive: Option<Arc<Archive>>) -> Library {
        self.archive = archive;
        self
    }

    /// The file of a row, refusing anything that resolves outside the folder. Blocking.
    pub(super) fn file(&self, rel: &str) -> Option<PathBuf> {
        crate::library::file_inside(&self.root, rel)
    }

    /// Whether `row`'s file is in this instance's folder (another node's is on its own disk).
    pub(super) fn holds(&self, row: &Recording) -> bool {
        row.node_id == self.node
    }

    /// The directory entry of `rel` itself, for unlinking: its folder is resolved and checked to
    /// stay inside the root, its last component is not (a symlink is removed, never its target,
    /// which may be another recording).
    pub(super) fn entry(&self, rel: &str) -> Option<PathBuf> {
        let root = self.root.canonicalize().ok()?;
        let joined = root.join(rel);
        let name = joined.file_name()?;
        let folder = joined.parent()?.canonicalize().ok()?;
        folder.starts_with(&root).then(|| folder.join(name))
    }
}

pub(super) use crate::library::recordings::Recording;

/// A recording: its file, its call, and what the asking user may do with it.
// Serialized straight from the row (no intermediate JSON tree: a list page is fifty of these).
// Fields in alphabetical order, the order clients have seen.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = Recording)]
pub(super) struct RecordingView<'a> {
    access: AccessView,
    call_id: Option<&'a str>,
    callee: Option<&'a str>,
    caller: CallerView<'a>,
    /// The uniqueid of the channel that answered the caller (the CDR's `uniqueid` of that
    /// leg), when known.
    callee_channel: Option<&'a str>,
    #[schema(value_type = crate::library::Compliance)]
    compliance: &'a str,
    #[schema(value_type = crate::library::Consent)]
    consent: &'a str,
    #[schema(format = DateTime)]
    deleted_at: Option<String>,
    #[schema(value_type = Option<crate::library::Direction>)]
    direction: Option<&'a str>,
    duration_seconds: f64,
    flow: Option<&'a str>,
    #[schema(value_type = crate::library::RecordingFormat)]
    format: &'a str,
    /// A legal hold: no delete, no purge until released.
    hold: Option<HoldView<'a>>,
    id: i64,
    /// Asterisk's linkedid of the call, as its CDR and CEL records carry it (when Asterisk
    /// reports it: `channelvars = CHANNEL(linkedid)` in ari.conf). `call_id` is the caller
    /// channel's uniqueid.
    linkedid: Option<&'a str>,
    links: LinksView,
    name: &'a str,
    node: Option<&'a str>,
    /// The instance whose folder holds the file.
    node_id: &'a str,
    #[schema(value_type = Option<crate::library::NodeType>)]
    node_type: Option<&'a str>,
    playable: bool,
    /// Only the people on the call see it.
    private: bool,
    project: &'a str,
    /// Why the status (a failure's cause).
    reason: Option<&'a str>,
    sha256: Option<&'a str>,
    size_bytes: i64,
    #[schema(format = DateTime)]
    started_at: String,
    #[schema(value_type = crate::library::RecordingStatus)]
    status: &'a str,
    tenant: &'a str,
    /// With `q`: where the words are said in its transcript.
    #[serde(rename = "match", skip_serializing_if = "Option::is_none")]
    pub(in crate::http) said: Option<SaidView>,
}

/// Where a transcript search's words are said: the line's start in the recording, its speaker
/// and a snippet of it.
#[derive(Clone, serde::Serialize, utoipa::ToSchema)]
pub(in crate::http) struct SaidView {
    pub(in crate::http) start_seconds: f64,
    pub(in crate::http) speaker: Option<String>,
    pub(in crate::http) snippet: String,
}

/// What the asking user may do with the recording, and if not, why.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct AccessView {
    delete: Verdict,
    download: Verdict,
    play: Verdict,
    set_status: Verdict,
}

/// Whether an action is allowed, and why not.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct Verdict {
    allowed: bool,
    /// missing_entitlement, missing_consent, compliance_policy, media_unavailable,
    /// role_restriction, missing_scope, private_recording or on_hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}

impl Verdict {
    fn of(result: Result<(), Denial>) -> Verdict {
        Verdict {
            allowed: result.is_ok(),
            reason: result.err().map(Denial::reason),
        }
    }
}

#[derive(serde::Serialize, utoipa::ToSchema)]
struct CallerView<'a> {
    name: Option<&'a str>,
    number: Option<&'a str>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
struct HoldView<'a> {
    reason: &'a str,
}

/// The addresses of what the asking user may do (absent: not allowed).
#[derive(serde::Serialize, utoipa::ToSchema)]
struct LinksView {
    #[serde(skip_serializing_if = "Option::is_none")]
    audio: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    download: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    download_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peaks: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    play_url: Option<String>,
}

impl Recording {
    /// Where the file begins on the call's timeline: Asterisk's clock, or ours when Asterisk's
    /// start was not seen.
    pub(super) fn timeline_ms(&self) -> i64 {
        self.asterisk_started_at_ms.unwrap_or(self.started_at_ms)
    }

    pub(super) fn facts(&self) -> RecordingFacts<'_> {
        RecordingFacts {
            tenant: &self.tenant,
            project: &self.project,
            private: self.private != 0,
            participants: self.participants.as_deref().unwrap_or(""),
            consent: self.consent,
            compliance: self.compliance,
            status: self.status,
        }
    }

    /// The recording as `principal` may see it: what they may do with it and, where not, why.
    /// The recording as the API shows it to `principal`: what it may do with it and where.
    pub(super) fn view(&self, principal: &Principal, tenant: TenantSettings) -> RecordingView<'_> {
        let base = format!("/api/recordings/{}", self.id);
        let verdict = |action| decide(principal, tenant, &self.facts(), action);
        let (play, download) = (verdict(Action::Play), verdict(Action::Download));
        let link = |allowed: bool, tail: &str| allowed.then(|| format!("{base}/{tail}"));
        RecordingView {
            access: AccessView {
                // A held recording is deleted by nobody until it is released.
                delete: match (&self.hold_reason, verdict(Action::Delete)) {
                    (Some(_), Ok(())) => Verdict {
                        allowed: false,
                        reason: Some("on_hold"),
                    },
                    (_, result) => Verdict::of(result),
                },
                download: Verdict::of(download),
                play: Verdict::of(play),
                set_status: Verdict::of(verdict(Action::SetStatus)),
            },
            call_id: self.call_id.as_deref(),
            callee: self.callee.as_deref(),
            callee_channel: self.callee_channel.as_deref(),
            caller: CallerView {
                name: self.caller_name.as_deref(),
                number: self.caller_number.as_deref(),
            },
            compliance: self.compliance.as_str(),
            consent: self.consent.as_str(),
            deleted_at: self.deleted_at_ms.map(rfc3339),
            direction: self.direction.map(crate::library::Direction::as_str),
            duration_seconds: self.duration_ms as f64 / 1000.0,
            flow: self.flow.as_deref(),
            format: self.format.as_str(),
            hold: self
                .hold_reason
                .as_deref()
                .map(|reason| HoldView { reason }),
            id: self.id,
            linkedid: self.linkedid.as_deref(),
            links: LinksView {
                audio: link(play.is_ok(), "audio"),
                download: link(download.is_ok(), "download"),
                download_url: link(download.is_ok(), "download-url"),
                peaks: link(play.is_ok(), "peaks"),
                play_url: link(play.is_ok(), "play-url"),
            },
            name: &self.name,
            node: self.node.as_deref(),
            node_id: &self.node_id,
            node_type: self.node_type.map(crate::library::NodeType::as_str),
            playable: self.status == crate::library::RecordingStatus::Ready,
            private: self.private != 0,
            project: &self.project,
            reason: self.reason.as_deref(),
            sha256: self.sha256.as_deref(),
            size_bytes: self.size_bytes,
            started_at: rfc3339(self.started_at_ms),
            status: self.status.as_str(),
            tenant: &self.tenant,
            said: None,
        }
    }

    /// [`Self::view`] as a JSON value, for answers that add to it.
    pub(super) fn json(&self, principal: &Principal, tenant: TenantSettings) -> serde_json::Value {
        serde_json::to_value(self.view(principal, tenant)).unwrap_or_default()
    }

    fn stream(&self, source: StoredAudio) -> Option<WavStream> {
        let encoding = match self.encoding.as_deref()? {
            "pcm16" => Encoding::Pcm16,
            "ulaw" => Encoding::Ulaw,
            "alaw" => Encoding::Alaw,
            _ => return None,
        };
        Some(WavStream {
            source,
            encoding,
            sample_rate: u32::try_from(self.sample_rate).ok()?,
            data_offset: u64::try_from(self.data_offset).ok()?,
            data_len: u64::try_from(self.data_len).ok()?,
        })
    }
}

pub(super) use super::params::bad;

pub(super) use super::recording_not_found as not_found;

async fn fetch(db: &Database, id: i64) -> Result<Option<Recording>, ApiError> {
    crate::library::recordings::by_id(&db.pool, id)
        .await
        .map_err(internal)
}

/// Every row of a call (its segments, and its bridged calls listed without audio), oldest first.
pub(super) async fn fetch_call(db: &Database, call_id: &str) -> Result<Vec<Recording>, ApiError> {
    crate::library::recordings::of_call(&db.pool, call_id)
        .await
        .map_err(internal)
}

/// A recording `caller` may do `action` to, with the tenant's settings and the audit entry to
/// commit with the action. A refusal is audited here and answered; a recording out of the
/// caller's scope is answered exactly like one that does not exist.
pub(super) async fn authorize(
    state: &AppState,
    caller: &Caller,
    id: &str,
    action: Action,
    audit_action: &'static str,
) -> Result<(Recording, TenantSettings, AuditEntry), ApiError> {
    let mut entry = caller.entry(audit_action);
    let parsed: Option<i64> = id.parse().ok();
    entry.recording_id = parsed;
    let row = match parsed {
        Some(id) => fetch(&state.db, id).await?,
        None => None,
    };
    let Some(row) = row else {
        return Err(caller.refuse(state, entry, not_found()).await);
    };
    let tenant = caller.principal.settings;
    match decide(&caller.principal, tenant, &row.facts(), action) {
        Ok(()) => Ok((row, tenant, entry)),
        // Say precisely why there is no audio (in progress, empty, unreadable...).
        Err(Denial::MediaUnavailable) => {
            let error = match playable(state, &row).await {
                Err(e) => e,
                Ok(_) => denied(Denial::MediaUnavailable),
            };
            Err(caller.refuse(state, entry, error).await)
        }
        Err(d) => Err(caller.refuse(state, entry, denied(d)).await),
    }
}

/// One recording, with what the asking user may do with it.
#[utoipa::path(get, path = "/api/recordings/{id}", tag = "recordings", operation_id = "get_recording", params(RecordingId), responses(
    (status = 200, description = "the recording", body = RecordingView),
    crate::http::openapi::RecordingRefusals,
))]
pub(super) async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(RecordingId { id }): Path<RecordingId>,
) -> Result<Response, ApiError> {
    let (row, tenant, entry) = authorize(&state, &caller, &id, Action::Read, "metadata").await?;
    audit::record(&state.db, &entry)
        .await
        .map_err(crate::http::audit_failed)?;
    let mut json = row.json(&caller.principal, tenant);
    json["redactions"] = redactions(&state.db, &row.name).await?;
    // Each party on its own as well (a dual-channel node): `?channels=dual` serves them as stereo.
    json["dual_channel"] = serde_json::Value::Bool(
        row.status == crate::library::RecordingStatus::Ready
            && party_streams(&state.library, &row).await.is_some(),
    );
    json["has_transcript"] = serde_json::Value::Bool(
        crate::library::transcripts::exists(&state.db, row.id)
            .await
            .map_err(internal)?,
    );
    // Who talked how long: shown where the audio may be played (it is drawn from it).
    if decide(&caller.principal, tenant, &row.facts(), Action::Play).is_ok() {
        if let Some(talk) =
            crate::library::insights::load(&state.db, state.library.keys.as_deref(), row.id)
                .await
                .map_err(internal)?
        {
            json["insights"] = crate::library::insights::json(&talk);
        }
    }
    Ok(Json(json).into_response())
}

/// The stretches of a recording muted or paused while its call was live, in file order.
pub(super) async fn redactions(db: &Database, name: &str) -> Result<serde_json::Value, ApiError> {
    Ok(spans_json(&redaction_spans(db, name).await?))
}

/// A stretch redacted while the call was live.
pub(super) use crate::library::calls::Redaction as Span;

/// A recording's redacted stretches, in file order.
pub(super) async fn redaction_spans(db: &Database, name: &str) -> Result<Vec<Span>, ApiError> {
    crate::library::calls::redactions(&db.pool, name)
        .await
        .map_err(internal)
}

pub(super) fn spans_json(spans: &[Span]) -> serde_json::Value {
    spans
        .iter()
        .map(|s| {
            serde_json::json!({
                "mode": s.mode,
                "from_seconds": s.from_offset_ms as f64 / 1000.0,
                "to_seconds": s.to_offset_ms as f64 / 1000.0,
                "started_at": rfc3339(s.started_at_ms),
                "ended_at": rfc3339(s.ended_at_ms),
                "by": s.by_actor,
            })
        })
        .collect()
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct StatusPatch {
    #[schema(value_type = Option<crate::library::Consent>)]
    consent: Option<String>,
    #[schema(value_type = Option<crate::library::Compliance>)]
    compliance: Option<String>,
}

/// Set a recording's consent and compliance status (admins; audited).
#[utoipa::path(patch, path = "/api/recordings/{id}", tag = "recordings", params(RecordingId),
    request_body = StatusPatch, responses(
    (status = 200, description = "the recording", body = RecordingView),
    (status = 400, description = "a value not in the list, or nothing to set", body = ErrorBody),
    crate::http::openapi::RecordingRefusals,
))]
pub(super) async fn set_status(
    State(state): State<AppState>,
    caller: Caller,
    Path(RecordingId { id }): Path<RecordingId>,
    body: Result<Json<StatusPatch>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(patch) = body?;
    let (consents, compliances) = (
        crate::library::Consent::names(),
        crate::library::Compliance::names(),
    );
    let checks: [(&str, &Option<String>, &[&str]); 2] = [
        ("consent", &patch.consent, &consents),
        ("compliance", &patch.compliance, &compliances),
    ];
    for (field, value, allowed) in checks {
        if let Some(v) = value {
            if !allowed.contains(&v.as_str()) {
                return Err(bad(
                    field,
                    format!("must be one of: {}", allowed.join(", ")),
                ));
            }
        }
    }
    if patch.consent.is_none() && patch.compliance.is_none() {
        return Err(bad("body", "set consent, compliance or both"));
    }
    let (row, tenant, mut entry) =
        authorize(&state, &caller, &id, Action::SetStatus, "set_status").await?;
    let consent_changes = patch.consent.is_some();
    // Both were checked against their lists above.
    let consent = patch
        .consent
        .as_deref()
        .and_then(crate::library::Consent::parse)
        .unwrap_or(row.consent);
    let compliance = patch
        .compliance
        .as_deref()
        .and_then(crate::library::Compliance::parse)
        .unwrap_or(row.compliance);
    entry.detail = Some(format!(
        "consent {} -> {consent}, compliance {} -> {compliance}",
        row.consent, row.compliance
    ));
    let mut tx = AuditTx::begin(&state.db).await.map_err(internal)?;
    crate::library::recordings::set_consent_and_compliance(
        tx.conn(),
        row.id,
        consent.as_str(),
        compliance.as_str(),
    )
    .await
    .map_err(internal)?;
    // Consent is the caller's, so it belongs to the whole call: every recording of it (and
    // its metadata, so a re-index keeps the decision) changes with this one.
    if let (true, Some(call)) = (consent_changes, &row.call_id) {
        let others = crate::library::recordings::set_consent_of_call(
            tx.conn(),
            call,
            &row.tenant,
            row.id,
            consent.as_str(),
        )
        .await
        .map_err(internal)?;
        crate::library::calls::set_consent(tx.conn(), call, consent.as_str())
            .await
            .map_err(internal)?;
        if others > 0 {
            if let Some(detail) = entry.detail.as_mut() {
                detail.push_str(&format!(
                    " (consent also on the call's {others} other recordings)"
                ));
            }
        }
    }
    if consent != row.consent {
        let event = crate::outbox::Event::each_time(
            crate::outbox::EventKind::ConsentChanged,
            crate::outbox::Subject::Recording(row.id),
            crate::clock::now_ms(),
        )
        .with_detail(row.consent.as_str());
        crate::outbox::record(tx.conn(), &event)
            .await
            .map_err(internal)?;
    }
    tx.commit(&entry).await.map_err(internal)?;
    let row = Recording {
        consent,
        compliance,
        ..row
    };
    Ok(Json(row.json(&caller.principal, tenant)).into_response())
}

/// The state of the recordings folder's scan (admins of the operator's tenant).
#[utoipa::path(get, path = "/api/library/scan", tag = "operations", responses(
    (status = 200, description = "the scan's state"),
    crate::http::openapi::AdminRefusals,
))]
pub(super) async fn scan_state(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller
        .require(
            &state,
            "scan_state",
            &[crate::access::Role::Admin],
            Scope::Admin,
        )
        .await?;
    // The whole folder's state: the operator's, not one tenant's.
    caller.require_operator(&state, "scan_state").await?;
    Ok(Json(state.library.indexer.state.json()).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_names_come_from_metadata_only() {
        let row = Recording {
            id: 42,
            path: "../../x".into(),
            name: "evil\"; rm -rf".into(),
            format: "wav".into(),
            status: crate::library::RecordingStatus::Ready,
            reason: None,
            size_bytes: 0,
            duration_ms: 0,
            encoding: None,
            sample_rate: 8000,
            data_offset: 44,
            data_len: 0,
            sha256: None,
            call_id: None,
            tenant: "default".into(),
            project: "default".into(),
            participants: None,
            flow: None,
            node: None,
            node_type: Some(crate::library::NodeType::Transfer),
            direction: None,
            caller_name: None,
            caller_number: Some("+1 (555) 0100\";".into()),
            callee: None,
            started_at_ms: 1_795_300_930_000,
            private: 0,
            consent: crate::library::Consent::Unknown,
            compliance: crate::library::Compliance::Permitted,
            deleted_at_ms: None,
            asterisk_started_at_ms: None,
            hold_reason: None,
            node_id: String::new(),
            linkedid: None,
            callee_channel: None,
        };
        assert_eq!(
            download_name(&row),
            "20261121-224210-transfer-15550100-42.wav"
        );
    }
}
