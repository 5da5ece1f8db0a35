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
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;

use super::auth::{denied, Caller, ConnectInfoOrUnknown};
use super::{internal, rfc3339, ApiError, AppState};
use crate::access::accounts::principal_for_subject;
use crate::access::audit::{self, AuditEntry, AuditTx};
use crate::access::links::{self, Grant, LinkAction};
use crate::access::policy::{decide, Action, Denial, RecordingFacts, TenantSettings};
use crate::access::{random_secret, Principal, Scope};
use crate::audio::call_audio::CallAudio;
use crate::audio::renderings::{RenderError, Renderings, PEAK_POINTS};
use crate::audio::serve::{parse_range, RangeRequest, WavStream};
use crate::audio::Encoding;
use crate::library::{Database, Indexer};

/// How long a delete confirmation token stays valid.
const CONFIRM_TTL: Duration = Duration::from_secs(120);
const MAX_LIMIT: i64 = 200;
/// Binds `value` as the next numbered parameter and names it (`$n`).
pub(super) fn param(binds: &mut Vec<Bind>, value: Bind) -> String {
    binds.push(value);
    format!("${}", binds.len())
}

/// Words of a caller-name search at most.
const MAX_NAME_WORDS: usize = 5;

/// `recording_words` rows whose word starts with `prefix`, as a range scan of an index: on
/// SQLite a byte range on the primary key (its LIKE is case-insensitive and scans every row),
/// on PostgreSQL LIKE on the `text_pattern_ops` index.
fn word_prefix_clause(
    backend: crate::library::db::Backend,
    prefix: &str,
    binds: &mut Vec<Bind>,
) -> String {
    match backend {
        crate::library::db::Backend::Sqlite => {
            let low = param(binds, Bind::Text(prefix.to_string()));
            // Every word starting with `prefix` sorts below prefix + the last code point.
            let high = param(binds, Bind::Text(format!("{prefix}{}", char::MAX)));
            format!("word >= {low} AND word < {high}")
        }
        crate::library::db::Backend::Postgres => {
            let p = param(binds, Bind::Text(like_literal(prefix) + "%"));
            format!("word LIKE {p} ESCAPE '\\'")
        }
    }
}

/// What the library endpoints share.
pub struct Library {
    pub indexer: Arc<Indexer>,
    root: PathBuf,
    /// Opus encodings and waveforms: one job per rendering, a bounded cache.
    pub renderings: Arc<Renderings>,
    /// Calls assembled into one recording, on disk.
    pub call_audio: Arc<CallAudio>,
}

/// Bytes of Opus and waveforms kept in memory: about fifty ten-minute calls' Opus.
const RENDER_CACHE_BYTES: u64 = 64 << 20;

impl Library {
    pub fn new(indexer: Arc<Indexer>, call_audio: Arc<CallAudio>) -> Library {
        let root = indexer.root().to_path_buf();
        Library {
            indexer,
            root,
            // One rendering job per core: a burst of Opus requests queues instead of
            // taking every blocking thread.
            renderings: Renderings::new(
                RENDER_CACHE_BYTES,
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            ),
            call_audio,
        }
    }

    /// The file of a row, refusing anything that resolves outside the folder.
    fn file(&self, rel: &str) -> Option<PathBuf> {
        let root = self.root.canonicalize().ok()?;
        let path = root.join(rel).canonicalize().ok()?;
        path.starts_with(&root).then_some(path)
    }

    /// The directory entry of `rel` itself, for unlinking: its folder is resolved and checked to
    /// stay inside the root, its last component is not (a symlink is removed, never its target,
    /// which may be another recording).
    fn entry(&self, rel: &str) -> Option<PathBuf> {
        let root = self.root.canonicalize().ok()?;
        let joined = root.join(rel);
        let name = joined.file_name()?;
        let folder = joined.parent()?.canonicalize().ok()?;
        folder.starts_with(&root).then(|| folder.join(name))
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub(super) struct RecordingRow {
    pub(super) id: i64,
    pub(super) path: String,
    pub(super) name: String,
    pub(super) format: String,
    pub(super) status: String,
    pub(super) reason: Option<String>,
    pub(super) size_bytes: i64,
    pub(super) duration_ms: i64,
    pub(super) encoding: Option<String>,
    pub(super) sample_rate: i64,
    pub(super) data_offset: i64,
    pub(super) data_len: i64,
    pub(super) sha256: Option<String>,
    pub(super) call_id: Option<String>,
    pub(super) tenant: String,
    pub(super) project: String,
    pub(super) participants: Option<String>,
    pub(super) flow: Option<String>,
    pub(super) node: Option<String>,
    pub(super) node_type: Option<String>,
    pub(super) direction: Option<String>,
    pub(super) caller_name: Option<String>,
    pub(super) caller_number: Option<String>,
    pub(super) callee: Option<String>,
    pub(super) started_at_ms: i64,
    pub(super) private: i64,
    pub(super) consent: String,
    pub(super) compliance: String,
    pub(super) deleted_at_ms: Option<i64>,
    /// Where the file begins on Asterisk's clock (None: its start was not seen).
    pub(super) asterisk_started_at_ms: Option<i64>,
    /// The reason of its legal hold, when it is held.
    pub(super) hold_reason: Option<String>,
}

pub(super) const COLUMNS: &str = "id, path, name, format, status, reason, size_bytes, duration_ms, encoding, sample_rate, \
    data_offset, data_len, sha256, call_id, tenant, project, participants, flow, node, node_type, direction, caller_name, caller_number, \
    callee, started_at_ms, private, consent, compliance, deleted_at_ms, asterisk_started_at_ms, \
    (SELECT reason FROM recording_holds h WHERE h.recording_id = recordings.id) AS hold_reason";

impl RecordingRow {
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
            consent: &self.consent,
            compliance: &self.compliance,
            status: &self.status,
        }
    }

    /// The recording as `principal` may see it: what they may do with it and, where not, why.
    pub(super) fn json(&self, principal: &Principal, tenant: TenantSettings) -> serde_json::Value {
        let base = format!("/api/recordings/{}", self.id);
        let playable = self.status == "ready";
        let verdict = |action| decide(principal, tenant, &self.facts(), action);
        let shown = |result: Result<(), Denial>| match result {
            Ok(()) => serde_json::json!({"allowed": true}),
            Err(d) => serde_json::json!({"allowed": false, "reason": d.reason()}),
        };
        let (play, download) = (verdict(Action::Play), verdict(Action::Download));
        let mut links = serde_json::Map::new();
        if play.is_ok() {
            links.insert("audio".into(), format!("{base}/audio").into());
            links.insert("peaks".into(), format!("{base}/peaks").into());
            links.insert("play_url".into(), format!("{base}/play-url").into());
        }
        if download.is_ok() {
            links.insert("download".into(), format!("{base}/download").into());
            links.insert("download_url".into(), format!("{base}/download-url").into());
        }
        serde_json::json!({
            "id": self.id,
            "name": self.name,
            "format": self.format,
            "status": self.status,
            "reason": self.reason,
            "duration_seconds": self.duration_ms as f64 / 1000.0,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "started_at": rfc3339(self.started_at_ms),
            "call_id": self.call_id,
            "tenant": self.tenant,
            "project": self.project,
            "flow": self.flow,
            "node": self.node,
            "node_type": self.node_type,
            "direction": self.direction,
            "caller": { "name": self.caller_name, "number": self.caller_number },
            "callee": self.callee,
            "private": self.private != 0,
            "consent": self.consent,
            "compliance": self.compliance,
            "deleted_at": self.deleted_at_ms.map(rfc3339),
            "hold": self.hold_reason.as_ref().map(|reason| serde_json::json!({"reason": reason})),
            "playable": playable,
            "access": {
                "play": shown(play),
                "download": shown(download),
                // A held recording is deleted by nobody until it is released.
                "delete": match (&self.hold_reason, verdict(Action::Delete)) {
                    (Some(_), Ok(())) => serde_json::json!({"allowed": false, "reason": "on_hold"}),
                    (_, result) => shown(result),
                },
                "set_status": shown(verdict(Action::SetStatus)),
            },
            "links": links,
        })
    }

    fn stream(&self, file: PathBuf) -> Option<WavStream> {
        let encoding = match self.encoding.as_deref()? {
            "pcm16" => Encoding::Pcm16,
            "ulaw" => Encoding::Ulaw,
            "alaw" => Encoding::Alaw,
            _ => return None,
        };
        Some(WavStream {
            path: file,
            encoding,
            sample_rate: u32::try_from(self.sample_rate).ok()?,
            data_offset: u64::try_from(self.data_offset).ok()?,
            data_len: u64::try_from(self.data_len).ok()?,
        })
    }
}

pub(super) fn bad(param: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "bad_request",
        format!("{param}: {message}"),
    )
}

pub(super) fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such recording")
}

/// A LIKE pattern matching `value` anywhere as a literal.
fn like_literal(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// A value bound into a dynamically built query.
pub(super) enum Bind {
    Text(String),
    Int(i64),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sort {
    Newest,
    Longest,
}

fn parse_time(param: &str, value: &str) -> Result<i64, ApiError> {
    if let Ok(ms) = value.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            bad(
                param,
                "expected RFC 3339 (2026-11-21T10:00:00Z) or milliseconds since 1970",
            )
        })
}

fn encode_cursor(sort: Sort, key: i64, id: i64) -> String {
    let tag = if sort == Sort::Newest { "n" } else { "l" };
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{tag}:{key}:{id}"))
}

fn decode_cursor(sort: Sort, cursor: &str) -> Result<(i64, i64), ApiError> {
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| bad("cursor", "not a cursor from this API"))?;
    let mut parts = text.split(':');
    let tag = if sort == Sort::Newest { "n" } else { "l" };
    match (
        parts.next(),
        parts.next().map(str::parse::<i64>),
        parts.next().map(str::parse::<i64>),
    ) {
        (Some(t), Some(Ok(key)), Some(Ok(id))) if t == tag => Ok((key, id)),
        (Some(_), Some(Ok(_)), Some(Ok(_))) => Err(bad("cursor", "belongs to another sort order")),
        _ => Err(bad("cursor", "not a cursor from this API")),
    }
}

const LIST_PARAMS: [&str; 14] = [
    "limit",
    "group",
    "cursor",
    "sort",
    "caller",
    "callee",
    "name",
    "node_type",
    "direction",
    "status",
    "format",
    "from",
    "to",
    "min_duration",
];

/// The WHERE clauses of a list: what the caller may see (their tenant, their projects, private
/// calls they were on) and the filters asked for, with their bound values.
fn list_filters(
    state: &AppState,
    principal: &Principal,
    q: &HashMap<String, String>,
) -> Result<(Vec<String>, Vec<Bind>), ApiError> {
    let mut clauses: Vec<String> = Vec::new();
    let mut binds: Vec<Bind> = Vec::new();
    // What the caller may see: their tenant, their projects, private calls they were on.
    let p = param(&mut binds, Bind::Text(principal.tenant.clone()));
    clauses.push(format!("tenant = {p}"));
    if !principal.projects.is_empty() {
        let list: Vec<String> = principal
            .projects
            .iter()
            .map(|project| param(&mut binds, Bind::Text(project.clone())))
            .collect();
        clauses.push(format!("project IN ({})", list.join(", ")));
    }
    // The same exact, case-sensitive comparison as the policy's `is_participant` (LIKE is
    // case-insensitive on SQLite: `pjsip/203` would have matched `PJSIP/203`).
    let mut own = Vec::new();
    for identity in std::iter::once(&principal.username).chain(principal.extension.as_ref()) {
        let p = param(&mut binds, Bind::Text(format!(",{identity},")));
        own.push(participant_is(state.db.backend, &p));
    }
    clauses.push(format!("(private = 0 OR {})", own.join(" OR ")));
    // Prefix matches are range scans on their indexes.
    let like_escape = |v: &str| like_literal(v) + "%";
    for (key, column, lower) in [
        ("caller", "caller_number", false),
        ("callee", "callee", false),
    ] {
        if let Some(v) = q.get(key) {
            if v.is_empty() || v.len() > 100 {
                return Err(bad(key, "must be 1 to 100 characters"));
            }
            let v = if lower { v.to_lowercase() } else { v.clone() };
            let p = param(&mut binds, Bind::Text(like_escape(&v)));
            clauses.push(format!("{column} LIKE {p} ESCAPE '\\'"));
        }
    }
    if let Some(v) = q.get("name") {
        let words = crate::library::index::name_words(v);
        // Bounded cost: a one-letter prefix would match a large part of a big library, and
        // each word is one more index range to intersect.
        if words.is_empty()
            || v.len() > 100
            || words.len() > MAX_NAME_WORDS
            || words.iter().any(|w| w.chars().count() < 2)
        {
            return Err(bad(
                "name",
                format!("must hold 1 to {MAX_NAME_WORDS} words of at least 2 letters or digits, at most 100 characters"),
            ));
        }
        // Every word typed must start a word of the caller's name.
        for word in words {
            let clause = word_prefix_clause(state.db.backend, &word, &mut binds);
            clauses.push(format!(
                "id IN (SELECT recording_id FROM recording_words WHERE {clause})"
            ));
        }
    }
    let allowed: [(&str, &[&str]); 4] = [
        (
            "node_type",
            &[
                "transfer",
                "queue",
                "hunt_group",
                "voicemail",
                "outbound",
                "fallback",
            ],
        ),
        ("direction", &["inbound", "outbound"]),
        ("status", &crate::library::RecordingStatus::names()),
        (
            "format",
            &["wav", "wav16", "WAV", "ulaw", "alaw", "sln", "gsm", "g722"],
        ),
    ];
    for (key, values) in allowed {
        if let Some(v) = q.get(key) {
            if !values.contains(&v.as_str()) {
                return Err(bad(key, format!("must be one of: {}", values.join(", "))));
            }
            let p = param(&mut binds, Bind::Text(v.clone()));
            clauses.push(format!("{key} = {p}"));
        }
    }
    if let Some(v) = q.get("from") {
        let p = param(&mut binds, Bind::Int(parse_time("from", v)?));
        clauses.push(format!("started_at_ms >= {p}"));
    }
    if let Some(v) = q.get("to") {
        let p = param(&mut binds, Bind::Int(parse_time("to", v)?));
        clauses.push(format!("started_at_ms < {p}"));
    }
    if let Some(v) = q.get("min_duration") {
        let seconds: f64 = v
            .parse()
            .map_err(|_| bad("min_duration", "must be a number of seconds"))?;
        if !(0.0..=86_400.0).contains(&seconds) {
            return Err(bad("min_duration", "must be between 0 and 86400 seconds"));
        }
        let p = param(&mut binds, Bind::Int((seconds * 1000.0) as i64));
        clauses.push(format!("duration_ms >= {p}"));
    }
    Ok((clauses, binds))
}

/// The audit entry of a list: what was searched (each value cut at 100 characters), and
/// whether it is a next page.
pub(super) fn list_entry(caller: &Caller, q: &HashMap<String, String>) -> AuditEntry {
    let mut entry = caller.entry("list");
    let mut searched: Vec<String> = q
        .iter()
        .filter(|(k, _)| k.as_str() != "cursor")
        .map(|(k, v)| format!("{k}={}", v.chars().take(100).collect::<String>()))
        .collect();
    searched.sort();
    entry.detail = Some(if q.contains_key("cursor") {
        format!("{} (next page)", searched.join("&"))
    } else {
        searched.join("&")
    });
    entry
}

/// `GET /api/recordings`: keyset pagination, newest first or longest first, with filters, over
/// the recordings the caller may see (their tenant and projects; private ones they were on).
/// SQL: the recording's participants include the identity bound at `param` as `,identity,`.
/// Exact and case-sensitive on both backends, as the policy's `is_participant` compares.
pub(super) fn participant_is(backend: crate::library::db::Backend, param: &str) -> String {
    let position = match backend {
        crate::library::db::Backend::Sqlite => "instr",
        crate::library::db::Backend::Postgres => "strpos",
    };
    format!("{position}(',' || COALESCE(participants, '') || ',', {param}) > 0")
}

pub(super) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let principal = &caller.principal;
    if !principal.has_scope(Scope::RecordingsRead) {
        return Err(caller
            .refuse(&state, caller.entry("list"), denied(Denial::MissingScope))
            .await);
    }
    for key in q.keys() {
        if !LIST_PARAMS.contains(&key.as_str()) {
            return Err(bad(
                key,
                format!(
                    "unknown parameter (expected one of: {})",
                    LIST_PARAMS.join(", ")
                ),
            ));
        }
    }
    let limit = match q.get("limit") {
        None => 50,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(bad(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_LIMIT}"),
                ))
            }
        },
    };
    let sort = match q.get("sort").map(String::as_str) {
        None | Some("newest") => Sort::Newest,
        Some("longest") => Sort::Longest,
        Some(_) => return Err(bad("sort", "must be newest or longest")),
    };
    let (mut clauses, mut binds) = list_filters(&state, principal, &q)?;
    if q.get("group").map(String::as_str) == Some("call") {
        if sort != Sort::Newest {
            return Err(bad("group", "calls are listed newest first only"));
        }
        return super::calls::list_grouped(&state, &caller, &q, limit, clauses, binds).await;
    } else if let Some(other) = q.get("group") {
        return Err(bad(
            "group",
            format!("{other:?} is not a grouping (expected call)"),
        ));
    }
    let (key_column, order) = match sort {
        Sort::Newest => ("started_at_ms", "started_at_ms DESC, id DESC"),
        Sort::Longest => ("duration_ms", "duration_ms DESC, id DESC"),
    };
    if let Some(cursor) = q.get("cursor") {
        let (key, id) = decode_cursor(sort, cursor)?;
        let pk = param(&mut binds, Bind::Int(key));
        let pid = param(&mut binds, Bind::Int(id));
        // Keyset: strictly after the last row of the previous page. A row-value comparison is
        // one range seek on the (key, id) index, whatever the depth.
        clauses.push(format!("({key_column}, id) < ({pk}, {pid})"));
    }
    let where_sql = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    let limit_param = param(&mut binds, Bind::Int(limit + 1));
    let sql = format!(
        "SELECT {COLUMNS} FROM recordings {where_sql} ORDER BY {order} LIMIT {limit_param}"
    );
    let mut query = sqlx::query_as::<_, RecordingRow>(&sql);
    for b in binds {
        query = match b {
            Bind::Text(t) => query.bind(t),
            Bind::Int(i) => query.bind(i),
        };
    }
    // The search is recorded before it runs. (Running both at once measured no faster: SQLite
    // serves them from one writer and one worker per connection.)
    audit::record(&state.db, &list_entry(&caller, &q))
        .await
        .map_err(internal)?;
    let mut rows = query.fetch_all(&state.db.pool).await.map_err(internal)?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = match (more, rows.last()) {
        (true, Some(last)) => Some(encode_cursor(
            sort,
            if sort == Sort::Newest {
                last.started_at_ms
            } else {
                last.duration_ms
            },
            last.id,
        )),
        _ => None,
    };
    let tenant = principal.settings;
    Ok(Json(serde_json::json!({
        "recordings": rows.iter().map(|r| r.json(principal, tenant)).collect::<Vec<_>>(),
        "next_cursor": next_cursor,
    }))
    .into_response())
}

async fn fetch(db: &Database, id: i64) -> Result<Option<RecordingRow>, ApiError> {
    sqlx::query_as::<_, RecordingRow>(&format!("SELECT {COLUMNS} FROM recordings WHERE id = $1"))
        .bind(id)
        .fetch_optional(&db.pool)
        .await
        .map_err(internal)
}

/// Every row of a call (its segments, and its bridged calls listed without audio), oldest first.
pub(super) async fn fetch_call(
    db: &Database,
    call_id: &str,
) -> Result<Vec<RecordingRow>, ApiError> {
    sqlx::query_as::<_, RecordingRow>(&format!(
        "SELECT {COLUMNS} FROM recordings WHERE call_id = $1 \
         ORDER BY COALESCE(asterisk_started_at_ms, started_at_ms), id"
    ))
    .bind(call_id)
    .fetch_all(&db.pool)
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
) -> Result<(RecordingRow, TenantSettings, AuditEntry), ApiError> {
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
            let error = match playable(&state.library, &row) {
                Err(e) => e,
                Ok(_) => denied(Denial::MediaUnavailable),
            };
            Err(caller.refuse(state, entry, error).await)
        }
        Err(d) => Err(caller.refuse(state, entry, denied(d)).await),
    }
}

pub(super) async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (row, tenant, entry) = authorize(&state, &caller, &id, Action::Read, "metadata").await?;
    audit::record(&state.db, &entry).await.map_err(internal)?;
    let mut json = row.json(&caller.principal, tenant);
    json["redactions"] = redactions(&state.db, &row.name).await?;
    // Each party on its own as well (a dual-channel node): `?channels=dual` serves them as stereo.
    json["dual_channel"] = serde_json::Value::Bool(
        row.status == "ready" && party_streams(&state.library, &row).is_some(),
    );
    json["has_transcript"] = serde_json::Value::Bool(
        crate::library::transcripts::exists(&state.db, row.id)
            .await
            .map_err(internal)?,
    );
    Ok(Json(json).into_response())
}

/// The stretches of a recording muted or paused while its call was live, in file order.
pub(super) async fn redactions(db: &Database, name: &str) -> Result<serde_json::Value, ApiError> {
    let spans: Vec<(String, i64, i64, i64, i64, String)> = sqlx::query_as(
        "SELECT mode, from_offset_ms, to_offset_ms, started_at_ms, ended_at_ms, by_actor \
         FROM recording_redactions WHERE recording_name = $1 ORDER BY from_offset_ms, id",
    )
    .bind(name)
    .fetch_all(&db.pool)
    .await
    .map_err(internal)?;
    Ok(spans
        .into_iter()
        .map(|(mode, from, to, started, ended, by)| {
            serde_json::json!({
                "mode": mode,
                "from_seconds": from as f64 / 1000.0,
                "to_seconds": to as f64 / 1000.0,
                "started_at": rfc3339(started),
                "ended_at": rfc3339(ended),
                "by": by,
            })
        })
        .collect())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StatusPatch {
    consent: Option<String>,
    compliance: Option<String>,
}

/// `PATCH /api/recordings/{id}`: an admin sets consent and compliance status.
pub(super) async fn set_status(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<StatusPatch>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(patch) = body?;
    let checks: [(&str, &Option<String>, &[&str]); 2] = [
        ("consent", &patch.consent, &["granted", "denied", "unknown"]),
        (
            "compliance",
            &patch.compliance,
            &[
                "permitted",
                "denied",
                "missing_evidence",
                "policy_blocked",
                "unknown",
            ],
        ),
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
    let consent = patch.consent.unwrap_or(row.consent.clone());
    let compliance = patch.compliance.unwrap_or(row.compliance.clone());
    entry.detail = Some(format!(
        "consent {} -> {consent}, compliance {} -> {compliance}",
        row.consent, row.compliance
    ));
    let mut tx = AuditTx::begin(&state.db).await.map_err(internal)?;
    sqlx::query("UPDATE recordings SET consent = $1, compliance = $2 WHERE id = $3")
        .bind(&consent)
        .bind(&compliance)
        .bind(row.id)
        .execute(tx.conn())
        .await
        .map_err(internal)?;
    // Consent is the caller's, so it belongs to the whole call: every recording of it (and
    // its metadata, so a re-index keeps the decision) changes with this one.
    if let (true, Some(call)) = (consent_changes, &row.call_id) {
        let others = sqlx::query(
            "UPDATE recordings SET consent = $1 WHERE call_id = $2 AND tenant = $3 AND id <> $4",
        )
        .bind(&consent)
        .bind(call)
        .bind(&row.tenant)
        .bind(row.id)
        .execute(tx.conn())
        .await
        .map_err(internal)?
        .rows_affected();
        sqlx::query("UPDATE call_recordings SET consent = $1 WHERE call_id = $2")
            .bind(&consent)
            .bind(call)
            .execute(tx.conn())
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
    tx.commit(&entry).await.map_err(internal)?;
    let row = RecordingRow {
        consent,
        compliance,
        ..row
    };
    Ok(Json(row.json(&caller.principal, tenant)).into_response())
}

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

/// The audio of a row, or why there is none.
pub(super) fn playable(library: &Library, row: &RecordingRow) -> Result<WavStream, ApiError> {
    match row.status.as_str() {
        "ready" => {}
        "recording" => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "in_progress",
                "the call is still being recorded",
            ));
        }
        other => {
            let reason = row.reason.clone().unwrap_or_else(|| other.to_string());
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "no_audio",
                format!("no audio: {reason}"),
            ));
        }
    }
    let file = library.file(&row.path).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_audio",
            "no audio: the file is gone or outside the recordings folder",
        )
    })?;
    row.stream(file).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_audio",
            "no audio: format not playable",
        )
    })
}

/// Each party of a dual-channel recording on its own (`.channels/<name>-caller.wav` and
/// `-agent.wav`, recorded through snoops), when both are there and playable.
pub(super) fn party_streams(library: &Library, row: &RecordingRow) -> Option<[WavStream; 2]> {
    let stream = |role: &str| {
        let rel = format!("{}/{}-{role}.wav", crate::audio::PARTY_FOLDER, row.name);
        let path = library.file(&rel)?;
        let probe = crate::library::probe::probe_with(&path, false);
        if probe.status != crate::library::probe::Status::Ready {
            return None;
        }
        Some(WavStream {
            path,
            encoding: probe.encoding?,
            sample_rate: probe.sample_rate,
            data_offset: probe.data_offset,
            data_len: probe.data_len,
        })
    };
    Some([stream("caller")?, stream("agent")?])
}

/// A key for a stereo version: the recording's hash and its parties' files as they are now.
fn stereo_key(row: &RecordingRow, parties: &[WavStream; 2]) -> String {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    hash.update(row.sha256.as_deref().unwrap_or("").as_bytes());
    for party in parties {
        hash.update(party.data_len.to_le_bytes());
        if let Ok(modified) = std::fs::metadata(&party.path).and_then(|m| m.modified()) {
            let ms = modified
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            hash.update(ms.to_le_bytes());
        }
    }
    hash.finalize()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn no_dual_channel() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_audio",
        "no audio: this recording was not recorded dual-channel (channels = \"dual\" on its node)",
    )
}

/// Whether a request asks for the stereo version (`channels=dual`) or the mix (`mixed`, the
/// default).
fn wants_dual(query: &HashMap<String, String>) -> Result<bool, ApiError> {
    match query.get("channels").map(String::as_str) {
        None | Some("mixed") => Ok(false),
        Some("dual") => Ok(true),
        Some(_) => Err(bad("channels", "must be mixed or dual")),
    }
}

/// What an audio answer serves ranges of: the WAV stream, or an encoded file held in memory.
pub(super) enum AudioBody {
    Wav(WavStream),
    Ogg(Arc<Vec<u8>>),
    /// A WAV file served as it is on disk (a recording's stereo version).
    File {
        path: PathBuf,
        len: u64,
    },
}

impl AudioBody {
    fn len(&self) -> u64 {
        match self {
            AudioBody::Wav(w) => w.len(),
            AudioBody::Ogg(b) => b.len() as u64,
            AudioBody::File { len, .. } => *len,
        }
    }

    fn read_range(&self, start: u64, end: u64) -> std::io::Result<Vec<u8>> {
        match self {
            AudioBody::Wav(w) => w.read_range(start, end),
            AudioBody::Ogg(b) => {
                let end = end.min(b.len() as u64) as usize;
                Ok(b.get(start as usize..end).unwrap_or(&[]).to_vec())
            }
            AudioBody::File { path, len } => {
                use std::io::{Read, Seek, SeekFrom};
                let end = end.min(*len);
                if start >= end {
                    return Ok(Vec::new());
                }
                let mut file = std::fs::File::open(path)?;
                file.seek(SeekFrom::Start(start))?;
                let mut out = vec![0u8; (end - start) as usize];
                file.read_exact(&mut out)?;
                Ok(out)
            }
        }
    }

    fn content_type(&self) -> &'static str {
        match self {
            AudioBody::Wav(_) | AudioBody::File { .. } => "audio/wav",
            AudioBody::Ogg(_) => "audio/ogg",
        }
    }
}

/// Bytes `start..end` of `source`, read a chunk at a time as the client takes them, so a long
/// recording starts at once and never sits whole in memory.
fn chunked_body(source: Arc<AudioBody>, start: u64, end: u64) -> Body {
    const CHUNK: u64 = 256 * 1024;
    let chunks = futures_util::stream::unfold(start, move |pos| {
        let source = source.clone();
        async move {
            if pos >= end {
                return None;
            }
            let upto = (pos + CHUNK).min(end);
            let read = tokio::task::spawn_blocking(move || source.read_range(pos, upto)).await;
            let item = match read {
                Ok(Ok(bytes)) => Ok(bytes),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(std::io::Error::other(e)),
            };
            // After an error the stream ends (the client sees a short body).
            let next = if item.is_ok() { upto } else { end };
            Some((item, next))
        }
    });
    Body::from_stream(chunks)
}

pub(super) fn serve(
    stream: AudioBody,
    etag: String,
    headers: &HeaderMap,
    attachment: Option<String>,
) -> Result<Response, ApiError> {
    let len = stream.len();
    let content_type = stream.content_type();
    let range = parse_range(
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        len,
    );
    // A range made for another version of the file must not be stitched onto this one.
    let if_range_stale = headers
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v != etag);
    let range = if if_range_stale {
        RangeRequest::Full
    } else {
        range
    };
    let mut response = match range {
        RangeRequest::Unsatisfiable => {
            let mut r = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "bad_range",
                format!("the stream is {len} bytes long"),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(r);
        }
        RangeRequest::Full => {
            (StatusCode::OK, chunked_body(Arc::new(stream), 0, len)).into_response()
        }
        RangeRequest::Part { start, end } => {
            let body = chunked_body(Arc::new(stream), start, end + 1);
            let mut r = (StatusCode::PARTIAL_CONTENT, body).into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            r
        }
    };
    let served = match range {
        RangeRequest::Part { start, end } => end + 1 - start,
        _ => len,
    };
    let h = response.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(served));
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if let Some(name) = attachment {
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
    } else {
        h.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("inline"),
        );
    }
    Ok(response)
}

fn etag(row: &RecordingRow) -> String {
    format!(
        "\"{}\"",
        row.sha256
            .as_deref()
            .map(|h| &h[..h.len().min(32)])
            .unwrap_or("none")
    )
}

pub(super) async fn audio(
    State(state): State<AppState>,
    request: MediaRequest,
) -> Result<Response, ApiError> {
    audio_response(&state, request, LinkAction::Audio).await
}

pub(super) async fn download(
    State(state): State<AppState>,
    request: MediaRequest,
) -> Result<Response, ApiError> {
    audio_response(&state, request, LinkAction::Download).await
}

/// A request for a recording's bytes, by a signed-in caller or through a signed link.
pub(super) struct MediaRequest {
    id: String,
    query: HashMap<String, String>,
    client: String,
    caller: Option<Caller>,
    headers: HeaderMap,
}

impl FromRequestParts<AppState> for MediaRequest {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<MediaRequest, Response> {
        use axum::extract::OptionalFromRequestParts;
        let Path(id) =
            <Path<String> as FromRequestParts<AppState>>::from_request_parts(parts, state)
                .await
                .map_err(IntoResponse::into_response)?;
        let Query(query) =
            <Query<HashMap<String, String>> as FromRequestParts<AppState>>::from_request_parts(
                parts, state,
            )
            .await
            .map_err(IntoResponse::into_response)?;
        let ConnectInfoOrUnknown(client) =
            <ConnectInfoOrUnknown as FromRequestParts<AppState>>::from_request_parts(parts, state)
                .await
                .map_err(|never| match never {})?;
        let caller =
            <Caller as OptionalFromRequestParts<AppState>>::from_request_parts(parts, state)
                .await?;
        Ok(MediaRequest {
            id,
            query,
            client,
            caller,
            headers: parts.headers.clone(),
        })
    }
}

fn link_refused(error: links::LinkError) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, error.reason(), error.message())
}

/// Checks a signed link and returns the caller it stands for, auditing a refusal.
async fn link_caller(
    state: &AppState,
    request: &MediaRequest,
    action: LinkAction,
) -> Result<(Caller, Grant), ApiError> {
    let audit_action = action.audit_action();
    // Only a well-formed subject is written down; anything else is named as such.
    let subject = request
        .query
        .get("by")
        .filter(|by| links::valid_subject(by))
        .map_or("invalid", String::as_str);
    let mut entry = AuditEntry {
        client: request.client.clone(),
        recording_id: request.id.parse().ok(),
        detail: Some("signed link".into()),
        ..AuditEntry::new(format!("link:{subject}"), "", audit_action)
    };
    let now = chrono::Utc::now().timestamp();
    let verified = match entry.recording_id {
        Some(id) => links::verify(&state.access.keys, id, action, &request.query, now),
        None => Err(links::LinkError::Tampered),
    };
    let principal = match verified {
        Ok(ref grant) => {
            let mut conn = state.db.pool.acquire().await.map_err(internal)?;
            principal_for_subject(&mut conn, &grant.subject, grant.issued_ms)
                .await
                .map_err(internal)?
        }
        Err(_) => None,
    };
    match (verified, principal) {
        (Ok(grant), Some(principal)) => Ok((
            Caller {
                principal,
                client: request.client.clone(),
                session: None,
            },
            grant,
        )),
        (Ok(_), None) => {
            entry.outcome = "link_revoked".into();
            audit::record(&state.db, &entry).await.map_err(internal)?;
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "link_revoked",
                "the user or token this link was made for is no longer valid",
            ))
        }
        (Err(e), _) => {
            if let Some(wait) = super::auth::past_failure_share(state, &entry) {
                return Err(super::too_many(wait));
            }
            entry.outcome = e.reason().into();
            entry.tenant = refusal_tenant(state, entry.recording_id).await?;
            audit::record(&state.db, &entry).await.map_err(internal)?;
            Err(link_refused(e))
        }
    }
}

/// Whose admins see a refused link: the recording's tenant, or the operators' when the link
/// names no recording there is.
async fn refusal_tenant(state: &AppState, recording: Option<i64>) -> Result<String, ApiError> {
    let tenant: Option<(String,)> = match recording {
        Some(id) => sqlx::query_as("SELECT tenant FROM recordings WHERE id = $1")
            .bind(id)
            .fetch_optional(&state.db.pool)
            .await
            .map_err(internal)?,
        None => None,
    };
    Ok(tenant.map_or_else(|| state.access.operator_tenant.clone(), |(t,)| t))
}

/// The audio of a recording, inline or as an attachment named from its metadata. Audited
/// before a byte is sent; a single-use download link is spent in the same transaction.
async fn audio_response(
    state: &AppState,
    mut request: MediaRequest,
    action: LinkAction,
) -> Result<Response, ApiError> {
    let attachment = action == LinkAction::Download;
    let opus = match request.query.get("format").map(String::as_str) {
        None | Some("wav") => false,
        Some("opus") => true,
        Some(_) => return Err(bad("format", "must be wav or opus")),
    };
    let dual = wants_dual(&request.query)?;
    if dual && opus {
        return Err(bad(
            "channels",
            "the dual-channel version is served as WAV only",
        ));
    }
    let (caller, grant) = if links::is_link(&request.query) {
        let (caller, grant) = link_caller(state, &request, action).await?;
        (caller, Some(grant))
    } else {
        match request.caller.take() {
            Some(caller) => (caller, None),
            None => {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "sign in, send an API token, or use a signed link",
                ))
            }
        }
    };
    let (row, _, mut entry) = authorize(
        state,
        &caller,
        &request.id,
        action.policy_action(),
        action.audit_action(),
    )
    .await?;
    let stream = match playable(&state.library, &row) {
        Ok(stream) => stream,
        Err(e) => return Err(caller.refuse(state, entry, e).await),
    };
    let range = request
        .headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|r| r.chars().take(60).collect::<String>());
    let parties = if dual {
        match party_streams(&state.library, &row) {
            Some(parties) => Some(parties),
            None => return Err(caller.refuse(state, entry, no_dual_channel()).await),
        }
    } else {
        None
    };
    entry.detail = Some(
        [
            grant.as_ref().map(|_| "signed link".to_string()),
            opus.then(|| "opus".to_string()),
            dual.then(|| "dual-channel".to_string()),
            range,
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", "),
    )
    .filter(|d| !d.is_empty());
    let mut tx = AuditTx::begin(&state.db).await.map_err(internal)?;
    if let Some(grant) = grant.as_ref().filter(|_| attachment) {
        // Spent nonces matter only until their link would have expired anyway.
        sqlx::query("DELETE FROM used_grants WHERE expires_at_ms < $1")
            .bind(crate::access::now_ms())
            .execute(tx.conn())
            .await
            .map_err(internal)?;
        let spent = sqlx::query(
            "INSERT INTO used_grants (nonce, used_at_ms, expires_at_ms) VALUES ($1, $2, $3) ON CONFLICT (nonce) DO NOTHING",
        )
        .bind(&grant.nonce)
        .bind(crate::access::now_ms())
        .bind(grant.expires.saturating_mul(1000))
        .execute(tx.conn())
        .await
        .map_err(internal)?;
        if spent.rows_affected() == 0 {
            drop(tx);
            return Err(caller
                .refuse(state, entry, link_refused(links::LinkError::Used))
                .await);
        }
    }
    tx.commit(&entry).await.map_err(internal)?;
    let mut tag = etag(&row);
    let mut name = attachment.then(|| download_name(&row));
    let body = if opus {
        tag = format!("\"{}-opus\"", tag.trim_matches('"'));
        name = name.map(|n| n.replace(".wav", ".opus"));
        AudioBody::Ogg(opus_file(&state.library, &row, stream).await?)
    } else if let Some(parties) = parties {
        let key = stereo_key(&row, &parties);
        tag = format!("\"{}-dual-{key}\"", tag.trim_matches('"'));
        name = name.map(|n| n.replace(".wav", "-stereo.wav"));
        let [caller_side, agent_side] = parties;
        let call = row
            .call_id
            .clone()
            .unwrap_or_else(|| format!("file:{}", row.id));
        let file = state
            .library
            .call_audio
            .stereo(&call, row.id, &key, caller_side, agent_side)
            .await
            .map_err(internal)?;
        let len = std::fs::metadata(&file.path).map_err(internal)?.len();
        AudioBody::File {
            len,
            path: file.path,
        }
    } else {
        AudioBody::Wav(stream)
    };
    serve(body, tag, &request.headers, name)
}

/// `POST /api/recordings/{id}/download-url?expires_in=N`: a single-use signed download link.
pub(super) async fn download_url(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    create_link(&state, &caller, &id, &q, LinkAction::Download).await
}

/// `POST /api/recordings/{id}/play-url`: a short-lived signed audio link for a player.
pub(super) async fn play_url(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    create_link(&state, &caller, &id, &q, LinkAction::Audio).await
}

async fn create_link(
    state: &AppState,
    caller: &Caller,
    id: &str,
    query: &HashMap<String, String>,
    action: LinkAction,
) -> Result<Response, ApiError> {
    let access = &state.access;
    let requested = match query.get("expires_in") {
        None if action == LinkAction::Download => 3600,
        None => access.play_link_seconds,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 1 => n,
            _ => {
                return Err(bad(
                    "expires_in",
                    "must be a whole number of seconds, at least 1",
                ))
            }
        },
    };
    let cap = match action {
        LinkAction::Download => access.link_max_seconds,
        LinkAction::Audio => access.play_link_seconds,
    };
    let lifetime = requested.min(cap);
    let principal = &caller.principal;
    if let Err(wait) = access.limiter.take(
        &format!("grant:{}", principal.link_subject()),
        Instant::now(),
    ) {
        let mut entry = caller.entry("link_create");
        entry.recording_id = id.parse().ok();
        return Err(caller.refuse(state, entry, super::too_many(wait)).await);
    }
    let (row, _, mut entry) =
        authorize(state, caller, id, action.policy_action(), "link_create").await?;
    let issued_ms = chrono::Utc::now().timestamp_millis();
    let expires = issued_ms.div_euclid(1000) + lifetime;
    let grant = Grant {
        recording: row.id,
        action,
        subject: principal.link_subject(),
        issued_ms,
        expires,
        nonce: random_secret()[..32].to_string(),
    };
    entry.detail = Some(format!("{} link for {lifetime} s", action.as_str()));
    audit::record(&state.db, &entry).await.map_err(internal)?;
    let url = format!(
        "/api/recordings/{}/{}?{}",
        row.id,
        action.as_str(),
        links::sign(&access.keys, &grant)
    );
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "url": url,
            "expires_at": rfc3339(expires * 1000),
            "expires_in": lifetime,
            "single_use": action == LinkAction::Download,
        })),
    )
        .into_response())
}

/// The recording as Ogg Opus, encoded once per file version and kept in memory.
async fn opus_file(
    library: &Library,
    row: &RecordingRow,
    stream: WavStream,
) -> Result<Arc<Vec<u8>>, ApiError> {
    let sha256 = row.sha256.as_deref().unwrap_or_default();
    library
        .renderings
        .opus(row.id, sha256, stream)
        .await
        .map_err(|e| match e {
            RenderError::Audio(reason) => ApiError::new(
                StatusCode::NOT_FOUND,
                "no_audio",
                format!("no Opus audio: {reason}"),
            ),
            RenderError::Job(_) => internal(e),
        })
}

/// A download name from metadata only: date, node type and caller digits, never raw input.
fn download_name(row: &RecordingRow) -> String {
    let when = chrono::DateTime::from_timestamp_millis(row.started_at_ms)
        .map(|t| t.format("%Y%m%d-%H%M%S").to_string())
        .unwrap_or_else(|| "recording".into());
    let kind: String = row
        .node_type
        .as_deref()
        .unwrap_or("recording")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    let caller: String = row
        .caller_number
        .as_deref()
        .unwrap_or("")
        .chars()
        .filter(|c| c.is_ascii_digit())
        .take(20)
        .collect();
    if caller.is_empty() {
        format!("{when}-{kind}-{}.wav", row.id)
    } else {
        format!("{when}-{kind}-{caller}-{}.wav", row.id)
    }
}

/// The waveform size asked for (`points`, one of [`PEAK_POINTS`]; 800 when not said).
pub(super) fn peak_points(q: &HashMap<String, String>) -> Result<u32, ApiError> {
    match q.get("points") {
        None => Ok(800),
        Some(v) => match v.parse() {
            Ok(n) if PEAK_POINTS.contains(&n) => Ok(n),
            _ => {
                let allowed: Vec<String> = PEAK_POINTS.iter().map(u32::to_string).collect();
                Err(bad(
                    "points",
                    format!("must be one of {}", allowed.join(", ")),
                ))
            }
        },
    }
}

/// `GET /api/recordings/{id}/peaks?points=N`: min and max of each of N slices of the audio.
/// The waveform is part of the player: it needs the right to play.
pub(super) async fn peaks(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let points = peak_points(&q)?;
    let dual = wants_dual(&q)?;
    let (row, _, entry) = authorize(&state, &caller, &id, Action::Play, "peaks").await?;
    let stream = match playable(&state.library, &row) {
        Ok(stream) => stream,
        Err(e) => return Err(caller.refuse(&state, entry, e).await),
    };
    if dual {
        // Each party's waveform from its own recording: the caller's and the agent's.
        let Some([caller_side, agent_side]) = party_streams(&state.library, &row) else {
            return Err(caller.refuse(&state, entry, no_dual_channel()).await);
        };
        audit::record(&state.db, &entry).await.map_err(internal)?;
        let sha = row.sha256.as_deref().unwrap_or_default();
        let renderings = &state.library.renderings;
        let caller_peaks = renderings
            .peaks(row.id, &format!("{sha}-caller"), points, caller_side)
            .await
            .map_err(internal)?;
        let agent_peaks = renderings
            .peaks(row.id, &format!("{sha}-agent"), points, agent_side)
            .await
            .map_err(internal)?;
        let pairs = |p: &[[i16; 2]]| p.iter().map(|[lo, hi]| [*lo, *hi]).collect::<Vec<_>>();
        return Ok(Json(serde_json::json!({
            "id": row.id,
            "points": points,
            "duration_seconds": row.duration_ms as f64 / 1000.0,
            "channels": {"caller": pairs(&caller_peaks), "agent": pairs(&agent_peaks)},
        }))
        .into_response());
    }
    audit::record(&state.db, &entry).await.map_err(internal)?;
    let peaks = state
        .library
        .renderings
        .peaks(
            row.id,
            row.sha256.as_deref().unwrap_or_default(),
            points,
            stream,
        )
        .await
        .map_err(internal)?;
    Ok(Json(serde_json::json!({
        "id": row.id,
        "points": points,
        "duration_seconds": row.duration_ms as f64 / 1000.0,
        "peaks": peaks.iter().map(|[lo, hi]| [*lo, *hi]).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// `DELETE /api/recordings/{id}`: without `confirm`, answers a token bound to this recording;
/// with it, removes the file and keeps the row as a tombstone. The row is marked first, so a
/// crash in between leaves a tombstone whose file the next scan removes.
pub(super) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let (row, tenant, mut entry) =
        authorize(&state, &caller, &id, Action::Delete, "delete").await?;
    if let Some(reason) = &row.hold_reason {
        let error = ApiError::new(
            StatusCode::CONFLICT,
            "on_hold",
            format!("the recording is on legal hold ({reason}): an admin must release it first"),
        );
        return Err(caller.refuse(&state, entry, error).await);
    }
    if row.status == "deleted" {
        let error = ApiError::new(
            StatusCode::GONE,
            "deleted",
            "the recording was already deleted",
        );
        return Err(caller.refuse(&state, entry, error).await);
    }
    if row.status == "recording" {
        let error = ApiError::new(
            StatusCode::CONFLICT,
            "in_progress",
            "the call is still being recorded",
        );
        return Err(caller.refuse(&state, entry, error).await);
    }
    let Some(token) = q.get("confirm") else {
        entry.detail = Some("confirmation issued".into());
        audit::record(&state.db, &entry).await.map_err(internal)?;
        let token = crate::access::confirmations::issue(
            &state.db,
            row.id,
            crate::access::now_ms(),
            CONFIRM_TTL.as_millis() as i64,
        )
        .await
        .map_err(internal)?;
        return Ok((
            StatusCode::ACCEPTED,
            Json(serde_json::json!({
                "confirm_token": token,
                "expires_in_seconds": CONFIRM_TTL.as_secs(),
                "recording": { "id": row.id, "name": row.name },
                "confirm_with": format!("DELETE /api/recordings/{}?confirm={token}", row.id),
            })),
        )
            .into_response());
    };
    let redeemed =
        crate::access::confirmations::redeem(&state.db, token, row.id, crate::access::now_ms())
            .await
            .map_err(internal)?;
    if let Err(reason) = redeemed {
        return Err(caller.refuse(&state, entry, bad("confirm", reason)).await);
    }
    entry.detail = Some("deleted".into());
    let mut tx = AuditTx::begin(&state.db).await.map_err(internal)?;
    sqlx::query("UPDATE recordings SET status = 'deleted', reason = 'deleted through the API', deleted_at_ms = $1, deleted_by = $2 WHERE id = $3")
        .bind(chrono::Utc::now().timestamp_millis())
        .bind(caller.principal.actor())
        .bind(row.id)
        .execute(tx.conn())
        .await
        .map_err(internal)?;
    tx.commit(&entry).await.map_err(internal)?;
    if let Some(file) = state.library.entry(&row.path) {
        if let Err(e) = std::fs::remove_file(&file) {
            tracing::warn!(recording = row.id, error = %e, "file not removed; the next scan retries");
        }
    }
    // Its transcript holds its words: it goes too.
    crate::library::transcripts::remove(&state.db, row.id)
        .await
        .map_err(internal)?;
    // Each party's own recording (dual-channel) and a sidecar transcript go with it.
    let sidecar = std::path::Path::new(&row.path)
        .with_extension("vtt")
        .to_string_lossy()
        .into_owned();
    let parties = ["caller", "agent"]
        .map(|role| format!("{}/{}-{role}.wav", crate::audio::PARTY_FOLDER, row.name));
    for rel in parties.into_iter().chain(std::iter::once(sidecar)) {
        if let Some(file) = state.library.entry(&rel) {
            match std::fs::remove_file(&file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(recording = row.id, error = %e, "a file of the recording not removed")
                }
            }
        }
    }
    // Deleted audio leaves no rendering of itself in memory either.
    state.library.renderings.forget(row.id);
    if let Some(call_id) = &row.call_id {
        // The assembled call held this recording's audio.
        state.library.call_audio.forget_call(call_id);
    }
    let row = fetch(&state.db, row.id).await?.ok_or_else(not_found)?;
    Ok(Json(row.json(&caller.principal, tenant)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Finding 13: on SQLite a caller-name word search was `LIKE`, which SQLite cannot answer
    /// from an index (it is case-insensitive): every row of `recording_words` was read.
    #[tokio::test]
    async fn word_searches_are_index_range_scans() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}/plan.db?mode=rwc", dir.path().display());
        let db = Database::open(&url).await.expect("db");
        for (word, id) in [("alice", 1), ("alicia", 2), ("bob", 3), ("al", 4)] {
            sqlx::query("INSERT INTO recording_words (word, recording_id) VALUES ($1, $2)")
                .bind(word)
                .bind(id)
                .execute(&db.pool)
                .await
                .expect("insert");
        }
        let mut binds = Vec::new();
        let clause = word_prefix_clause(db.backend, "ali", &mut binds);
        let sql = format!(
            "SELECT recording_id FROM recording_words WHERE {clause} ORDER BY recording_id"
        );
        let explain = format!("EXPLAIN QUERY PLAN {sql}");
        let mut query = sqlx::query_as::<_, (i64,)>(&sql);
        let mut plan = sqlx::query_as::<_, (i64, i64, i64, String)>(&explain);
        for bind in &binds {
            if let Bind::Text(text) = bind {
                query = query.bind(text.clone());
                plan = plan.bind(text.clone());
            }
        }
        let found: Vec<i64> = query
            .fetch_all(&db.pool)
            .await
            .expect("search")
            .into_iter()
            .map(|(id,)| id)
            .collect();
        assert_eq!(found, vec![1, 2]);
        let plan: Vec<String> = plan
            .fetch_all(&db.pool)
            .await
            .expect("plan")
            .into_iter()
            .map(|row| row.3)
            .collect();
        assert!(
            plan.iter()
                .any(|step| step.starts_with("SEARCH recording_words"))
                && !plan
                    .iter()
                    .any(|step| step.starts_with("SCAN recording_words")),
            "{plan:?}"
        );
    }

    #[test]
    fn download_names_come_from_metadata_only() {
        let row = RecordingRow {
            id: 42,
            path: "../../x".into(),
            name: "evil\"; rm -rf".into(),
            format: "wav".into(),
            status: "ready".into(),
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
            node_type: Some("transfer\"\r\n".into()),
            direction: None,
            caller_name: None,
            caller_number: Some("+1 (555) 0100\";".into()),
            callee: None,
            started_at_ms: 1_795_300_930_000,
            private: 0,
            consent: "unknown".into(),
            compliance: "permitted".into(),
            deleted_at_ms: None,
            asterisk_started_at_ms: None,
            hold_reason: None,
        };
        assert_eq!(
            download_name(&row),
            "20261121-224210-transfer-15550100-42.wav"
        );
    }
}
