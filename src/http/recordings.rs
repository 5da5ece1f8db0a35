//! The recordings library over HTTP: the paginated, filtered list, one recording's metadata,
//! inline audio with exact HTTP ranges, download as an attachment, waveform peaks, and delete
//! in two steps.
//!
//! IDs in URLs, never paths; every file opened is checked to stay inside the recordings folder.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;

use super::{ApiError, AppState};
use crate::audio::serve::{parse_range, RangeRequest, WavStream};
use crate::library::probe::Encoding;
use crate::library::{Database, Indexer};

/// How long a delete confirmation token stays valid.
const CONFIRM_TTL: Duration = Duration::from_secs(120);
const MAX_LIMIT: i64 = 200;

/// Delete confirmations: each token is bound to one recording, valid for `CONFIRM_TTL`, and
/// used once.
#[derive(Default)]
struct Confirmations {
    tokens: HashMap<String, (i64, Instant)>,
}

impl Confirmations {
    fn issue(&mut self, recording: i64, now: Instant) -> String {
        self.tokens.retain(|_, (_, expiry)| *expiry > now);
        let token = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        self.tokens
            .insert(token.clone(), (recording, now + CONFIRM_TTL));
        token
    }

    /// Consumes `token` for `recording`, or says why it cannot be used.
    fn redeem(&mut self, token: &str, recording: i64, now: Instant) -> Result<(), &'static str> {
        match self.tokens.remove(token) {
            Some((bound, _)) if bound != recording => Err("this token confirms another recording"),
            Some((_, expiry)) if expiry <= now => {
                Err("the confirmation expired: ask for a new one")
            }
            Some(_) => Ok(()),
            None => Err("unknown or already used confirmation token"),
        }
    }
}

/// What the library endpoints share.
pub struct Library {
    pub indexer: Arc<Indexer>,
    root: PathBuf,
    confirmations: Mutex<Confirmations>,
    /// Waveform peaks, computed once per (id, hash, points).
    peaks: Mutex<HashMap<PeaksKey, Arc<Peaks>>>,
    /// Ogg Opus renderings, by (recording id, SHA-256).
    opus: Mutex<HashMap<FileVersion, Arc<Vec<u8>>>>,
}

/// (recording id, its SHA-256): a changed file gets new renderings.
type FileVersion = (i64, String);
/// (recording id, its SHA-256, number of points): a changed file gets new peaks.
type PeaksKey = (i64, String, u32);
/// Min and max of each slice.
type Peaks = Vec<[i16; 2]>;

impl Library {
    pub fn new(indexer: Arc<Indexer>) -> Library {
        let root = indexer.root().to_path_buf();
        Library {
            indexer,
            root,
            confirmations: Mutex::new(Confirmations::default()),
            peaks: Mutex::new(HashMap::new()),
            opus: Mutex::new(HashMap::new()),
        }
    }

    /// The file of a row, refusing anything that resolves outside the folder.
    fn file(&self, rel: &str) -> Option<PathBuf> {
        let root = self.root.canonicalize().ok()?;
        let path = root.join(rel).canonicalize().ok()?;
        path.starts_with(&root).then_some(path)
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct RecordingRow {
    id: i64,
    path: String,
    name: String,
    format: String,
    status: String,
    reason: Option<String>,
    size_bytes: i64,
    duration_ms: i64,
    encoding: Option<String>,
    sample_rate: i64,
    data_offset: i64,
    data_len: i64,
    sha256: Option<String>,
    call_id: Option<String>,
    tenant: String,
    flow: Option<String>,
    node: Option<String>,
    node_type: Option<String>,
    direction: Option<String>,
    caller_name: Option<String>,
    caller_number: Option<String>,
    callee: Option<String>,
    started_at_ms: i64,
    private: i64,
    consent: String,
    compliance: String,
    deleted_at_ms: Option<i64>,
}

const COLUMNS: &str = "id, path, name, format, status, reason, size_bytes, duration_ms, encoding, sample_rate, \
    data_offset, data_len, sha256, call_id, tenant, flow, node, node_type, direction, caller_name, caller_number, \
    callee, started_at_ms, private, consent, compliance, deleted_at_ms";

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

impl RecordingRow {
    fn json(&self) -> serde_json::Value {
        let base = format!("/api/recordings/{}", self.id);
        let playable = self.status == "ready";
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
            "playable": playable,
            "links": if playable {
                serde_json::json!({
                    "audio": format!("{base}/audio"),
                    "download": format!("{base}/download"),
                    "peaks": format!("{base}/peaks"),
                })
            } else {
                serde_json::json!({})
            },
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

fn bad(param: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "bad_request",
        format!("{param}: {message}"),
    )
}

fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such recording")
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "library request failed");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the library could not answer",
    )
}

/// A value bound into a dynamically built query.
enum Bind {
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

const LIST_PARAMS: [&str; 13] = [
    "limit",
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

/// `GET /api/recordings`: keyset pagination, newest first or longest first, with filters.
pub(super) async fn list(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
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
    let mut clauses: Vec<String> = Vec::new();
    let mut binds: Vec<Bind> = Vec::new();
    let mut next = 1;
    let mut param = |binds: &mut Vec<Bind>, value: Bind| -> String {
        binds.push(value);
        let p = format!("${next}");
        next += 1;
        p
    };
    // Prefix matches are range scans on their indexes.
    let like_escape = |v: &str| {
        v.replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
            + "%"
    };
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
        if words.is_empty() || v.len() > 100 {
            return Err(bad(
                "name",
                "must hold a word of letters or digits, at most 100 characters",
            ));
        }
        // Every word typed must start a word of the caller's name.
        for word in words {
            let p = param(&mut binds, Bind::Text(like_escape(&word)));
            clauses.push(format!(
                "id IN (SELECT recording_id FROM recording_words WHERE word LIKE {p} ESCAPE '\\')"
            ));
        }
    }
    let allowed: [(&str, &[&str]); 4] = [
        (
            "node_type",
            &["transfer", "queue", "hunt_group", "voicemail", "outbound"],
        ),
        ("direction", &["inbound", "outbound"]),
        (
            "status",
            &[
                "recording",
                "ready",
                "empty",
                "unreadable",
                "not_playable",
                "missing",
                "deleted",
            ],
        ),
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
    Ok(Json(serde_json::json!({
        "recordings": rows.iter().map(RecordingRow::json).collect::<Vec<_>>(),
        "next_cursor": next_cursor,
    }))
    .into_response())
}

async fn fetch(db: &Database, id: &str) -> Result<RecordingRow, ApiError> {
    let id: i64 = id.parse().map_err(|_| not_found())?;
    sqlx::query_as::<_, RecordingRow>(&format!("SELECT {COLUMNS} FROM recordings WHERE id = $1"))
        .bind(id)
        .fetch_optional(&db.pool)
        .await
        .map_err(internal)?
        .ok_or_else(not_found)
}

pub(super) async fn get_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(fetch(&state.db, &id).await?.json()).into_response())
}

pub(super) async fn scan_state(State(state): State<AppState>) -> Response {
    Json(state.library.indexer.state.json()).into_response()
}

/// The audio of a row, or why there is none.
fn playable(library: &Library, row: &RecordingRow) -> Result<WavStream, ApiError> {
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

/// What an audio answer serves ranges of: the WAV stream, or an encoded file held in memory.
enum AudioBody {
    Wav(WavStream),
    Ogg(Arc<Vec<u8>>),
}

impl AudioBody {
    fn len(&self) -> u64 {
        match self {
            AudioBody::Wav(w) => w.len(),
            AudioBody::Ogg(b) => b.len() as u64,
        }
    }

    fn read_range(&self, start: u64, end: u64) -> std::io::Result<Vec<u8>> {
        match self {
            AudioBody::Wav(w) => w.read_range(start, end),
            AudioBody::Ogg(b) => {
                let end = end.min(b.len() as u64) as usize;
                Ok(b.get(start as usize..end).unwrap_or(&[]).to_vec())
            }
        }
    }

    fn content_type(&self) -> &'static str {
        match self {
            AudioBody::Wav(_) => "audio/wav",
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

fn serve(
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
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    audio_response(&state, &id, headers, &q, false).await
}

/// The audio of `id`, inline or as an attachment named from its metadata.
async fn audio_response(
    state: &AppState,
    id: &str,
    headers: HeaderMap,
    query: &HashMap<String, String>,
    attachment: bool,
) -> Result<Response, ApiError> {
    let opus = match query.get("format").map(String::as_str) {
        None | Some("wav") => false,
        Some("opus") => true,
        Some(_) => return Err(bad("format", "must be wav or opus")),
    };
    let row = fetch(&state.db, id).await?;
    let stream = playable(&state.library, &row)?;
    let mut tag = etag(&row);
    let mut name = attachment.then(|| download_name(&row));
    let body = if opus {
        tag = format!("\"{}-opus\"", tag.trim_matches('"'));
        name = name.map(|n| n.replace(".wav", ".opus"));
        AudioBody::Ogg(opus_file(&state.library, &row, stream).await?)
    } else {
        AudioBody::Wav(stream)
    };
    serve(body, tag, &headers, name)
}

/// The recording as Ogg Opus, encoded once per file version and kept in memory.
async fn opus_file(
    library: &Library,
    row: &RecordingRow,
    stream: WavStream,
) -> Result<Arc<Vec<u8>>, ApiError> {
    let key = (row.id, row.sha256.clone().unwrap_or_default());
    if let Some(cached) = library
        .opus
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key)
    {
        return Ok(cached.clone());
    }
    let rate = stream.sample_rate;
    let encoded = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
        let samples = stream.samples_i16().map_err(|e| e.to_string())?;
        crate::audio::opus::encode_ogg_opus(&samples, rate).map_err(|e| e.to_string())
    })
    .await
    .map_err(internal)?
    .map_err(|e| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_audio",
            format!("no Opus audio: {e}"),
        )
    })?;
    let encoded = Arc::new(encoded);
    let mut cache = library.opus.lock().unwrap_or_else(|p| p.into_inner());
    if cache.len() >= 64 {
        cache.clear();
    }
    cache.insert(key, encoded.clone());
    Ok(encoded)
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

pub(super) async fn download(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    audio_response(&state, &id, headers, &q, true).await
}

/// `GET /api/recordings/{id}/peaks?points=N`: min and max of each of N slices of the audio.
pub(super) async fn peaks(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let points: u32 = match q.get("points") {
        None => 800,
        Some(v) => match v.parse() {
            Ok(n) if (1..=10_000).contains(&n) => n,
            _ => return Err(bad("points", "must be a whole number from 1 to 10000")),
        },
    };
    let row = fetch(&state.db, &id).await?;
    let stream = playable(&state.library, &row)?;
    let key = (row.id, row.sha256.clone().unwrap_or_default(), points);
    let cached = state
        .library
        .peaks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key)
        .cloned();
    let peaks = match cached {
        Some(p) => p,
        None => {
            let computed =
                tokio::task::spawn_blocking(move || -> std::io::Result<Vec<[i16; 2]>> {
                    let samples = stream.samples_i16()?;
                    let n = points as usize;
                    Ok((0..n)
                        .map(|i| {
                            let from = i * samples.len() / n;
                            let to = ((i + 1) * samples.len() / n)
                                .max(from + 1)
                                .min(samples.len());
                            let slice = samples.get(from..to).unwrap_or(&[]);
                            [
                                slice.iter().copied().min().unwrap_or(0),
                                slice.iter().copied().max().unwrap_or(0),
                            ]
                        })
                        .collect())
                })
                .await
                .map_err(internal)?
                .map_err(internal)?;
            let computed = Arc::new(computed);
            let mut cache = state
                .library
                .peaks
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if cache.len() > 2000 {
                cache.clear();
            }
            cache.insert(key, computed.clone());
            computed
        }
    };
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
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let row = fetch(&state.db, &id).await?;
    if row.status == "deleted" {
        return Err(ApiError::new(
            StatusCode::GONE,
            "deleted",
            "the recording was already deleted",
        ));
    }
    if row.status == "recording" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "in_progress",
            "the call is still being recorded",
        ));
    }
    let Some(token) = q.get("confirm") else {
        let token = state
            .library
            .confirmations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .issue(row.id, Instant::now());
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
    state
        .library
        .confirmations
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .redeem(token, row.id, Instant::now())
        .map_err(|reason| bad("confirm", reason))?;
    sqlx::query("UPDATE recordings SET status = 'deleted', reason = 'deleted through the API', deleted_at_ms = $1, deleted_by = $2 WHERE id = $3")
        .bind(chrono::Utc::now().timestamp_millis())
        .bind("api")
        .bind(row.id)
        .execute(&state.db.pool)
        .await
        .map_err(internal)?;
    if let Some(file) = state.library.file(&row.path) {
        if let Err(e) = std::fs::remove_file(&file) {
            tracing::warn!(recording = row.id, error = %e, "file not removed; the next scan retries");
        }
    }
    state
        .library
        .peaks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|(id, _, _), _| *id != row.id);
    let row = fetch(&state.db, &id).await?;
    Ok(Json(row.json()).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmations_are_bound_single_use_and_expire() {
        let mut c = Confirmations::default();
        let t0 = Instant::now();
        let token = c.issue(7, t0);
        assert_eq!(
            c.redeem(&token, 8, t0),
            Err("this token confirms another recording")
        );
        // A token tried on the wrong recording is spent.
        assert_eq!(
            c.redeem(&token, 7, t0),
            Err("unknown or already used confirmation token")
        );
        let token = c.issue(7, t0);
        assert_eq!(
            c.redeem(&token, 7, t0 + CONFIRM_TTL),
            Err("the confirmation expired: ask for a new one")
        );
        let token = c.issue(7, t0);
        assert_eq!(
            c.redeem(&token, 7, t0 + CONFIRM_TTL - Duration::from_secs(1)),
            Ok(())
        );
        assert!(c.redeem(&token, 7, t0).is_err(), "single use");
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
        };
        assert_eq!(
            download_name(&row),
            "20261121-224210-transfer-15550100-42.wav"
        );
    }
}
