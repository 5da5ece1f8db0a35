//! The routes' parameters, one struct each: the handlers extract these very structs and the
//! OpenAPI document describes them, so the two cannot disagree. Query parameters are read and
//! checked here with the API's errors (a JSON 400 naming the parameter), in the order the
//! handlers always checked them.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};

use super::ApiError;
use crate::library::search::{Filter, Sort, MAX_NAME_WORDS};
use crate::library::status::NamedValue;
use crate::library::{Direction, NodeType, RecordingFormat, RecordingStatus};
use crate::playback::renderings::PEAK_POINTS;

/// A struct of query parameters, read from the query string and checked.
pub(super) trait FromQuery: Sized {
    fn from_query(query: &HashMap<String, String>) -> Result<Self, ApiError>;
}

/// Extracts `T` from the query string; a bad or unknown parameter is refused with the API's
/// error. A handler that must first say who may ask takes `Result<Params<T>, ApiError>`.
pub(super) struct Params<T>(pub(super) T);

impl<S: Send + Sync, T: FromQuery> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Params<T>, ApiError> {
        let Query(query) = Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| bad("query", e.body_text()))?;
        T::from_query(&query).map(Params)
    }
}

/// A bad parameter: 400, `<param>: <what it must be>`.
pub(super) fn bad(param: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "bad_request",
        format!("{param}: {message}"),
    )
}

/// A parameter that must be one value of a list (node type, direction, status, format).
fn one_of<T: NamedValue>(q: &HashMap<String, String>, param: &str) -> Result<Option<T>, ApiError> {
    q.get(param)
        .map(|v| {
            T::parse(v)
                .ok_or_else(|| bad(param, format!("must be one of: {}", T::names().join(", "))))
        })
        .transpose()
}

/// A time given as RFC 3339 or as milliseconds since 1970.
pub(super) fn parse_time(param: &str, value: &str) -> Result<i64, ApiError> {
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

/// `{id}` of a recording's routes, as the handlers take it: kept as text, so an id that is no
/// number answers as a recording not found (404), like one of another tenant.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct RecordingId {
    /// The recording's id.
    #[param(value_type = i64)]
    pub(super) id: String,
}

/// `{id}` of a call's routes.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct CallId {
    /// The call's id (its caller's channel id).
    pub(super) id: String,
}

/// `{id}` of a user.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct UserId {
    /// The user's id.
    pub(super) id: i64,
}

/// `{id}` of a webhook endpoint.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct WebhookId {
    /// The endpoint's id.
    pub(super) id: i64,
}

/// `{id}` of a webhook endpoint and `{delivery}` of one of its deliveries.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct WebhookDelivery {
    /// The endpoint's id.
    pub(super) id: i64,
    /// The delivery's id.
    pub(super) delivery: i64,
}

/// The `Range` header of the audio routes (and `If-Range`, which keeps a range made for another
/// version of the file from being stitched onto this one).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub(super) struct RangeHeader {
    /// One `bytes=` range; another unit is ignored (the whole body is answered).
    #[param(rename = "Range")]
    pub(super) range: Option<String>,
    #[param(ignore)]
    pub(super) if_range: Option<String>,
}

impl RangeHeader {
    pub(super) fn from_headers(headers: &HeaderMap) -> RangeHeader {
        let text = |name| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        RangeHeader {
            range: text(header::RANGE),
            if_range: text(header::IF_RANGE),
        }
    }

    /// The range as the audit log notes it (at most 60 characters).
    pub(super) fn detail(&self) -> Option<String> {
        self.range.as_ref().map(|r| r.chars().take(60).collect())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RangeHeader {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<RangeHeader, Self::Rejection> {
        Ok(RangeHeader::from_headers(&parts.headers))
    }
}

/// `?points=` of the peaks routes.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct PeakPoints {
    /// 100, 200, 400, 800 (the default), 1600 or 3200.
    #[param(value_type = Option<u32>)]
    pub(super) points: u32,
}

impl FromQuery for PeakPoints {
    fn from_query(q: &HashMap<String, String>) -> Result<PeakPoints, ApiError> {
        let points = match q.get("points") {
            None => 800,
            Some(v) => match v.parse() {
                Ok(n) if PEAK_POINTS.contains(&n) => n,
                _ => {
                    let allowed: Vec<String> = PEAK_POINTS.iter().map(u32::to_string).collect();
                    return Err(bad(
                        "points",
                        format!("must be one of {}", allowed.join(", ")),
                    ));
                }
            },
        };
        Ok(PeakPoints { points })
    }
}

/// `mixed` or `dual`, as `?channels=` asks.
fn wants_dual(q: &HashMap<String, String>) -> Result<bool, ApiError> {
    match q.get("channels").map(String::as_str) {
        None | Some("mixed") => Ok(false),
        Some("dual") => Ok(true),
        Some(_) => Err(bad("channels", "must be mixed or dual")),
    }
}

/// `?channels=` of a recording's peaks.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct PeakChannels {
    /// `dual`: a waveform per party (`channels: {caller, agent}`)
    #[param(value_type = Option<String>, rename = "channels")]
    pub(super) dual: bool,
}

impl FromQuery for PeakChannels {
    fn from_query(q: &HashMap<String, String>) -> Result<PeakChannels, ApiError> {
        Ok(PeakChannels {
            dual: wants_dual(q)?,
        })
    }
}

/// `?expires_in=` of the link routes.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct LinkLifetime {
    /// seconds, at least 1: a download link lasts 3600 unless asked, at most link_max_seconds; a
    /// player's link play_link_seconds at most
    #[param(value_type = Option<u32>, minimum = 1)]
    pub(super) expires_in: Option<i64>,
}

impl FromQuery for LinkLifetime {
    fn from_query(q: &HashMap<String, String>) -> Result<LinkLifetime, ApiError> {
        let expires_in = match q.get("expires_in") {
            None => None,
            Some(v) => match v.parse::<i64>() {
                Ok(n) if n >= 1 => Some(n),
                _ => {
                    return Err(bad(
                        "expires_in",
                        "must be a whole number of seconds, at least 1",
                    ))
                }
            },
        };
        Ok(LinkLifetime { expires_in })
    }
}

/// `?limit=` of the voicemail view.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct VoicemailQuery {
    /// 1 to 500 (100): the newest messages shown.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    pub(super) limit: i64,
}

impl FromQuery for VoicemailQuery {
    fn from_query(q: &HashMap<String, String>) -> Result<VoicemailQuery, ApiError> {
        only_known(q, &["limit"], bad)?;
        let limit = match q.get("limit") {
            None => 100,
            Some(v) => match v.parse::<i64>() {
                Ok(n) if (1..=500).contains(&n) => n,
                _ => return Err(bad("limit", "must be a whole number from 1 to 500")),
            },
        };
        Ok(VoicemailQuery { limit })
    }
}

/// The most recordings one ZIP export holds.
pub(super) const BUNDLE_MAX: usize = 500;

/// `?ids=` or `?calls=` of the ZIP export.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct BundleQuery {
    /// recording ids, comma-separated
    #[param(value_type = Option<String>)]
    pub(super) ids: Vec<i64>,
    /// call ids, comma-separated: each call's recordings
    #[param(value_type = Option<String>)]
    pub(super) calls: Vec<String>,
}

impl FromQuery for BundleQuery {
    fn from_query(q: &HashMap<String, String>) -> Result<BundleQuery, ApiError> {
        if let Some(unknown) = q.keys().find(|k| *k != "ids" && *k != "calls") {
            return Err(bad(unknown, "not a parameter of the export: ids or calls"));
        }
        let list = |param: &str| -> Vec<String> {
            q.get(param)
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()
        };
        let ids = list("ids")
            .iter()
            .map(|id| {
                id.parse::<i64>()
                    .map_err(|_| bad("ids", format!("{id:?} is not a recording id")))
            })
            .collect::<Result<Vec<i64>, ApiError>>()?;
        let calls = list("calls");
        if ids.is_empty() && calls.is_empty() {
            return Err(bad(
                "ids",
                "name the recordings (ids) or calls (calls) to export",
            ));
        }
        if ids.len() > BUNDLE_MAX || calls.len() > BUNDLE_MAX {
            return Err(bad(
                "ids",
                format!("at most {BUNDLE_MAX} recordings in one archive"),
            ));
        }
        Ok(BundleQuery { ids, calls })
    }
}

/// `?confirm=` of a delete: the second step's token.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct DeleteConfirmation {
    /// the token of the first step
    pub(super) confirm: Option<String>,
}

impl FromQuery for DeleteConfirmation {
    fn from_query(q: &HashMap<String, String>) -> Result<DeleteConfirmation, ApiError> {
        Ok(DeleteConfirmation {
            confirm: q.get("confirm").cloned(),
        })
    }
}

/// What an audio route serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AudioFormat {
    Wav,
    Opus,
    Mp3,
}

/// The audio routes' choices.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AudioQuery {
    /// `wav` (the default: PCM WAV, transcoded when stored as mu-law or A-law), `opus` (Ogg
    /// Opus, RFC 7845) or `mp3` (LAME, 32 kbit/s).
    #[param(value_type = Option<String>)]
    pub(super) format: AudioFormat,
    /// `mixed` (the default: the bridge's recording) or `dual` (stereo, the caller left and the
    /// agent right, for a recording made with channels = "dual"; WAV only).
    #[param(value_type = Option<String>, rename = "channels")]
    pub(super) dual: bool,
}

impl FromQuery for AudioQuery {
    fn from_query(q: &HashMap<String, String>) -> Result<AudioQuery, ApiError> {
        let format = match q.get("format").map(String::as_str) {
            None | Some("wav") => AudioFormat::Wav,
            Some("opus") => AudioFormat::Opus,
            Some("mp3") => AudioFormat::Mp3,
            Some(_) => return Err(bad("format", "must be wav, opus or mp3")),
        };
        let dual = wants_dual(q)?;
        if dual && format != AudioFormat::Wav {
            return Err(bad(
                "channels",
                "the dual-channel version is served as WAV only",
            ));
        }
        Ok(AudioQuery { format, dual })
    }
}

/// Refuses a parameter not in `known`, naming the ones there are.
fn only_known(
    q: &HashMap<String, String>,
    known: &[&str],
    refuse: impl Fn(&str, String) -> ApiError,
) -> Result<(), ApiError> {
    match q.keys().find(|k| !known.contains(&k.as_str())) {
        Some(key) => Err(refuse(
            key,
            format!("unknown parameter (expected one of: {})", known.join(", ")),
        )),
        None => Ok(()),
    }
}

const AUDIT_PARAMS: [&str; 6] = ["before", "limit", "actor", "action", "recording", "outcome"];

/// The audit log's filters; any other parameter is refused.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditQuery {
    /// A sequence number: events older than it (`next_before` of the previous page).
    pub(super) before: Option<i64>,
    /// 1 to 1000 (100).
    #[param(value_type = Option<u32>)]
    pub(super) limit: i64,
    /// e.g. `user:alice` or `token:3:alice`.
    pub(super) actor: Option<String>,
    /// list, metadata, stream, peaks, download, link_create, delete, set_status, login, logout,
    /// flow_change, setting_change, role_change, user_create, call_place...
    pub(super) action: Option<String>,
    /// A recording's id.
    pub(super) recording: Option<i64>,
    /// `allowed` or the refusal's reason.
    pub(super) outcome: Option<String>,
}

impl FromQuery for AuditQuery {
    fn from_query(q: &HashMap<String, String>) -> Result<AuditQuery, ApiError> {
        // The audit log's errors say `<param>: <what>` as one message.
        let refuse =
            |message: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message);
        only_known(q, &AUDIT_PARAMS, |key, message| {
            refuse(format!("{key}: {message}"))
        })?;
        let limit: i64 = match q.get("limit") {
            None => 100,
            Some(v) => v
                .parse()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| refuse("limit: a whole number from 1 to 1000".into()))?,
        };
        let whole = |key: &str| -> Result<Option<i64>, ApiError> {
            q.get(key)
                .map(|v| {
                    v.parse()
                        .map_err(|_| refuse(format!("{key}: a whole number")))
                })
                .transpose()
        };
        Ok(AuditQuery {
            recording: whole("recording")?,
            before: whole("before")?,
            limit,
            actor: q.get("actor").cloned(),
            action: q.get("action").cloned(),
            outcome: q.get("outcome").cloned(),
        })
    }
}

/// The most rows a list page holds.
pub(super) const MAX_LIMIT: i64 = 200;

pub(super) const LIST_PARAMS: [&str; 19] = [
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
    "linkedid",
    "channel",
    "q",
    "min_silence",
    "min_agent_share",
];

/// The list's filters and pages; any other parameter is refused.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// Page size, 1 to 200 (50).
    #[param(minimum = 1, maximum = 200, value_type = Option<u32>)]
    pub(super) limit: i64,
    /// `next_cursor` of the previous page.
    pub(super) cursor: Option<String>,
    /// `newest` (the default) or `longest`.
    #[param(value_type = Option<String>)]
    pub(super) sort: Sort,
    /// `call`: one row per call.
    #[param(value_type = Option<String>, rename = "group")]
    pub(super) by_call: bool,
    /// The caller's number starts with this.
    caller: Option<String>,
    /// The callee starts with this.
    callee: Option<String>,
    /// Words of the caller's name: each word given must start one, any case.
    #[param(value_type = Option<String>)]
    name: Vec<String>,
    node_type: Option<NodeType>,
    direction: Option<Direction>,
    status: Option<RecordingStatus>,
    format: Option<RecordingFormat>,
    /// Started at or after (RFC 3339 or ms since 1970).
    #[param(value_type = Option<String>)]
    from: Option<i64>,
    /// Started before (RFC 3339 or ms since 1970).
    #[param(value_type = Option<String>)]
    to: Option<i64>,
    /// Seconds at least.
    min_duration: Option<f64>,
    /// Asterisk's linkedid of the call, exactly (what CDR and CEL records carry).
    linkedid: Option<String>,
    /// A channel's uniqueid, exactly: the caller's (the call's id) or the answering party's.
    channel: Option<String>,
    /// Words said in the call: recordings whose transcript holds every one (any case), that the
    /// caller may play; each row then says where (`match`: start, speaker, snippet).
    #[param(rename = "q", value_type = Option<String>)]
    pub(super) said: Vec<String>,
    /// Seconds at least of the longest silence (nobody talking), from the talk-time figures.
    min_silence: Option<f64>,
    /// The agent's share of the talking at least, in percent (dual-channel recordings).
    #[param(value_type = Option<u8>, minimum = 0, maximum = 100)]
    min_agent_share: Option<i64>,
    /// What was asked, as the audit log notes it.
    #[param(ignore)]
    pub(super) asked: HashMap<String, String>,
}

impl ListQuery {
    /// The filters, as the search takes them (words said looked for in each form `keys` may
    /// have stored them in).
    pub(super) fn filter(&self, keys: Option<&crate::encryption::Keyring>) -> Filter {
        Filter {
            caller_number_prefix: self.caller.clone(),
            callee_prefix: self.callee.clone(),
            name_words: self.name.clone(),
            node_type: self.node_type,
            direction: self.direction,
            format: self.format,
            status: self.status,
            from_ms: self.from,
            to_ms: self.to,
            min_duration_ms: self.min_duration.map(|seconds| (seconds * 1000.0) as i64),
            linkedid: self.linkedid.clone(),
            channel: self.channel.clone(),
            said: crate::library::transcripts::said(&self.said, keys),
            min_silence_ms: self.min_silence.map(|seconds| (seconds * 1000.0) as i64),
            min_agent_share: self.min_agent_share,
        }
    }
}

impl FromQuery for ListQuery {
    fn from_query(q: &HashMap<String, String>) -> Result<ListQuery, ApiError> {
        only_known(q, &LIST_PARAMS, bad)?;
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
        let prefix = |key: &str| -> Result<Option<String>, ApiError> {
            match q.get(key) {
                Some(v) if v.is_empty() || v.len() > 100 => {
                    Err(bad(key, "must be 1 to 100 characters"))
                }
                v => Ok(v.cloned()),
            }
        };
        let caller = prefix("caller")?;
        let callee = prefix("callee")?;
        let mut name = Vec::new();
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
            name = words;
        }
        let node_type = one_of(q, "node_type")?;
        let direction = one_of(q, "direction")?;
        let format = one_of(q, "format")?;
        let status = one_of(q, "status")?;
        let from = q.get("from").map(|v| parse_time("from", v)).transpose()?;
        let to = q.get("to").map(|v| parse_time("to", v)).transpose()?;
        let min_duration = match q.get("min_duration") {
            None => None,
            Some(v) => {
                let seconds: f64 = v
                    .parse()
                    .map_err(|_| bad("min_duration", "must be a number of seconds"))?;
                if !(0.0..=86_400.0).contains(&seconds) {
                    return Err(bad("min_duration", "must be between 0 and 86400 seconds"));
                }
                Some(seconds)
            }
        };
        let mut said = Vec::new();
        if let Some(v) = q.get("q") {
            let words = crate::library::transcripts::search_words(v);
            let max = crate::library::search::MAX_SAID_WORDS;
            if words.is_empty()
                || v.chars().count() > 200
                || words.len() > max
                || words.iter().any(|w| w.chars().count() < 2)
            {
                return Err(bad(
                    "q",
                    format!("must hold 1 to {max} words of at least 2 letters or digits, at most 200 characters"),
                ));
            }
            said = words;
        }
        let min_silence = match q.get("min_silence") {
            None => None,
            Some(v) => match v.parse::<f64>() {
                Ok(seconds) if (0.0..=86_400.0).contains(&seconds) => Some(seconds),
                _ => {
                    return Err(bad(
                        "min_silence",
                        "must be a number of seconds from 0 to 86400",
                    ))
                }
            },
        };
        let min_agent_share = match q.get("min_agent_share") {
            None => None,
            Some(v) => match v.parse::<i64>() {
                Ok(percent) if (0..=100).contains(&percent) => Some(percent),
                _ => {
                    return Err(bad(
                        "min_agent_share",
                        "must be a whole percent from 0 to 100",
                    ))
                }
            },
        };
        let linkedid = prefix("linkedid")?;
        let channel = prefix("channel")?;
        let by_call = match q.get("group").map(String::as_str) {
            None => false,
            Some("call") if sort != Sort::Newest => {
                return Err(bad("group", "calls are listed newest first only"))
            }
            Some("call") => true,
            Some(other) => {
                return Err(bad(
                    "group",
                    format!("{other:?} is not a grouping (expected call)"),
                ))
            }
        };
        Ok(ListQuery {
            limit,
            cursor: q.get("cursor").cloned(),
            sort,
            by_call,
            caller,
            callee,
            name,
            node_type,
            direction,
            status,
            format,
            from,
            to,
            min_duration,
            linkedid,
            channel,
            said,
            min_silence,
            min_agent_share,
            asked: q.clone(),
        })
    }
}
