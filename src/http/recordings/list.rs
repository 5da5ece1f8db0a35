//! The list: filters, keyset pagination, grouped by call.

use super::*;

use crate::http::params::{ListQuery, Params};
pub(in crate::http) use crate::library::search::Sort;
use crate::library::search::{self, Viewer};

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

/// What a listing (the list, its export) asks first: a token that may read recordings (refused
/// and audited as `action` otherwise), then parameters that hold.
pub(in crate::http) async fn listing(
    state: &AppState,
    caller: &Caller,
    query: Result<Params<ListQuery>, ApiError>,
    action: &'static str,
) -> Result<ListQuery, ApiError> {
    if !caller.principal.has_scope(Scope::RecordingsRead) {
        return Err(caller
            .refuse(state, caller.entry(action), denied(Denial::MissingScope))
            .await);
    }
    Ok(query?.0)
}

/// Who is listing: their tenant, their projects, the private calls they were on.
pub(in crate::http) fn viewer(principal: &Principal) -> Viewer<'_> {
    Viewer {
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
    }
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
#[utoipa::path(get, path = "/api/recordings", tag = "recordings", operation_id = "list_recordings", params(ListQuery), responses(
    (status = 200, description = "a page", body = RecordingPage),
    (status = 400, description = "an unknown or bad parameter, named in the message", body = ErrorBody),
    crate::http::openapi::SignedIn,
    (status = 403, description = "a token without recordings:read", body = ErrorBody),
))]
pub(in crate::http) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Params<ListQuery>, ApiError>,
) -> Result<Response, ApiError> {
    let query = listing(&state, &caller, query, "list").await?;
    let principal = &caller.principal;
    let viewer = viewer(principal);
    let filter = query.filter(state.library.keys.as_deref());
    if query.by_call {
        return crate::http::calls::list_grouped(&state, &caller, &query, &viewer, &filter).await;
    }
    let (sort, limit) = (query.sort, query.limit);
    let after = query
        .cursor
        .as_deref()
        .map(|cursor| decode_cursor(sort, cursor))
        .transpose()?;
    // The search is recorded while it runs (on PostgreSQL the two round trips overlap); nothing
    // is answered until its event is committed, and nothing but an error when it could not be.
    let entry = list_entry(&caller, &query.asked);
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
    let said_words = filter.said_words();
    // Snippets of the rows shown only: a transcript is read where the audio may be played.
    let snippets = if said_words.is_empty() {
        Default::default()
    } else {
        let playable = rows
            .iter()
            .filter(|r| decide(principal, tenant, &r.facts(), Action::Play).is_ok())
            .map(|r| r.id);
        said_in_each(&state, playable, &said_words).await?
    };
    let mut recordings = Vec::with_capacity(rows.len());
    for row in &rows {
        let mut view = row.view(principal, tenant);
        if filter.reads_audio() {
            // A transcript (or a talk-time figure) is read where the audio may be played: such
            // a search shows only those (the page may be shorter; its cursor goes on from the
            // last row).
            if decide(principal, tenant, &row.facts(), Action::Play).is_err() {
                continue;
            }
        }
        if !said_words.is_empty() {
            view.said = snippets.get(&row.id).cloned();
        }
        recordings.push(view);
    }
    Ok(Json(RecordingPage {
        next_cursor,
        recordings,
    })
    .into_response())
}

/// Where `words` are said in each of the recordings `ids`' transcripts (their transcripts read
/// in one query): by recording, those where they are.
pub(in crate::http) async fn said_in_each(
    state: &AppState,
    ids: impl Iterator<Item = i64>,
    words: &[String],
) -> Result<HashMap<i64, SaidView>, ApiError> {
    let ids: Vec<i64> = ids.collect();
    let cues = crate::library::transcripts::cues_of(&state.db, state.library.keys.as_deref(), &ids)
        .await
        .map_err(internal)?;
    Ok(cues
        .into_iter()
        .filter_map(|(id, cues)| {
            let found = crate::library::transcripts::find_said(&cues, words)?;
            Some((
                id,
                SaidView {
                    start_seconds: found.start_ms as f64 / 1000.0,
                    speaker: found.speaker,
                    snippet: found.snippet,
                },
            ))
        })
        .collect())
}
