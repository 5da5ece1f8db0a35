//! The list: filters, keyset pagination, grouped by call.

use super::*;

pub(in crate::http) use crate::library::search::Sort;
use crate::library::search::{self, Filter, Viewer, MAX_NAME_WORDS};
use crate::library::status::NamedValue;

pub(in crate::http) fn parse_time(param: &str, value: &str) -> Result<i64, ApiError> {
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

/// A parameter that must be one value of a list (node type, direction, status, format).
fn one_of<T: NamedValue>(q: &HashMap<String, String>, param: &str) -> Result<Option<T>, ApiError> {
    q.get(param)
        .map(|v| {
            T::parse(v)
                .ok_or_else(|| bad(param, format!("must be one of: {}", T::names().join(", "))))
        })
        .transpose()
}

pub(in crate::http) fn encode_cursor(sort: Sort, key: i64, id: i64) -> String {
    let tag = if sort == Sort::Newest { "n" } else { "l" };
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{tag}:{key}:{id}"))
}

pub(in crate::http) fn decode_cursor(sort: Sort, cursor: &str) -> Result<(i64, i64), ApiError> {
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

pub(in crate::http) const LIST_PARAMS: [&str; 14] = [
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

/// Who is listing (their tenant, their projects, the private calls they were on), and the
/// filters asked for, checked.
pub(in crate::http) fn list_filters<'a>(
    principal: &'a Principal,
    q: &HashMap<String, String>,
) -> Result<(Viewer<'a>, Filter), ApiError> {
    let viewer = Viewer {
        tenant: &principal.tenant,
        projects: &principal.projects,
        // The extension only, as `is_participant` decides (never the user name).
        identities: principal
            .extension
            .as_deref()
            .filter(|e| !e.is_empty())
            .into_iter()
            .collect(),
        sees_unclaimed: principal.role == crate::access::Role::Admin
            && principal.projects.is_empty(),
    };
    let mut filter = Filter::default();
    let prefix = |key: &str| -> Result<Option<String>, ApiError> {
        match q.get(key) {
            Some(v) if v.is_empty() || v.len() > 100 => {
                Err(bad(key, "must be 1 to 100 characters"))
            }
            v => Ok(v.cloned()),
        }
    };
    filter.caller_number_prefix = prefix("caller")?;
    filter.callee_prefix = prefix("callee")?;
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
        filter.name_words = words;
    }
    filter.node_type = one_of(q, "node_type")?;
    filter.direction = one_of(q, "direction")?;
    filter.format = one_of(q, "format")?;
    filter.status = one_of(q, "status")?;
    filter.from_ms = q.get("from").map(|v| parse_time("from", v)).transpose()?;
    filter.to_ms = q.get("to").map(|v| parse_time("to", v)).transpose()?;
    if let Some(v) = q.get("min_duration") {
        let seconds: f64 = v
            .parse()
            .map_err(|_| bad("min_duration", "must be a number of seconds"))?;
        if !(0.0..=86_400.0).contains(&seconds) {
            return Err(bad("min_duration", "must be between 0 and 86400 seconds"));
        }
        filter.min_duration_ms = Some((seconds * 1000.0) as i64);
    }
    Ok((viewer, filter))
}

/// The audit entry of a list: what was searched (each value cut at 100 characters), and
/// whether it is a next page.
pub(in crate::http) fn list_entry(caller: &Caller, q: &HashMap<String, String>) -> AuditEntry {
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

/// A page of the list.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(in crate::http) struct RecordingPage<'a> {
    /// Pass as `cursor` for the next page; null on the last.
    next_cursor: Option<String>,
    recordings: Vec<RecordingView<'a>>,
}

/// Recordings, newest (or longest) first, in keyset pages.
///
/// Over the recordings the caller may see: their tenant and projects, and of the private ones
/// those they were on. With `group=call`, one row per call instead (`calls`: call_id,
/// started_at, segment_count, duration_seconds, segments), newest call first; a file no call
/// made is its own row.
#[utoipa::path(get, path = "/api/recordings", tag = "recordings", operation_id = "list_recordings", params(crate::http::openapi::ListQuery), responses(
    (status = 200, description = "a page", body = RecordingPage),
    (status = 400, description = "an unknown or bad parameter, named in the message", body = ErrorBody),
    crate::http::openapi::SignedIn,
    (status = 403, description = "a token without recordings:read", body = ErrorBody),
))]
pub(in crate::http) async fn list(
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
    let (viewer, filter) = list_filters(principal, &q)?;
    if q.get("group").map(String::as_str) == Some("call") {
        if sort != Sort::Newest {
            return Err(bad("group", "calls are listed newest first only"));
        }
        return crate::http::calls::list_grouped(&state, &caller, &q, limit, &viewer, &filter)
            .await;
    } else if let Some(other) = q.get("group") {
        return Err(bad(
            "group",
            format!("{other:?} is not a grouping (expected call)"),
        ));
    }
    let after = q
        .get("cursor")
        .map(|cursor| decode_cursor(sort, cursor))
        .transpose()?;
    // The search is recorded while it runs (on PostgreSQL the two round trips overlap); nothing
    // is answered until its event is committed, and nothing but an error when it could not be.
    let entry = list_entry(&caller, &q);
    let (recorded, page) = tokio::join!(
        audit::record(&state.db, &entry),
        search::recordings(&state.db, &viewer, &filter, sort, after, limit)
    );
    recorded.map_err(crate::http::audit_failed)?;
    let search::Page { rows, more } = page.map_err(internal)?;
    let next_cursor = match (more, rows.last()) {
        (true, Some(last)) => Some(encode_cursor(sort, search::sort_key(last, sort), last.id)),
        _ => None,
    };
    let tenant = principal.settings;
    Ok(Json(RecordingPage {
        next_cursor,
        recordings: rows.iter().map(|r| r.view(principal, tenant)).collect(),
    })
    .into_response())
}
