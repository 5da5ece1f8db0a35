//! The list as CSV: every recording the caller may see that matches the list's filters,
//! streamed page by page (any size), one audit event for the whole export.

use super::*;

use crate::http::params::{ListQuery, Params};
use crate::library::search::{self, Filter, Sort};

/// Rows read from the database at a time while the export streams.
const EXPORT_PAGE: i64 = 500;

/// The columns, in order.
const HEADER: [&str; 21] = [
    "id",
    "name",
    "started_at",
    "duration_seconds",
    "status",
    "reason",
    "format",
    "caller_name",
    "caller_number",
    "callee",
    "direction",
    "node_type",
    "flow",
    "node",
    "call_id",
    "tenant",
    "project",
    "consent",
    "compliance",
    "linkedid",
    "callee_channel",
];

/// One recording as a CSV record (metadata only: no audio, no link).
fn record(row: &Recording) -> [String; 21] {
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    [
        row.id.to_string(),
        row.name.clone(),
        rfc3339(row.started_at_ms),
        format!("{:.3}", row.duration_ms as f64 / 1000.0),
        row.status.as_str().to_string(),
        text(&row.reason),
        row.format.clone(),
        text(&row.caller_name),
        text(&row.caller_number),
        text(&row.callee),
        row.direction
            .map(|d| d.as_str())
            .unwrap_or_default()
            .to_string(),
        row.node_type
            .map(|t| t.as_str())
            .unwrap_or_default()
            .to_string(),
        text(&row.flow),
        text(&row.node),
        text(&row.call_id),
        row.tenant.clone(),
        row.project.clone(),
        row.consent.as_str().to_string(),
        row.compliance.as_str().to_string(),
        text(&row.linkedid),
        text(&row.callee_channel),
    ]
}

/// `records` as CSV bytes (RFC 4180: quoted where needed, CRLF line ends).
fn csv_bytes<I: IntoIterator<Item = R>, R: IntoIterator<Item = S>, S: AsRef<[u8]>>(
    records: I,
) -> Result<Vec<u8>, csv::Error> {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    for record in records {
        writer.write_record(record)?;
    }
    writer
        .into_inner()
        .map_err(|e| csv::Error::from(e.into_error()))
}

/// Where the export stands between pages.
struct Export {
    db: Database,
    principal: Principal,
    filter: Filter,
    sort: Sort,
    after: Option<(i64, i64)>,
    header_sent: bool,
    done: bool,
}

impl Export {
    /// The next chunk of CSV: the header, then a page of rows; None when every row was sent.
    async fn next_chunk(&mut self) -> Option<Result<Vec<u8>, std::io::Error>> {
        if !self.header_sent {
            self.header_sent = true;
            return Some(csv_bytes([HEADER]).map_err(std::io::Error::other));
        }
        if self.done {
            return None;
        }
        let viewer = viewer(&self.principal);
        let page = search::recordings(
            &self.db,
            &viewer,
            &self.filter,
            self.sort,
            self.after,
            EXPORT_PAGE,
        )
        .await;
        let search::Page { rows, more } = match page {
            Ok(page) => page,
            Err(e) => {
                // The answer is under way: it ends short, and the log says why.
                tracing::warn!(error = %e, "the CSV export stopped: the database failed");
                self.done = true;
                return Some(Err(std::io::Error::other(e)));
            }
        };
        self.done = !more;
        self.after = rows
            .last()
            .map(|last| (search::sort_key(last, self.sort), last.id));
        // A search of what was said shows only what the caller may play (as the list does):
        // a row would otherwise tell what a recording they may not hear says.
        let settings = self.principal.settings;
        let shown: Vec<&Recording> = rows
            .iter()
            .filter(|row| {
                !self.filter.reads_audio()
                    || decide(&self.principal, settings, &row.facts(), Action::Play).is_ok()
            })
            .collect();
        if rows.is_empty() {
            return None;
        }
        Some(csv_bytes(shown.into_iter().map(record)).map_err(std::io::Error::other))
    }
}

/// The list as CSV.
///
/// Every recording the caller may see that matches the list's filters (the same parameters as
/// the list, without `limit`, `cursor` and `group`), newest (or longest) first, streamed page by
/// page whatever the size; metadata only. Audited once, with the filters.
#[utoipa::path(get, path = "/api/recordings/export.csv", tag = "recordings", operation_id = "export_recordings", params(ListQuery), responses(
    (status = 200, description = "CSV (RFC 4180), a header row then one row a recording", content_type = "text/csv"),
    (status = 400, description = "an unknown or bad parameter, or one the export does not take, named in the message", body = ErrorBody),
    crate::http::openapi::SignedIn,
    (status = 403, description = "a token without recordings:read", body = ErrorBody),
))]
pub(in crate::http) async fn export_csv(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Params<ListQuery>, ApiError>,
) -> Result<Response, ApiError> {
    let query = listing(&state, &caller, query, "export").await?;
    let principal = &caller.principal;
    for param in ["limit", "cursor", "group"] {
        if query.asked.contains_key(param) {
            return Err(bad(
                param,
                "the export takes the list's filters only: it sends every matching recording",
            ));
        }
    }
    let mut entry = list_entry(&caller, &query.asked);
    entry.action = "export";
    audit::record(&state.db, &entry)
        .await
        .map_err(crate::http::audit_failed)?;
    let export = Export {
        db: state.db.clone(),
        principal: principal.clone(),
        filter: query.filter(state.library.keys.as_deref()),
        sort: query.sort,
        after: None,
        header_sent: false,
        done: false,
    };
    let chunks = futures_util::stream::unfold(export, |mut export| async move {
        export.next_chunk().await.map(|chunk| (chunk, export))
    });
    let mut response = Body::from_stream(chunks).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"recordings.csv\""),
    );
    Ok(response)
}
