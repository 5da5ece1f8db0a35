//! The list: filters, keyset pagination, grouped by call.

use super::*;

/// Binds `value` as the next numbered parameter and names it (`$n`).
pub(in crate::http) fn param(binds: &mut Vec<Bind>, value: Bind) -> String {
    binds.push(value);
    format!("${}", binds.len())
}

/// Words of a caller-name search at most.
pub(in crate::http) const MAX_NAME_WORDS: usize = 5;

/// `recording_words` rows whose word starts with `prefix`, as a range scan of an index: on
/// SQLite a byte range on the primary key (its LIKE is case-insensitive and scans every row),
/// on PostgreSQL LIKE on the `text_pattern_ops` index.
pub(in crate::http) fn word_prefix_clause(
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

/// A LIKE pattern matching `value` anywhere as a literal.
pub(in crate::http) fn like_literal(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// A value bound into a dynamically built query.
pub(in crate::http) enum Bind {
    Text(String),
    Int(i64),
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(in crate::http) enum Sort {
    Newest,
    Longest,
}

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

/// The WHERE clauses of a list: what the caller may see (their tenant, their projects, private
/// calls they were on) and the filters asked for, with their bound values.
pub(in crate::http) fn list_filters(
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

/// `GET /api/recordings`: keyset pagination, newest first or longest first, with filters, over
/// the recordings the caller may see (their tenant and projects; private ones they were on).
/// SQL: the recording's participants include the identity bound at `param` as `,identity,`.
/// Exact and case-sensitive on both backends, as the policy's `is_participant` compares.
pub(in crate::http) fn participant_is(backend: crate::library::db::Backend, param: &str) -> String {
    let position = match backend {
        crate::library::db::Backend::Sqlite => "instr",
        crate::library::db::Backend::Postgres => "strpos",
    };
    format!("{position}(',' || COALESCE(participants, '') || ',', {param}) > 0")
}

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
    let (mut clauses, mut binds) = list_filters(&state, principal, &q)?;
    if q.get("group").map(String::as_str) == Some("call") {
        if sort != Sort::Newest {
            return Err(bad("group", "calls are listed newest first only"));
        }
        return crate::http::calls::list_grouped(&state, &caller, &q, limit, clauses, binds).await;
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
    // The search is recorded while it runs (on PostgreSQL the two round trips overlap); nothing
    // is answered until its event is committed, and nothing but an error when it could not be.
    let entry = list_entry(&caller, &q);
    let (recorded, rows) = tokio::join!(
        audit::record(&state.db, &entry),
        query.fetch_all(&state.db.pool)
    );
    recorded.map_err(internal)?;
    let mut rows = rows.map_err(internal)?;
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
    #[derive(serde::Serialize)]
    struct Page<'a> {
        next_cursor: Option<String>,
        recordings: Vec<RecordingView<'a>>,
    }
    Ok(Json(Page {
        next_cursor,
        recordings: rows.iter().map(|r| r.view(principal, tenant)).collect(),
    })
    .into_response())
}
